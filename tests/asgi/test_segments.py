"""SegmentReader: one value per declared dimension, from its header and the optional
``segment_fn``, in declaration order; missing values are "unknown" and long ones are cut."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelrouter.asgi.segments import UNKNOWN, SegmentReader
from modelrouter.asgi.types import Scope
from modelrouter.config import RouterConfig


def scope(*headers: tuple[str, bytes]) -> Scope:
    return {"type": "http", "headers": [(k.encode("latin-1"), v) for k, v in headers]}


def reader(segments: Mapping[str, str | None], **config: Any) -> SegmentReader:
    return SegmentReader(RouterConfig(segments=segments, **config))


def test_no_segments_declared() -> None:
    read = SegmentReader(RouterConfig())
    assert not read
    assert read(scope(("x-platform", b"ios"))) == ()


def test_values_follow_the_declaration_order() -> None:
    read = reader({"platform": "x-platform", "country": "X-Country"})
    assert read
    assert read(scope(("x-country", b"fr"), ("x-platform", b"ios"))) == ("ios", "fr")
    assert read(scope(("x-platform", b"ios"))) == ("ios", UNKNOWN)
    assert read(scope()) == (UNKNOWN, UNKNOWN) == ("unknown", "unknown")


def test_values_are_stripped_cut_and_blank_ones_unknown() -> None:
    read = reader({"platform": "x-platform"})
    assert read(scope(("x-platform", b"  web  "))) == ("web",)
    assert read(scope(("x-platform", b"a" * 100))) == ("a" * 64,)
    assert read(scope(("x-platform", b""))) == (UNKNOWN,)
    assert read(scope(("x-platform", b"   "))) == (UNKNOWN,)


def test_the_first_non_blank_header_wins() -> None:
    read = reader({"platform": "x-platform"})
    assert read(scope(("x-platform", b"ios"), ("x-platform", b"web"))) == ("ios",)
    assert read(scope(("x-platform", b" "), ("x-platform", b"web"))) == ("web",)


def test_segment_fn_overrides_and_supplies_values() -> None:
    def fn(scope: Mapping[str, Any]) -> Mapping[str, str]:
        return {"platform": " tv ", "undeclared": "x"}

    read = reader({"platform": "x-platform", "tier": "x-tier"}, segment_fn=fn)
    assert read(scope(("x-platform", b"ios"), ("x-tier", b"gold"))) == ("tv", "gold")
    headerless = reader({"platform": None}, segment_fn=fn)  # a dimension only fn supplies
    assert headerless(scope(("x-platform", b"ios"))) == ("tv",)


def test_segment_fn_values_none_blank_or_not_strings() -> None:
    values: dict[str, Any] = {"a": None, "b": "  ", "c": 7, "d": "x" * 100}
    read = reader({"a": "x-a", "b": "x-b", "c": None, "d": None},
                  segment_fn=lambda s: values)
    # None and blank values leave the header's value; others are text, stripped and cut
    assert read(scope(("x-a", b"ha"), ("x-b", b"hb"))) == ("ha", "hb", "7", "x" * 64)


def test_a_failing_or_wrong_segment_fn_keeps_the_header_values() -> None:
    def boom(scope: Mapping[str, Any]) -> Mapping[str, str]:
        raise RuntimeError("segment lookup failed")

    for fn in (boom, lambda s: ["tv"], lambda s: None):
        read = reader({"platform": "x-platform"}, segment_fn=fn)
        assert read(scope(("x-platform", b"ios"))) == ("ios",)
        assert read(scope()) == (UNKNOWN,)


def test_segment_fn_sees_the_scope() -> None:
    seen: list[Mapping[str, Any]] = []

    def fn(scope: Mapping[str, Any]) -> Mapping[str, str]:
        seen.append(scope)
        return {"platform": str(scope["path"]).strip("/")}

    s = {**scope(), "path": "/mobile"}
    assert reader({"platform": None}, segment_fn=fn)(s) == ("mobile",)
    assert seen == [s]
