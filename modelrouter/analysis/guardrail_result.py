"""The result of one guardrail check: :class:`GuardrailResult` (and its :data:`Status`).

Kept apart from the checks (analysis/guardrails.py, analysis/adjusted_guardrails.py) so that
both can build it; re-exported by :mod:`modelrouter.analysis.guardrails`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from modelrouter.config.guardrails import guardrail_key
from modelrouter.stats.results import ConfidenceInterval

__all__ = ["GuardrailResult", "Status"]

Status = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class GuardrailResult:
    """One guardrail for one treatment in one population (``segment=None``: everyone).

    ``estimate``, ``low`` and ``high`` are on the margin's scale: a difference (absolute
    margins) or a relative change such as ``0.12`` for +12% (relative margins).
    """

    metric: str
    variant: str
    segment: dict[str, str] | None
    status: Status
    direction: str
    margin: float
    relative: bool
    estimate: float
    low: float
    high: float
    alpha: float
    units_control: int
    units_treatment: int
    reason: str
    quantile: float | None = None  # None: the mean; 0.95: the 95th percentile
    # CUPED (analysis/adjusted_guardrails.py): whether estimate and interval are adjusted for
    # the metric's pre-exposure covariates, and the share of the estimate's variance removed
    adjusted: bool = False
    variance_reduction: float = math.nan

    @property
    def label(self) -> str:
        """The guardrail's name: ``latency_ms`` (mean) or ``latency_ms p95``."""
        return guardrail_key(self.metric, self.quantile)

    def confidence_interval(self) -> ConfidenceInterval:
        """The always-valid ``1 - alpha`` interval the status was decided on."""
        return ConfidenceInterval(self.low, self.high)

    @property
    def where(self) -> str:
        """``overall`` or ``platform=mobile``."""
        if not self.segment:
            return "overall"
        return ", ".join(f"{k}={v}" for k, v in self.segment.items())

    def __repr__(self) -> str:
        return (f"GuardrailResult({self.label} {self.variant} {self.where}: {self.status}, "
                f"estimate={self.estimate:.4g}, interval=[{self.low:.4g}, {self.high:.4g}], "
                f"margin={'+' if self.direction == 'increase' else '-'}{self.margin:.4g}"
                f"{' relative' if self.relative else ''})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"guardrail": self.label, "metric": self.metric, "variant": self.variant,
                "segment": self.segment,
                "status": self.status, "direction": self.direction, "margin": self.margin,
                "relative": self.relative, "estimate": self.estimate, "low": self.low,
                "high": self.high, "alpha": self.alpha, "units_control": self.units_control,
                "units_treatment": self.units_treatment, "reason": self.reason,
                "quantile": self.quantile, "adjusted": self.adjusted,
                "variance_reduction": self.variance_reduction}
