"""How the dashboard writes a metric's numbers: one unit per metric, used by every table and chart.

- proportions (``kind="binary"``, the automatic ``error`` included): rates in percent, changes
  treatment - control in percentage points (``pp``), so ``41.5%`` and ``+2.3 pp`` never mix;
- ``latency_ms``: milliseconds, rates and changes alike;
- every other metric: its own unit (the config does not name one), printed as a plain number.

Relative changes are percentages everywhere. Values are printed with four significant digits
(:func:`modelrouter.web.svg.fmt`), after scaling to the display unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelrouter.config.metrics import MetricSpec
from modelrouter.web.svg import fmt

__all__ = ["DisplayUnit", "display_unit", "percent"]


def percent(value: float, digits: int = 4) -> str:
    """A relative change (a fraction) as a signed percentage, ``n/a`` when not finite."""
    if not math.isfinite(value):
        return "n/a"
    return f"{_signed(value * 100.0, digits)}%"


def _signed(value: float, digits: int) -> str:
    text = fmt(value, digits)
    return text if text.startswith("-") or text == "n/a" else f"+{text}"


@dataclass(frozen=True)
class DisplayUnit:
    """The unit a metric's values (``value_suffix``) and changes (``change_suffix``) are shown
    in; ``scale`` turns the analysis' numbers (fractions for proportions) into shown ones."""

    metric: str
    scale: float = 1.0
    value_suffix: str = ""
    change_suffix: str = ""
    proportion: bool = False

    def scaled(self, value: float) -> float:
        """``value`` in the display unit."""
        return value * self.scale

    def value(self, value: float, digits: int = 4) -> str:
        """A rate or mean: ``41.5%``, ``12.3 ms``, ``2.431``."""
        if not math.isfinite(value):
            return "n/a"
        text = fmt(self.scaled(value), digits)
        return f"{text}%" if self.proportion else (
            f"{text} {self.value_suffix}" if self.value_suffix else text)

    def change(self, value: float, digits: int = 4) -> str:
        """A difference treatment - control, signed: ``+2.3 pp``, ``-4.1 ms``, ``+2.369``."""
        if not math.isfinite(value):
            return "n/a"
        text = _signed(self.scaled(value), digits)
        return f"{text} {self.change_suffix}" if self.change_suffix else text

    def interval(self, low: float, high: float, digits: int = 4) -> str:
        """``[+0.27, +3.78] pp``: both ends signed, the unit once."""
        ends = ", ".join(_signed(self.scaled(v), digits) if math.isfinite(v) else
                         ("-inf" if v < 0 else "+inf") if math.isinf(v) else "n/a"
                         for v in (low, high))
        return f"[{ends}]" + (f" {self.change_suffix}" if self.change_suffix else "")

    @property
    def axis_label(self) -> str:
        """What a chart's axis of changes says its unit is."""
        if self.change_suffix:
            return f"{self.metric}: treatment - control ({self.change_suffix})"
        return f"{self.metric}: treatment - control"


def display_unit(spec: MetricSpec) -> DisplayUnit:
    """The display unit of one metric (see the module docstring)."""
    if spec.kind == "binary":
        return DisplayUnit(spec.name, 100.0, "%", "pp", proportion=True)
    if spec.name == "latency_ms":
        return DisplayUnit(spec.name, 1.0, "ms", "ms")
    return DisplayUnit(spec.name)
