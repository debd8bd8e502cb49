"""The dashboard's charts as inline SVG: an effect plot (a forest plot of changes against zero and
the guardrail margins) and an x-y chart with labelled axes, intervals drawn as bands, and
reference lines.

No plotting dependency and no script. Every chart is drawn in a ``width`` x ``height`` viewBox
and stretched to the page width by CSS (``svg.chart{width:100%}``). Axes get "nice" ticks
(steps of 1, 2, 2.5 or 5 times a power of ten; Heckbert, "Nice numbers for graph labels",
Graphics Gems 1990) so that the numbers under a chart are round and a constant series (an
all-zero metric) gets a small sensible range instead of a padded one around zero. Numbers also
go into ``data-*`` attributes at full precision (the analysis' own scale, before the display
unit), so tests and people can check a chart against the results it drew.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from modelrouter.web.svg import data_number, fmt, svg_open

__all__ = ["PALETTE", "Axis", "EffectRow", "Reference", "Series", "effect_plot", "nice_axis",
           "xy_chart"]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2",
           "#bcbd22")
"""Variant colours (tab10 without its red and grey: red marks boundaries and margins)."""

WIDTH = 1160  # viewBox width: about the width of a section at a 1280 px window


@dataclass(frozen=True)
class Axis:
    """A value range and its tick values (both ends are ticks)."""

    low: float
    high: float
    ticks: tuple[float, ...]

    def pixel(self, value: float, start: float, end: float) -> float:
        """``value`` mapped linearly from [low, high] to pixels [start, end]."""
        return start + (value - self.low) * (end - start) / (self.high - self.low)


def nice_axis(values: Iterable[float], *, include: Iterable[float] = (),
              floor: float | None = None, ticks: int = 5) -> Axis:
    """A range covering the finite ``values`` and ``include`` with about ``ticks`` round steps.

    ``floor``: no tick below it (0 for values that cannot be negative, such as a rate). A
    constant series gets a range of one step around it; all zero gives [0, 1] with a floor of
    0, else [-1, 1].
    """
    pts = [float(v) for v in (*values, *include) if math.isfinite(v)]
    lo, hi = (min(pts), max(pts)) if pts else (0.0, 1.0)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        if lo == 0.0:
            lo, hi = (0.0, 1.0) if floor is not None and floor >= 0 else (-1.0, 1.0)
        else:
            pad = abs(lo) * 0.1
            lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(ticks, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    low = math.floor(lo / step + 1e-9) * step
    high = math.ceil(hi / step - 1e-9) * step
    if floor is not None and low < floor <= lo:
        low = floor
    count = int(round((high - low) / step))
    values_ = tuple(round(low + i * step, 12) for i in range(count + 1))
    return Axis(values_[0], values_[-1], values_)


@dataclass(frozen=True)
class Reference:
    """A labelled line across a chart at ``value`` (the analysis' scale): zero, a margin."""

    value: float
    label: str
    kind: str = "margin"  # "zero" (solid grey) or "margin" (dashed red)


@dataclass(frozen=True)
class EffectRow:
    """One row of an effect plot: an estimate and its interval (the analysis' scale) and the
    text printed beside it (already in the display unit)."""

    label: str
    estimate: float
    low: float
    high: float
    text: str
    guardrail: bool = False  # a guardrail's own (always-valid) interval: drawn grey, thinner
    color: str = ""  # default: the palette in row order


def _reference(ref: Reference, scale: float, axis: Axis, a: float, b: float, y0: float,
               y1: float, *, vertical: bool) -> list[str]:
    """A reference line and its label; nothing when it is outside the axis or not finite."""
    v = ref.value * scale
    if not (math.isfinite(v) and axis.low <= v <= axis.high):
        return []
    p = axis.pixel(v, a, b)
    style = ('stroke="#555" stroke-width="1.5"' if ref.kind == "zero" else
             'stroke="#cf222e" stroke-width="1.5" stroke-dasharray="6 4"')
    label_cls = "zero-label" if ref.kind == "zero" else "ref-label"
    if vertical:
        line = f'<line x1="{p:.1f}" y1="{y0:.1f}" x2="{p:.1f}" y2="{y1:.1f}" {style}/>'
        text = (f'<text x="{p + 3:.1f}" y="{y0 + 10:.1f}" class="{label_cls}">'
                f"{escape(ref.label)}</text>")
    else:
        line = f'<line x1="{y0:.1f}" y1="{p:.1f}" x2="{y1:.1f}" y2="{p:.1f}" {style}/>'
        text = (f'<text x="{y1 - 4:.1f}" y="{p - 4:.1f}" class="{label_cls}" '
                f'text-anchor="end">{escape(ref.label)}</text>')
    return [f'<g class="reference {escape(ref.kind)}" data-value="{data_number(ref.value)}" '
            f'data-label="{escape(ref.label)}">{line}{text}</g>']


def effect_plot(rows: Sequence[EffectRow], *, title: str, axis_label: str, scale: float = 1.0,
                references: Sequence[Reference] = (), width: int = WIDTH,
                label_width: int = 170, text_width: int = 330) -> str:
    """A forest plot of changes: one row per treatment, its interval as a bar, the estimate as a
    dot, a zero line and the ``references`` (guardrail margins) drawn across every row."""
    row_h, top, bottom = 30, 44, 48
    height = top + row_h * max(len(rows), 1) + bottom
    x0, x1 = label_width, width - text_width
    axis = nice_axis([v * scale for r in rows for v in (r.low, r.high, r.estimate)],
                     include=[0.0, *(ref.value * scale for ref in references)])
    y_axis = height - bottom + 6
    out = svg_open("effect", title, width, height)
    for t in axis.ticks:
        p = axis.pixel(t, x0, x1)
        out.append(f'<line x1="{p:.1f}" y1="{top - 8}" x2="{p:.1f}" y2="{y_axis}" '
                   f'stroke="#eee"/><text x="{p:.1f}" y="{y_axis + 14}" class="tick" '
                   f'text-anchor="middle">{escape(fmt(t))}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 6}" class="axis-label" '
               f'text-anchor="middle">{escape(axis_label)}</text>')
    for ref in (Reference(0.0, "0", "zero"), *references):
        out += _reference(ref, scale, axis, x0, x1, top - 8, y_axis, vertical=True)
    effects = 0
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = "#8c959f" if r.guardrail else r.color or PALETTE[effects % len(PALETTE)]
        effects += not r.guardrail
        cls = "guardrail-row" if r.guardrail else "row"
        out.append(f'<g class="{cls}" data-label="{escape(r.label)}" data-estimate='
                   f'"{data_number(r.estimate)}" data-lo="{data_number(r.low)}" '
                   f'data-hi="{data_number(r.high)}">')
        out.append(f'<text x="4" y="{y + 4:.1f}" class="label">{escape(r.label)}</text>')
        lo, hi = r.low * scale, r.high * scale
        if math.isfinite(lo) and math.isfinite(hi):
            a, b = axis.pixel(lo, x0, x1), axis.pixel(hi, x0, x1)
            out.append(f'<line class="ci" x1="{a:.1f}" y1="{y:.1f}" x2="{b:.1f}" y2="{y:.1f}" '
                       f'stroke="{color}" stroke-width="{2 if r.guardrail else 3}"/>')
            out += [f'<line x1="{p:.1f}" y1="{y - 6:.1f}" x2="{p:.1f}" y2="{y + 6:.1f}" '
                    f'stroke="{color}" stroke-width="2"/>' for p in (a, b)]
        if math.isfinite(r.estimate):
            out.append(f'<circle class="estimate" cx="{axis.pixel(r.estimate * scale, x0, x1):.1f}"'
                       f' cy="{y:.1f}" r="5" fill="{color}"/>')
        out.append(f'<text x="{x1 + 12}" y="{y + 4:.1f}" class="value">{escape(r.text)}</text>'
                   "</g>")
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Series:
    """A named line through ``points`` (x, y); ``band`` (x, low, high) is drawn as a shaded
    interval behind it (points with a non-finite end are left out of the band). ``style``:
    ``line`` (line and dots), ``step`` (a step line), ``boundary`` (a dashed line with a tick per
    point) or ``planned`` (dotted, lighter: not yet reached)."""

    name: str
    points: Sequence[tuple[float, float]]
    band: Sequence[tuple[float, float, float]] = ()
    style: str = "line"
    color: str = ""


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def xy_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
             y_scale: float = 1.0, references: Sequence[Reference] = (),
             x_include: Sequence[float] = (), x_floor: float | None = None,
             width: int = WIDTH, height: int = 300) -> str:
    """Series on labelled axes (ticks, grid, axis titles), with bands and reference lines.
    ``y_scale`` turns the data's y (and bands' and references') into the display unit; the
    data-* attributes keep the unscaled numbers."""
    left, right, top, bottom = 78, 20, 46, 52
    pts = [[(x, y * y_scale) for x, y in s.points if _finite(x, y)] for s in series]
    bands = [[(x, lo * y_scale, hi * y_scale) for x, lo, hi in s.band if _finite(x, lo, hi)]
             for s in series]
    xs = [x for p in pts for x, _ in p] + [x for b in bands for x, _, _ in b]
    ys = [y for p in pts for _, y in p] + [v for b in bands for _, lo, hi in b for v in (lo, hi)]
    x_axis = nice_axis(xs, include=x_include, floor=x_floor, ticks=8)
    y_axis = nice_axis(ys, include=[r.value * y_scale for r in references], ticks=5)
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def px(x: float) -> float:
        return x_axis.pixel(x, x0, x1)

    def py(y: float) -> float:
        return y_axis.pixel(y, y0, y1)

    out = svg_open("xy", title, width, height)
    for t in x_axis.ticks:
        out.append(f'<line x1="{px(t):.1f}" y1="{y1}" x2="{px(t):.1f}" y2="{y0}" stroke="#eee"/>'
                   f'<text x="{px(t):.1f}" y="{y0 + 16}" class="tick" text-anchor="middle">'
                   f"{escape(fmt(t))}</text>")
    for t in y_axis.ticks:
        out.append(f'<line x1="{x0}" y1="{py(t):.1f}" x2="{x1}" y2="{py(t):.1f}" stroke="#eee"/>'
                   f'<text x="{x0 - 6}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">'
                   f"{escape(fmt(t))}</text>")
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" '
               f'stroke="#ccc"/>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 8}" class="axis-label x-label" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    mid = (y0 + y1) / 2
    out.append(f'<text x="16" y="{mid:.1f}" class="axis-label y-label" text-anchor="middle" '
               f'transform="rotate(-90 16 {mid:.1f})">{escape(y_label)}</text>')
    for ref in references:
        out += _reference(ref, y_scale, y_axis, y0, y1, x0, x1, vertical=False)
    legend_x = x0
    for i, (s, p, b) in enumerate(zip(series, pts, bands)):
        color = s.color or PALETTE[i % len(PALETTE)]
        data = ";".join(f"{data_number(x)},{data_number(y)}" for x, y in s.points)
        band = ";".join(f"{data_number(x)},{data_number(lo)},{data_number(hi)}"
                        for x, lo, hi in s.band)
        out.append(f'<g class="series {escape(s.style)}" data-name="{escape(s.name)}" '
                   f'data-points="{data}"' + (f' data-band="{band}"' if s.band else "") + ">")
        if len(b) > 1:
            edge = [f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in b]
            edge += [f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(b)]
            out.append(f'<polygon class="band" points="{" ".join(edge)}" fill="{color}" '
                       f'fill-opacity="0.15" stroke="none"/>')
        elif len(b) == 1:  # one interval: a vertical bar
            x, lo, hi = b[0]
            out.append(f'<line class="band" x1="{px(x):.1f}" y1="{py(lo):.1f}" x2="{px(x):.1f}" '
                       f'y2="{py(hi):.1f}" stroke="{color}" stroke-opacity="0.35" '
                       f'stroke-width="8"/>')
        dash = {"boundary": ' stroke-dasharray="7 4"',
                "planned": ' stroke-dasharray="2 4" stroke-opacity="0.6"'}.get(s.style, "")
        if s.style == "step":  # hold each value until the next point
            p = [q for j, (x, y) in enumerate(p) for q in ([(x, p[j - 1][1])] if j else [])
                 + [(x, y)]]
        if len(p) > 1:
            line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in p)
            out.append(f'<polyline points="{line}" fill="none" stroke="{color}" '
                       f'stroke-width="2"{dash}/>')
        for x, y in p:
            if s.style == "line":
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>')
            elif s.style == "boundary":
                out.append(f'<line x1="{px(x) - 7:.1f}" y1="{py(y):.1f}" x2="{px(x) + 7:.1f}" '
                           f'y2="{py(y):.1f}" stroke="{color}" stroke-width="3"/>')
        out.append(f'<line x1="{legend_x}" y1="34" x2="{legend_x + 18}" y2="34" '
                   f'stroke="{color}" stroke-width="3"{dash}/><text x="{legend_x + 22}" y="38" '
                   f'class="legend">{escape(s.name)}</text></g>')
        legend_x += 30 + 7 * len(s.name)
    out.append("</svg>")
    return "".join(out)
