"""The statistical plan of an experiment: how long it runs and how often it may be looked at.

A plan fixes, before the data arrive, what a group-sequential test needs: the error rates
(``alpha``, ``power``, ``sided``), the horizon (an absolute minimum detectable effect ``mde``
from which the maximum number of units is derived, or ``max_units`` directly), the planned
number of looks and the alpha-spending function. The metric is the config's ``primary``.

The horizon needs a nuisance parameter when it comes from ``mde``: the control's conversion
rate for binary metrics (``baseline``) or the per-unit standard deviation for continuous ones
(``sd``). Give it here when you know it; otherwise it is estimated from the control's data at
the first recorded look and frozen there (see :mod:`modelrouter.analysis.sequential`).

In TOML::

    [router.plan]
    mde = 0.01          # absolute: +1 percentage point
    baseline = 0.05
    looks = 5
    spending = "obrien-fleming"
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelrouter.exceptions import ConfigError

__all__ = ["SPENDING_NAMES", "ExperimentPlan", "parse_plan"]

Spending = Literal["obrien-fleming", "pocock", "hwang-shih-decani", "power"]
# the same names as modelrouter.stats.SPENDING_FUNCTIONS (a test keeps them in step); repeated
# here so that building a config does not import the numerics
SPENDING_NAMES: tuple[str, ...] = ("obrien-fleming", "pocock", "hwang-shih-decani", "power")


def _number(path: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path} ({value!r}) must be a finite number")
    return float(value)


def _open_unit(path: str, value: object) -> float:
    v = _number(path, value)
    if not 0.0 < v < 1.0:
        raise ConfigError(f"{path} ({value!r}) must be in (0, 1)")
    return v


@dataclass(frozen=True, kw_only=True)
class ExperimentPlan:
    """Error rates, horizon, looks and spending function of the primary metric's test.

    Give exactly one of ``mde`` (absolute effect, in the metric's units: 0.01 is one percentage
    point for a conversion) and ``max_units`` (units per group; the control group when the
    split is unequal). ``looks`` is the planned number of looks; it sets the sample-size
    inflation of the design (equally spaced looks) and is not a hard limit, since spending
    functions adapt to the looks actually recorded.
    """

    alpha: float = 0.05
    power: float = 0.8
    sided: Literal[1, 2] = 2
    mde: float | None = None
    max_units: int | None = None
    looks: int = 5
    spending: Spending = "obrien-fleming"
    gamma: float | None = None
    baseline: float | None = None
    sd: float | None = None

    def __post_init__(self) -> None:
        _open_unit("plan.alpha", self.alpha)
        _open_unit("plan.power", self.power)
        if self.sided not in (1, 2) or isinstance(self.sided, bool):
            raise ConfigError(f"plan.sided ({self.sided!r}) must be 1 or 2")
        if (self.mde is None) == (self.max_units is None):
            raise ConfigError(f"plan: give exactly one of mde (absolute minimum detectable "
                              f"effect) and max_units (units per group), got mde={self.mde!r}, "
                              f"max_units={self.max_units!r}")
        if self.mde is not None and _number("plan.mde", self.mde) <= 0:
            raise ConfigError(f"plan.mde ({self.mde!r}) must be > 0 (an absolute effect size)")
        if self.max_units is not None and (isinstance(self.max_units, bool) or not isinstance(
                self.max_units, int) or self.max_units < 2):
            raise ConfigError(f"plan.max_units ({self.max_units!r}) must be an integer >= 2")
        if isinstance(self.looks, bool) or not isinstance(self.looks, int) or not (
                1 <= self.looks <= 50):
            raise ConfigError(f"plan.looks ({self.looks!r}) must be an integer from 1 to 50")
        if self.spending not in SPENDING_NAMES:
            names = ", ".join(repr(s) for s in SPENDING_NAMES)
            raise ConfigError(f"plan.spending ({self.spending!r}) must be one of {names}")
        if self.spending in ("obrien-fleming", "pocock"):
            if self.gamma is not None:
                raise ConfigError(f"plan.gamma ({self.gamma!r}) is only used by spending "
                                  "'hwang-shih-decani' and 'power'")
        elif self.gamma is None:
            raise ConfigError(f"plan.gamma (None) must be a number for spending "
                              f"{self.spending!r}")
        elif _number("plan.gamma", self.gamma) <= 0 and self.spending == "power":
            raise ConfigError(f"plan.gamma ({self.gamma!r}) is the power rho and must be > 0")
        if self.baseline is not None:
            _open_unit("plan.baseline", self.baseline)
        if self.sd is not None and _number("plan.sd", self.sd) <= 0:
            raise ConfigError(f"plan.sd ({self.sd!r}) must be > 0")

    def describe(self) -> str:
        """One line: ``alpha=0.05 two-sided, power 0.8, mde 0.01, 5 looks, obrien-fleming``."""
        horizon = (f"mde {self.mde:g}" if self.mde is not None
                   else f"max {self.max_units:,} units per group")
        gamma = "" if self.gamma is None else f" (gamma {self.gamma:g})"
        side = "two-sided" if self.sided == 2 else "one-sided"
        return (f"alpha={self.alpha:g} {side}, power {self.power:g}, {horizon}, "
                f"{self.looks} planned looks, {self.spending} spending{gamma}")

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data (the shape :func:`parse_plan` accepts)."""
        return dataclasses.asdict(self)


_FIELDS = frozenset(f.name for f in dataclasses.fields(ExperimentPlan))


def parse_plan(value: object) -> ExperimentPlan | None:
    """An :class:`ExperimentPlan` from itself, a mapping (e.g. a TOML table) or None."""
    if value is None or isinstance(value, ExperimentPlan):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"plan ({value!r}) must be an ExperimentPlan or a mapping of its "
                          "fields")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise ConfigError(f"plan.{unknown[0]}: unknown plan field; known fields are "
                          f"{sorted(_FIELDS)}")
    return ExperimentPlan(**value)
