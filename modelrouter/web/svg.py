"""Tiny inline-SVG charts for the dashboard: a forest plot and a line/step chart.

No plotting dependency and no script: each function returns an ``<svg>`` element as text, every
label passed through :func:`html.escape`. Numbers also go into ``data-*`` attributes (full
precision) so tests, and people, can check a chart against the analysis that drew it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "ForestRow", "fmt", "forest_plot", "line_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2")


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits, ``n/a`` for NaN or None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _attr(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "nan"


@dataclass(frozen=True)
class ForestRow:
    """One line of a forest plot: an estimate and its interval."""

    label: str
    estimate: float
    low: float
    high: float
    note: str = ""


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float, float]:
    """Padded data range [lo, hi] mapped to pixels [a, b]; returns (lo, hi, pixels per unit)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    return lo, hi, (b - a) / (hi - lo)


def forest_plot(rows: Sequence[ForestRow], *, title: str, reference: float | None = None,
                width: int = 640, label_width: int = 130, value_width: int = 190) -> str:
    """Estimates with horizontal interval bars, one row per entry (e.g. per variant)."""
    row_h, top, bottom = 28, 30, 26
    height = top + row_h * max(len(rows), 1) + bottom
    x0, x1 = label_width, width - value_width
    finite = [v for r in rows for v in (r.low, r.high, r.estimate) if math.isfinite(v)]
    if reference is not None:
        finite.append(reference)
    lo, hi, k = _scale(min(finite, default=0.0), max(finite, default=1.0), x0, x1)

    def px(v: float) -> float:
        return x0 + (v - lo) * k

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="forest" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<text x="4" y="18" class="chart-title">{escape(title)}</text>',
           f'<line x1="{x0}" y1="{top - 6}" x2="{x0}" y2="{height - bottom + 4}" '
           f'stroke="#ccc"/>']
    if reference is not None and math.isfinite(reference):
        out.append(f'<line class="reference" x1="{px(reference):.1f}" y1="{top - 6}" '
                   f'x2="{px(reference):.1f}" y2="{height - bottom + 4}" stroke="#888" '
                   f'stroke-dasharray="4 3"/>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<g class="row" data-label="{escape(r.label)}" '
                   f'data-estimate="{_attr(r.estimate)}" data-low="{_attr(r.low)}" '
                   f'data-high="{_attr(r.high)}">')
        out.append(f'<text x="4" y="{y + 4:.1f}" class="label">{escape(r.label)}</text>')
        if math.isfinite(r.low) and math.isfinite(r.high):
            out.append(f'<line class="ci" x1="{px(r.low):.1f}" y1="{y:.1f}" '
                       f'x2="{px(r.high):.1f}" y2="{y:.1f}" stroke="{color}" '
                       f'stroke-width="2"/>')
            for v in (r.low, r.high):
                out.append(f'<line x1="{px(v):.1f}" y1="{y - 5:.1f}" x2="{px(v):.1f}" '
                           f'y2="{y + 5:.1f}" stroke="{color}" stroke-width="2"/>')
        if math.isfinite(r.estimate):
            out.append(f'<circle class="estimate" cx="{px(r.estimate):.1f}" cy="{y:.1f}" '
                       f'r="4.5" fill="{color}"/>')
        text = (f"{fmt(r.estimate)} [{fmt(r.low)}, {fmt(r.high)}]"
                if math.isfinite(r.estimate) else "no data")
        if r.note:
            text += f" {r.note}"
        out.append(f'<text x="{x1 + 10}" y="{y + 4:.1f}" class="value">{escape(text)}</text>')
        out.append("</g>")
    axis_y = height - bottom + 18
    out.append(f'<text x="{x0}" y="{axis_y}" class="axis">{escape(fmt(lo, 3))}</text>')
    out.append(f'<text x="{x1}" y="{axis_y}" class="axis" text-anchor="end">'
               f'{escape(fmt(hi, 3))}</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str,
               x_label: str = "", y_label: str = "", step: bool = False,
               dashed: Sequence[str] = (), width: int = 640, height: int = 240) -> str:
    """Lines (or steps) through points, with a legend; ``dashed`` names series drawn dashed
    (e.g. boundaries). Points with a non-finite coordinate are skipped."""
    left, right, top, bottom = 56, 16, 30, 40
    pts = {name: [(x, y) for x, y in p if math.isfinite(x) and math.isfinite(y)]
           for name, p in series.items()}
    xs = [x for p in pts.values() for x, _ in p]
    ys = [y for p in pts.values() for _, y in p]
    xlo, xhi, kx = _scale(min(xs, default=0.0), max(xs, default=1.0), left, width - right)
    ylo, yhi, ky = _scale(min(ys, default=0.0), max(ys, default=1.0), 0, height - top - bottom)

    def px(x: float) -> float:
        return left + (x - xlo) * kx

    def py(y: float) -> float:
        return height - bottom - (y - ylo) * ky

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lines" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<text x="4" y="18" class="chart-title">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" '
           f'height="{height - top - bottom}" fill="none" stroke="#ddd"/>']
    if ylo < 0 < yhi:
        out.append(f'<line x1="{left}" y1="{py(0):.1f}" x2="{width - right}" y2="{py(0):.1f}" '
                   f'stroke="#bbb"/>')
    for i, (name, p) in enumerate(pts.items()):
        color = PALETTE[i % len(PALETTE)]
        coords: list[tuple[float, float]] = []
        for j, (x, y) in enumerate(p):
            if step and j:
                coords.append((x, p[j - 1][1]))
            coords.append((x, y))
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in coords)
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        data = ";".join(f"{_attr(x)},{_attr(y)}" for x, y in p)
        out.append(f'<g class="series" data-name="{escape(name)}" data-points="{data}">')
        if len(coords) > 1:
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" '
                       f'stroke-width="2"{dash}/>')
        for x, y in p:  # points; dashed series (boundaries) get short horizontal ticks
            if name in dashed:
                out.append(f'<line x1="{px(x) - 7:.1f}" y1="{py(y):.1f}" x2="{px(x) + 7:.1f}" '
                           f'y2="{py(y):.1f}" stroke="{color}" stroke-width="3"/>')
            else:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{left + 8 + 150 * (i % 4)}" y="{height - 6 - 14 * (i // 4)}" '
                   f'fill="{color}" class="legend">{escape(name)}</text></g>')
    out.append(f'<text x="4" y="{top + 10}" class="axis">{escape(fmt(yhi, 3))}</text>')
    out.append(f'<text x="4" y="{height - bottom}" class="axis">{escape(fmt(ylo, 3))}</text>')
    if x_label or y_label:
        out.append(f'<text x="{width - right}" y="{height - bottom + 14}" class="axis" '
                   f'text-anchor="end">{escape(x_label)}</text>')
        out.append(f'<text x="{left + 4}" y="{top + 12}" class="axis">{escape(y_label)}</text>')
    out.append("</svg>")
    return "".join(out)
