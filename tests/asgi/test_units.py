"""UnitReader: where a request's unit id comes from (callable, header, cookie, query, in that
order), and which ids are refused (not UTF-8, too long, control characters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from modelrouter.asgi.types import Scope
from modelrouter.asgi.units import UnitReader, header_value
from modelrouter.config import RouterConfig
from modelrouter.exceptions import UnitIdError


def scope(headers: Mapping[str, bytes] | None = None, query: bytes = b"",
          **extra: Any) -> Scope:
    """An HTTP scope with lower-case header names, as ASGI servers send them."""
    raw = [(k.encode("latin-1"), v) for k, v in (headers or {}).items()]
    return {"type": "http", "headers": raw, "query_string": query, **extra}


def reader(**config: Any) -> UnitReader:
    return UnitReader(RouterConfig(**config))


def test_header_is_the_default_source() -> None:
    read = reader()
    assert read(scope({"x-user-id": b"user-1"})) == "user-1"
    assert read(scope({"x-user-id": b"  padded  "})) == "padded"  # surrounding spaces go
    assert read(scope({"x-user-id": "\u00e9l\u00e8ve".encode()})) == "\u00e9l\u00e8ve"
    assert read(scope({"x-other": b"user-1"})) is None
    assert read(scope()) is None


def test_blank_ids_are_no_id() -> None:
    read = reader()
    assert read(scope({"x-user-id": b""})) is None
    assert read(scope({"x-user-id": b"   "})) is None


def test_the_first_header_of_a_repeated_name_wins() -> None:
    s = scope()
    s["headers"] = [(b"x-user-id", b"first"), (b"x-user-id", b"second")]
    assert reader()(s) == "first"
    assert header_value(s, b"x-user-id") == b"first"
    assert header_value(s, b"x-missing") is None


def test_header_name_is_configurable_and_lower_cased() -> None:
    read = reader(unit_header="X-Session")
    assert read(scope({"x-session": b"s-1"})) == "s-1"
    assert read(scope({"x-user-id": b"u-1"})) is None


def test_sources_are_tried_in_order_callable_header_cookie_query() -> None:
    cookie = {"cookie": b"theme=dark; sid=from-cookie"}
    query = b"a=1&uid=from-query"
    read = reader(unit_cookie="sid", unit_query="uid")
    assert read(scope({"x-user-id": b"from-header", **cookie}, query)) == "from-header"
    assert read(scope(cookie, query)) == "from-cookie"
    assert read(scope({"cookie": b"theme=dark"}, query)) == "from-query"
    assert read(scope({}, b"a=1")) is None
    with_callable = reader(unit_id=lambda s: s["client"][0], unit_cookie="sid")
    assert with_callable(scope({"x-user-id": b"from-header", **cookie},
                               client=("10.0.0.1", 5000))) == "10.0.0.1"


def test_a_callable_returning_none_falls_through_to_the_next_source() -> None:
    read = reader(unit_id=lambda s: None, unit_cookie="sid")
    assert read(scope({"x-user-id": b"from-header"})) == "from-header"
    assert read(scope({"cookie": b"sid=from-cookie"})) == "from-cookie"
    assert read(scope()) is None


def test_a_present_source_decides_even_when_blank() -> None:
    """The first source the request has is its answer: a blank one means "no id", the later
    sources are not read."""
    read = reader(unit_cookie="sid", unit_query="uid")
    assert read(scope({"x-user-id": b" ", "cookie": b"sid=c"}, b"uid=q")) is None
    assert reader(unit_id=lambda s: "  ", unit_cookie="sid")(scope({"cookie": b"sid=c"})) is None


def test_query_parameter_is_percent_decoded_as_utf8() -> None:
    read = reader(unit_header=None, unit_query="uid")
    assert read(scope(query=b"uid=%C3%A9-1&q=" + b"x" * 5000)) == "\u00e9-1"
    assert read(scope(query=b"uid=first&uid=second")) == "first"
    assert read(scope(query=b"uid=")) is None  # an empty value is no value
    assert read(scope(query=b"other=1")) is None
    with pytest.raises(UnitIdError, match="query parameter is not valid UTF-8"):
        read(scope(query=b"uid=%FF%FE"))


def test_cookie_source() -> None:
    read = reader(unit_header=None, unit_cookie="sid")
    assert read(scope({"cookie": b"a=1; sid=s-123; b=2"})) == "s-123"
    assert read(scope({"cookie": b"sid=\"quoted\""})) == "quoted"
    assert read(scope({"cookie": b"other=1"})) is None
    assert read(scope({"cookie": b"sid=\"unterminated"})) is None  # unparsable: no cookie
    with pytest.raises(UnitIdError, match="cookie header is not valid UTF-8"):
        read(scope({"cookie": b"sid=\xff"}))


@pytest.mark.parametrize("source", ["header", "cookie", "query"])
def test_length_limit_applies_to_every_source(source: str) -> None:
    read = reader(unit_cookie="sid", unit_query="uid", max_unit_id_length=8)
    for value, ok in ((b"12345678", True), (b"123456789", False)):
        s = {"header": scope({"x-user-id": value}),
             "cookie": scope({"cookie": b"sid=" + value}),
             "query": scope(query=b"uid=" + value)}[source]
        if ok:
            assert read(s) == value.decode()
        else:
            with pytest.raises(UnitIdError, match="has 9 characters; the limit is 8"):
                read(s)


def test_length_counts_characters_not_bytes() -> None:
    read = reader(max_unit_id_length=4)
    assert read(scope({"x-user-id": "\u00e9\u00e9\u00e9\u00e9".encode()})) == "\u00e9" * 4
    with pytest.raises(UnitIdError, match="has 5 characters"):
        read(scope({"x-user-id": ("\u00e9" * 5).encode()}))
    # a header far beyond the bound is refused before it is decoded at all
    with pytest.raises(UnitIdError, match="header is longer than 4 characters"):
        read(scope({"x-user-id": b"a" * 17}))


@pytest.mark.parametrize("value", [b"abc\x01def", b"tab\there", b"new\nline", b"del\x7f",
                                   "zero\u200bwidth".encode()])
def test_control_and_non_printable_characters_are_refused(value: bytes) -> None:
    with pytest.raises(UnitIdError, match="control or non-printable"):
        reader()(scope({"x-user-id": value}))
    with pytest.raises(UnitIdError, match="query parameter contains control"):
        reader(unit_header=None, unit_query="uid")(
            scope(query=b"uid=" + b"".join(b"%%%02X" % c for c in value)))


def test_header_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(UnitIdError, match="header is not valid UTF-8"):
        reader()(scope({"x-user-id": b"\xff\xfe"}))


def test_callable_errors_become_unit_id_errors() -> None:
    def boom(s: Mapping[str, Any]) -> str | None:
        raise KeyError("client")

    with pytest.raises(UnitIdError, match="the unit_id callable failed: KeyError") as info:
        reader(unit_id=boom)(scope())
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(UnitIdError, match="returned int, expected str or None"):
        reader(unit_id=lambda s: 42)(scope())
    with pytest.raises(UnitIdError, match="the unit_id callable has 300 characters"):
        reader(unit_id=lambda s: "x" * 300)(scope())
