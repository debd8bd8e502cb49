"""What every inline-SVG chart of the dashboard shares: numbers for people (:func:`fmt`) and for
``data-*`` attributes (:func:`data_number`, full precision), and the ``<svg>`` opening with
its accessible title (:func:`svg_open`). The charts themselves are in
:mod:`modelrouter.web.charts`.

No plotting dependency and no script: a chart is text, every label passed through
:func:`html.escape`.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["data_number", "fmt", "svg_open"]


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits, ``n/a`` for NaN or None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def data_number(value: float) -> str:
    """A number for a data-* attribute: full precision (``repr``), so that a chart can be
    checked against the results it drew; ``nan``, ``inf``, ``-inf`` spelled out."""
    return repr(float(value)) if math.isfinite(value) else str(float(value))


def svg_open(cls: str, title: str, width: int, height: int) -> list[str]:
    """The ``<svg>`` start tag (class ``chart <cls>``, a ``width`` x ``height`` viewBox that
    CSS stretches to the page), its ``<title>`` and the visible title line."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(cls)}" viewBox="0 0 '
            f'{width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
            f'<text x="4" y="18" class="chart-title">{escape(title)}</text>']
