"""The inline SVG charts: geometry follows the numbers, data-* attributes carry them exactly,
missing numbers and constant data draw without failing, and every label is escaped."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

from modelrouter.web.charts import (
    PALETTE,
    EffectRow,
    Reference,
    Series,
    effect_plot,
    xy_chart,
)
from modelrouter.web.svg import data_number, fmt


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


def test_fmt_and_data_number() -> None:
    assert fmt(0.123456) == "0.1235"
    assert fmt(0.123456, 2) == "0.12"
    assert fmt(12345.0) == "1.234e+04"
    assert fmt(3) == "3"
    assert [fmt(v) for v in (None, math.nan, math.inf, -math.inf)] == ["n/a"] * 4
    assert data_number(0.1 + 0.2) == "0.30000000000000004"  # full precision
    assert [data_number(v) for v in (math.nan, math.inf, -math.inf)] == ["nan", "inf", "-inf"]


def test_effect_plot_places_rows_by_their_numbers() -> None:
    rows = [EffectRow("b", 0.02, 0.01, 0.03, "+2 pp"), EffectRow("c", 0.05, 0.025, 0.075, "+5")]
    svg = effect_plot(rows, title="click", axis_label="pp", scale=100.0, width=1000,
                      label_width=100, text_width=200)
    groups = tags(svg, "g", **{"class": "row"})
    assert [g["data-label"] for g in groups] == ["b", "c"]
    # full precision in data-*, on the analysis' scale (not the display unit's)
    assert [(num(g["data-estimate"]), num(g["data-lo"]), num(g["data-hi"]))
            for g in groups] == [(0.02, 0.01, 0.03), (0.05, 0.025, 0.075)]
    dots = [num(c["cx"]) for c in tags(svg, "circle", **{"class": "estimate"})]
    bars = [(num(b["x1"]), num(b["x2"])) for b in tags(svg, "line", **{"class": "ci"})]
    assert dots[0] < dots[1]  # a larger estimate is further right
    for (low, high), x in zip(bars, dots):
        assert 100 <= low < x < high <= 1000 - 200  # the interval brackets the estimate
    per_unit = [(high - low) / width for (low, high), width in zip(bars, (0.02, 0.05))]
    assert math.isclose(per_unit[0], per_unit[1], rel_tol=0.01)  # one scale for every row
    assert tags(svg, "circle", fill=PALETTE[0]) and tags(svg, "circle", fill=PALETTE[1])
    # the zero line lies left of both (positive) intervals, at the axis' 0 tick
    zero = tags(svg, "g", **{"class": "reference zero"})
    assert len(zero) == 1 and num(zero[0]["data-value"]) == 0.0
    zero_x = num(tags(svg, "line", stroke="#555")[0]["x1"])
    assert zero_x < bars[0][0]
    ticks = re.findall(r'class="tick" text-anchor="middle">([^<]*)<', svg)
    assert ticks[0] == "0" and ticks[-1] == "8"  # 0..7.5 pp in nice steps, 0 included


def test_effect_plot_margin_and_guardrail_rows() -> None:
    svg = effect_plot([EffectRow("t", -0.2, -0.6, 0.2, "x"),
                       EffectRow("t: guardrail", -0.2, -0.9, 0.5, "y", guardrail=True)],
                      title="t", axis_label="a", references=[Reference(-1.0, "margin -1")])
    margin = tags(svg, "g", **{"class": "reference margin"})
    assert [num(m["data-value"]) for m in margin] == [-1.0]
    assert [g["data-label"] for g in tags(svg, "g", **{"class": "guardrail-row"})] == [
        "t: guardrail"]
    assert len(tags(svg, "g", **{"class": "row"})) == 1
    # a margin outside every interval still fits on the axis, left of the lowest bar
    lines = tags(svg, "line", **{"class": "ci"})
    margin_x = num(tags(svg, "line", **{"stroke-dasharray": "6 4"})[0]["x1"])
    assert margin_x < min(num(a["x1"]) for a in lines)


def test_charts_handle_missing_numbers_and_constants() -> None:
    nan = float("nan")
    svg = effect_plot([EffectRow("a", nan, nan, nan, "no data"),
                       EffectRow("b", 2.0, 1.0, 3.0, "b")], title="t", axis_label="x")
    assert "no data" in svg and svg.count("<circle") == 1
    empty = xy_chart([Series("z", [(nan, 1.0)])], title="t", x_label="x", y_label="y")
    assert empty.startswith("<svg") and "<polyline" not in empty
    steps = xy_chart([Series("w", [(0.0, 0.5), (1.0, 0.2), (2.0, 0.2)], style="step")],
                     title="t", x_label="x", y_label="y")
    pts = re.search(r'<polyline points="([^"]+)"', steps)
    assert pts is not None and len(pts.group(1).split()) == 5  # a step adds a corner per jump
    flat = xy_chart([Series("w", [(0.0, 0.0), (1.0, 0.0)])], title="t", x_label="x",
                    y_label="y")
    ys = re.findall(r'class="tick" text-anchor="end">([^<]*)<', flat)
    assert ys == ["-1", "-0.5", "0", "0.5", "1"]  # constant zero: a small, round range
    band = xy_chart([Series("d", [(1.0, 0.5), (2.0, 0.4)],
                            band=[(1.0, -math.inf, math.inf), (2.0, 0.1, 0.7)])],
                    title="t", x_label="x", y_label="y")
    assert "<polygon" not in band and 'class="band"' in band  # only the bounded interval


def test_xy_chart_series_legend_axes_and_reference() -> None:
    series = [Series("z", [(0.25, 1.0), (0.5, 2.5)]),
              Series("boundary", [(0.25, 4.0), (0.5, 2.9)], style="boundary"),
              Series("-boundary", [(0.25, -4.0), (0.5, -2.9)], style="boundary")]
    svg = xy_chart(series, title="seq", x_label="information fraction", y_label="z statistic",
                   references=[Reference(0.0, "0", "zero")], x_include=[0.0, 1.0])
    groups = tags(svg, "g", **{"data-name": "z"}) + tags(svg, "g", **{"data-name": "boundary"})
    assert groups[0]["data-points"] == "0.25,1.0;0.5,2.5"
    assert svg.count('stroke-dasharray="7 4"') == 4  # two boundaries: line and legend each
    assert svg.count("<circle") == 2  # z's points; boundaries get ticks instead
    assert re.findall(r'class="legend">([^<]*)</text>', svg) == ["z", "boundary", "-boundary"]
    assert ">information fraction</text>" in svg and ">z statistic</text>" in svg
    xs = re.findall(r'class="tick" text-anchor="middle">([^<]*)<', svg)
    assert xs[0] == "0" and xs[-1] == "1"  # the whole information range
    zero = tags(svg, "g", **{"class": "reference zero"})
    assert len(zero) == 1
    z_pts = re.search(r'<polyline points="([^"]+)"', svg)
    assert z_pts is not None
    (_, y1), (_, y2) = (map(float, p.split(",")) for p in z_pts.group(1).split())
    zero_y = num(tags(svg, "line", stroke="#555")[0]["y1"])
    assert y2 < y1 < zero_y  # higher values are higher up, above the zero line


def test_labels_are_escaped() -> None:
    evil = '<b onload="x">&'
    svg = xy_chart([Series(evil, [(0.0, 1.0), (1.0, 2.0)])], title=evil, x_label=evil,
                   y_label=evil, references=[Reference(1.5, evil)])
    assert "<b " not in svg and 'onload="x"' not in svg
    # title x3, series name x2, axes x2, reference label x2
    assert svg.count("&lt;b onload=&quot;x&quot;&gt;&amp;") == 9
    plot = effect_plot([EffectRow(evil, 1.0, 0.0, 2.0, evil)], title="t", axis_label=evil)
    assert "<b " not in plot and plot.count("&lt;b onload=&quot;x&quot;&gt;&amp;") == 4
