"""UnitReader: where a request's unit id comes from (callable, header, cookie, query, in that
order), and which ids are refused (not UTF-8, too long, control, surrogate, format or
line-separator characters anywhere: config/unit_ids.py), in every source, never stripped into
another id."""

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
    assert read(scope({"cookie": b"sidx=1; xsid=2"})) is None  # the name must match whole
    assert read(scope({"cookie": b"sid=first; sid=second"})) == "first"
    assert read(scope({"cookie": b"sid="})) is None  # an empty value is no value
    with pytest.raises(UnitIdError, match="^unit id in cookie has an opening quote but no "
                                          "closing one$"):
        read(scope({"cookie": b"sid=\"unterminated"}))
    with pytest.raises(UnitIdError, match="^unit id in cookie is not valid UTF-8$"):
        read(scope({"cookie": b"sid=\xff"}))


def test_cookie_is_read_as_utf8_and_other_cookies_do_not_matter() -> None:
    """Browsers send cookie values as raw bytes: a UTF-8 id is an id (the stdlib's SimpleCookie
    dropped every cookie of the header for it), and another application's cookie that is not
    UTF-8 or holds a control character neither hides ours nor fails the request."""
    read = reader(unit_header=None, unit_cookie="sid")
    assert read(scope({"cookie": "sid=\u00e9l\u00e8ve".encode()})) == "\u00e9l\u00e8ve"
    assert read(scope({"cookie": b"junk=\xff\x01; sid=s-1"})) == "s-1"
    assert read(scope({"cookie": b"a=b\tc;sid = s-2 ;d=e"})) == "s-2"
    s = scope()  # HTTP/2 may send the cookies in several headers
    s["headers"] = [(b"cookie", b"a=1"), (b"cookie", b"sid=s-3")]
    assert read(s) == "s-3"


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


SOURCES = ("header", "cookie", "query", "callable")


def in_source(source: str, value: str) -> tuple[UnitReader, Scope]:
    """A reader of ``source`` and a request carrying ``value`` there (UTF-8, percent-encoded
    in the query, quoted in the cookie so that every byte can be sent)."""
    raw = value.encode("utf-8", "surrogatepass")
    if source == "header":
        return reader(), scope({"x-user-id": raw})
    if source == "cookie":
        return reader(unit_header=None, unit_cookie="sid"), scope({"cookie": b'sid="' + raw +
                                                                   b'"'})
    if source == "query":
        return (reader(unit_header=None, unit_query="uid"),
                scope(query=b"uid=" + b"".join(b"%%%02X" % c for c in raw)))
    return reader(unit_id=lambda s: value), scope()


WHERE = {"header": "header", "cookie": "cookie", "query": "query parameter",
         "callable": "the unit_id callable"}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("value", "problem"), [
    ("alice\x1f", "contains a control character U+001F at index 5"),
    ("\x1calice", "contains a control character U+001C at index 0"),
    ("alice\x85", "contains a control character U+0085 at index 5"),
    ("ali\x1fce", "contains a control character U+001F at index 3"),
    ("abc\x01def", "contains a control character U+0001 at index 3"),
    ("tab\there", "contains a control character U+0009 at index 3"),
    ("new\nline", "contains a control character U+000A at index 3"),
    ("del\x7f", "contains a control character U+007F at index 3"),
    ("zero\u200bwidth", "contains a format character U+200B at index 4"),
    ("alice\u2028", "contains a line separator character U+2028 at index 5"),
])
def test_refused_characters_anywhere_in_every_source(source: str, value: str,
                                                     problem: str) -> None:
    """The measured bug: ``alice\\x1f`` was stripped into ``alice``. Every source now refuses
    it (400 on the request path) with the same message, naming the source."""
    read, s = in_source(source, value)
    with pytest.raises(UnitIdError) as info:
        read(s)
    assert str(info.value) == f"unit id in {WHERE[source]} {problem}"


@pytest.mark.parametrize("source", SOURCES)
def test_only_spaces_and_tabs_around_a_value_are_removed(source: str) -> None:
    for value in ("  alice", "alice\t", " \t alice \t "):
        read, s = in_source(source, value)
        assert read(s) == "alice"
    read, s = in_source(source, "alice\u00a0")  # not HTTP whitespace: kept, its own unit
    assert read(s) == "alice\u00a0"
    read, s = in_source(source, " \t ")
    assert read(s) is None


def test_a_callable_returning_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnitIdError, match="^unit id in the unit_id callable contains a "
                                          "surrogate character U\\+DC80 at index 5$"):
        reader(unit_id=lambda s: "alice\udc80")(scope())


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
