"""How numbers, p-values and counts are written in the analysis's text (reports, summaries).

The text never shows ``nan``: a number that is not defined is written ``n/a`` and the text
around it says why (usually: not enough data yet). A p-value below ``1e-16`` is written
``< 1e-16``: in double precision ``1 - p`` is then 1, and the normal or t tail that far out
says nothing the data can support (an exact 0 comes from underflow or a zero variance). Counts
agree with their noun ("1 unit", "2 units").
"""

from __future__ import annotations

import math
import re

__all__ = ["NOT_ENOUGH_DATA", "PVALUE_FLOOR", "fmt", "fmt_interval", "fmt_pvalue", "p_equals",
           "fmt_signed", "plural", "singular_counts"]

NOT_ENOUGH_DATA = "not enough data yet"
PVALUE_FLOOR = 1e-16
_NOUNS = ("units", "requests", "decisions", "events", "looks", "checks", "treatments",
          "segments", "epochs")
_ONE = re.compile(r"(?<![\d.,+-])1 (" + "|".join(n[:-1] for n in _NOUNS) + r")s\b")


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``"1 unit"``, ``"2 units"``, ``"1,234 units"`` (``nouns`` for irregular plurals)."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def singular_counts(text: str) -> str:
    """``text`` with "1 units" (and requests, decisions, events, ...) made singular: for
    messages written elsewhere with a count that may be one."""
    return _ONE.sub(r"1 \1", text)


def fmt(x: float | int, digits: int = 4) -> str:
    """A number in ``digits`` significant digits; ints with thousands separators; ``n/a``
    for NaN."""
    if isinstance(x, int):
        return f"{x:,}"
    if math.isnan(x):
        return "n/a"
    return f"{x:.{digits}g}"


def fmt_signed(x: float, digits: int = 4) -> str:
    """Like :func:`fmt` with a sign."""
    return "n/a" if math.isnan(x) else f"{x:+.{digits}g}"


def fmt_interval(low: float, high: float, digits: int = 4, signed: bool = False) -> str:
    """``[low, high]``, or ``n/a`` when a bound is NaN (an infinite bound is written inf)."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    f = fmt_signed if signed else fmt
    return f"[{f(low, digits)}, {f(high, digits)}]"


def p_equals(p: float) -> str:
    """``= 0.0123``, ``< 1e-16`` or ``= n/a``: a p-value after "p" in a sentence."""
    text = fmt_pvalue(p, 3)
    return text if text.startswith("<") else f"= {text}"


def fmt_pvalue(p: float, digits: int = 4) -> str:
    """A p-value: ``n/a`` when not defined, ``< 1e-16`` below :data:`PVALUE_FLOOR`."""
    if math.isnan(p):
        return "n/a"
    if p < PVALUE_FLOOR:
        return f"< {PVALUE_FLOOR:g}"
    return f"{p:.{digits}g}"
