"""The inline SVG charts: geometry follows the numbers, data-* attributes carry them exactly,
missing numbers and constant data draw without failing, and every label is escaped."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

from modelrouter.web.svg import PALETTE, ForestRow, fmt, forest_plot, line_chart


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(svg: str, tag: str, **attrs: str) -> list[dict[str, str | None]]:
    """The attributes of every ``tag`` element of ``svg`` that has ``attrs``."""
    p = _Tags()
    p.feed(svg)
    return [a for t, a in p.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def num(value: str | None) -> float:
    assert value is not None
    return float(value)


def test_fmt() -> None:
    assert fmt(0.123456) == "0.1235"
    assert fmt(0.123456, 2) == "0.12"
    assert fmt(12345.0) == "1.234e+04"
    assert fmt(3) == "3"
    assert [fmt(v) for v in (None, math.nan, math.inf, -math.inf)] == ["n/a"] * 4


def test_forest_plot_places_rows_by_their_numbers() -> None:
    rows = [ForestRow("control", 0.10, 0.08, 0.12), ForestRow("treatment", 0.15, 0.125, 0.175)]
    svg = forest_plot(rows, title="click", width=640, label_width=130, value_width=190)
    groups = tags(svg, "g", **{"class": "row"})
    assert [g["data-label"] for g in groups] == ["control", "treatment"]
    # full precision in data-*, so a chart can be checked against the analysis that drew it
    assert [(num(g["data-estimate"]), num(g["data-low"]), num(g["data-high"]))
            for g in groups] == [(0.10, 0.08, 0.12), (0.15, 0.125, 0.175)]
    dots = [num(c["cx"]) for c in tags(svg, "circle", **{"class": "estimate"})]
    bars = [(num(b["x1"]), num(b["x2"])) for b in tags(svg, "line", **{"class": "ci"})]
    assert dots[0] < dots[1]  # a larger estimate is further right
    for (low, high), x in zip(bars, dots):
        assert 130 <= low < x < high <= 640 - 190  # the interval brackets the estimate
    # one scale for every row: pixels per unit are the same for both intervals
    per_unit = [(high - low) / width for (low, high), width in zip(bars, (0.04, 0.05))]
    assert math.isclose(per_unit[0], per_unit[1], rel_tol=0.01)
    assert tags(svg, "circle", fill=PALETTE[0]) and tags(svg, "circle", fill=PALETTE[1])
    assert "0.1 [0.08, 0.12]" in svg and "0.15 [0.125, 0.175]" in svg
    assert not tags(svg, "line", **{"class": "reference"})


def test_forest_plot_reference_line() -> None:
    svg = forest_plot([ForestRow("diff", 0.5, 0.25, 0.75)], title="t", reference=0.0)
    ref = tags(svg, "line", **{"class": "reference"})
    assert len(ref) == 1 and ref[0]["x1"] == ref[0]["x2"]
    dot = num(tags(svg, "circle", **{"class": "estimate"})[0]["cx"])
    assert num(ref[0]["x1"]) < dot  # zero lies left of a positive estimate
    assert not tags(forest_plot([ForestRow("d", 0.5, 0.25, 0.75)], title="t",
                                reference=math.nan), "line", **{"class": "reference"})


def test_svg_charts_handle_missing_numbers() -> None:
    nan = float("nan")
    svg = forest_plot([ForestRow("a", nan, nan, nan), ForestRow("b", 2.0, 1.0, 3.0)],
                      title="t", reference=0.0)
    assert "no data" in svg and svg.count("<circle") == 1
    xs = [float(m) for m in re.findall(r'<circle class="estimate" cx="([0-9.]+)"', svg)]
    assert len(xs) == 1
    empty = line_chart({"z": [(nan, 1.0)]}, title="t")
    assert empty.startswith("<svg") and "<polyline" not in empty
    steps = line_chart({"w": [(0.0, 0.5), (1.0, 0.2), (2.0, 0.2)]}, title="t", step=True)
    pts = re.search(r'<polyline points="([^"]+)"', steps)
    assert pts is not None and len(pts.group(1).split()) == 5  # a step adds a corner per jump


def test_constant_data_still_has_a_finite_scale() -> None:
    svg = forest_plot([ForestRow("a", 1.0, 1.0, 1.0), ForestRow("b", 1.0, 1.0, 1.0)],
                      title="t")
    xs = [num(c["cx"]) for c in tags(svg, "circle", **{"class": "estimate"})]
    assert len(xs) == 2 and xs[0] == xs[1] and all(math.isfinite(x) for x in xs)
    flat = line_chart({"w": [(0.0, 0.5), (0.0, 0.5)]}, title="t")
    points = re.search(r'<polyline points="([^"]+)"', flat)
    assert points is not None
    coords = [float(c) for p in points.group(1).split() for c in p.split(",")]
    assert len(coords) == 4 and all(math.isfinite(c) for c in coords)


def test_line_chart_points_legend_and_dashed_series() -> None:
    series = {"z": [(0.25, 1.0), (0.5, 2.5)], "boundary": [(0.25, 4.0), (0.5, 2.9)],
              "-boundary": [(0.25, -4.0), (0.5, -2.9)]}
    svg = line_chart(series, title="seq", x_label="information rate", y_label="z",
                     dashed=("boundary", "-boundary"))
    groups = tags(svg, "g", **{"class": "series"})
    assert [g["data-name"] for g in groups] == ["z", "boundary", "-boundary"]
    assert groups[0]["data-points"] == "0.25,1.0;0.5,2.5"
    assert svg.count('stroke-dasharray="6 4"') == 2  # the two boundaries, not z
    assert svg.count("<circle") == 2  # z's points; boundaries get ticks instead
    legend = re.findall(r'class="legend">([^<]*)</text>', svg)
    assert legend == ["z", "boundary", "-boundary"]
    assert ">information rate</text>" in svg and ">z</text>" in svg
    # the y range spans 0, so a zero line is drawn; higher values are higher up (smaller y)
    zero = [a for a in tags(svg, "line") if a.get("stroke") == "#bbb"]
    assert len(zero) == 1
    z_pts = re.search(r'<polyline points="([^"]+)"', svg)
    assert z_pts is not None
    (_, y1), (_, y2) = (map(float, p.split(",")) for p in z_pts.group(1).split())
    assert y2 < y1 < num(zero[0]["y1"])
    positive = line_chart({"w": [(0.0, 0.2), (1.0, 0.8)]}, title="t")
    assert not [a for a in tags(positive, "line") if a.get("stroke") == "#bbb"]


def test_labels_are_escaped() -> None:
    evil = '<b onload="x">&'
    svg = line_chart({evil: [(0.0, 1.0), (1.0, 2.0)]}, title=evil, x_label=evil, y_label=evil)
    assert "<b " not in svg and 'onload="x"' not in svg
    assert svg.count("&lt;b onload=&quot;x&quot;&gt;&amp;") == 7  # title x3, name x2, axes x2
    forest = forest_plot([ForestRow("r", 1.0, 0.0, 2.0, note=evil)], title="t")
    assert "<b " not in forest and "&lt;b onload=&quot;x&quot;&gt;&amp;" in forest
