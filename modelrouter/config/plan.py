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
    futility_spending = "obrien-fleming"   # optional: non-binding futility bounds

``rho`` (the expected correlation of the primary metric with its pre-exposure covariates,
e.g. measured on past data) or ``variance_reduction`` (``rho**2``, or an earlier experiment's
``variance_reduction``) plans the CUPED-adjusted test the analysis runs when the primary metric
declares covariates: the horizon derived from ``mde`` is ``1 - rho**2`` times the unadjusted
one (stats/power_adjusted.py; conversions with the unpooled variance, as Welch's t on the
adjusted outcome), and the horizon's description says how many units that saves. It needs
``mde`` (``max_units`` is the horizon itself) and a primary metric that declares covariates.

``futility_spending`` (default None: no futility bounds) adds non-binding futility bounds that
spend the type II error ``1 - power`` with one of the same families (``futility_gamma`` as
``gamma``); see :mod:`modelrouter.stats.sequential_futility`. Non-binding: the efficacy
boundaries, hence the false-positive rate, are those without futility bounds, so continuing past
a futility bound is always allowed; obeying them costs a little power (reported by
``analysis.sequential()``).

:class:`ExperimentPlan` is the plan part of a :class:`~modelrouter.config.RouterConfig`
(``config.plan``): a frozen, keyword-only value that validates itself, like the other
sub-configs, and is given whole (the flat ``plan=`` field) because its fields belong together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from modelrouter.config._checks import (
    check_choice,
    check_integer,
    check_keys,
    check_mapping,
    check_number,
    check_open_unit,
    check_positive,
    choices,
)
from modelrouter.config.base import config_dict, config_repr
from modelrouter.config.metrics import MetricSpec
from modelrouter.exceptions import ConfigError

__all__ = ["SPENDING_NAMES", "ExperimentPlan", "Sided", "Spending", "parse_plan"]

# the same names as modelrouter.stats.sequential (a test keeps them in step); repeated here so
# that building a config does not import the numerics
Spending = Literal["obrien-fleming", "pocock", "hwang-shih-decani", "power"]
Sided = Literal[1, 2]
SPENDING_NAMES: tuple[str, ...] = choices(Spending)


@dataclass(frozen=True, kw_only=True, repr=False)
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
    futility_spending: Spending | None = None
    futility_gamma: float | None = None
    rho: float | None = None
    variance_reduction: float | None = None

    def __post_init__(self) -> None:
        check_open_unit("plan.alpha", self.alpha)
        check_open_unit("plan.power", self.power)
        check_choice("plan.sided", self.sided, Sided, expected="1 or 2")
        if (self.mde is None) == (self.max_units is None):
            raise ConfigError(f"plan: give exactly one of mde (absolute minimum detectable "
                              f"effect) and max_units (units per group), got mde={self.mde!r}, "
                              f"max_units={self.max_units!r}")
        if self.mde is not None:
            check_number("plan.mde", self.mde, low=0, low_open=True,
                         why="an absolute effect size")
        if self.max_units is not None:
            check_integer("plan.max_units", self.max_units, low=2, expected="an integer >= 2")
        check_integer("plan.looks", self.looks, low=1, high=50,
                      expected="an integer from 1 to 50")
        check_choice("plan.spending", self.spending, Spending)
        if self.spending in ("obrien-fleming", "pocock"):
            if self.gamma is not None:
                raise ConfigError(f"plan.gamma ({self.gamma!r}) is only used by spending "
                                  "'hwang-shih-decani' and 'power'")
        elif self.gamma is None:
            raise ConfigError(f"plan.gamma (None) must be a number for spending "
                              f"{self.spending!r}")
        elif check_number("plan.gamma", self.gamma) <= 0 and self.spending == "power":
            raise ConfigError(f"plan.gamma ({self.gamma!r}) is the power rho and must be > 0")
        self._check_futility()
        self._check_adjustment()
        if self.baseline is not None:
            check_open_unit("plan.baseline", self.baseline)
        if self.sd is not None:
            check_positive("plan.sd", self.sd)

    def _check_futility(self) -> None:
        if self.futility_spending is None:
            if self.futility_gamma is not None:
                raise ConfigError(f"plan.futility_gamma ({self.futility_gamma!r}) needs "
                                  "plan.futility_spending")
            return
        check_choice("plan.futility_spending", self.futility_spending, Spending)
        if self.futility_spending in ("obrien-fleming", "pocock"):
            if self.futility_gamma is not None:
                raise ConfigError(f"plan.futility_gamma ({self.futility_gamma!r}) is only used "
                                  "by futility_spending 'hwang-shih-decani' and 'power'")
        elif self.futility_gamma is None:
            raise ConfigError(f"plan.futility_gamma (None) must be a number for "
                              f"futility_spending {self.futility_spending!r}")
        elif (check_number("plan.futility_gamma", self.futility_gamma) <= 0
              and self.futility_spending == "power"):
            raise ConfigError(f"plan.futility_gamma ({self.futility_gamma!r}) is the power rho "
                              "and must be > 0")

    def _check_adjustment(self) -> None:
        if self.rho is not None and self.variance_reduction is not None:
            raise ConfigError(f"plan: give at most one of rho ({self.rho!r}) and "
                              f"variance_reduction ({self.variance_reduction!r})")
        if self.rho is not None:
            check_number("plan.rho", self.rho, low=-1, high=1, low_open=True, high_open=True,
                         why="a correlation")
        if self.variance_reduction is not None:
            check_number("plan.variance_reduction", self.variance_reduction, low=0, high=1,
                         high_open=True, why="a share of the variance")
        if self.expected_variance_reduction and self.max_units is not None:
            raise ConfigError(f"plan: rho / variance_reduction scale a horizon derived from mde; "
                              f"max_units ({self.max_units!r}) is the horizon itself")

    @property
    def expected_variance_reduction(self) -> float:
        """``rho**2``, ``variance_reduction`` or 0: the share of the variance the planned
        covariate adjustment is expected to remove."""
        if self.rho is not None:
            return float(self.rho) ** 2
        return float(self.variance_reduction or 0.0)

    def check_primary(self, primary: str, spec: MetricSpec) -> None:
        """The nuisance parameter and effect fit the primary metric: ``baseline`` for a
        conversion (``aggregate="any"``, a difference of two proportions), ``sd`` for a mean;
        a binary metric's ``mde`` is a difference of rates, below 1."""
        conversion = spec.aggregate == "any"
        if conversion and self.sd is not None:
            raise ConfigError(f"plan.sd ({self.sd!r}) is for means; primary {primary!r} "
                              "is a conversion: give plan.baseline (its rate) instead")
        if not conversion and self.baseline is not None:
            raise ConfigError(f"plan.baseline ({self.baseline!r}) is a conversion rate; primary "
                              f"{primary!r} is a mean: give plan.sd (per unit) instead")
        if self.expected_variance_reduction and not spec.covariates:
            what = "rho" if self.rho is not None else "variance_reduction"
            raise ConfigError(f"plan.{what} ({getattr(self, what)!r}) plans a covariate-adjusted "
                              f"test, but the primary metric {primary!r} declares no covariates "
                              "(metrics.<name>.covariates): its test would be unadjusted")
        if spec.kind == "binary" and self.mde is not None and self.mde >= 1:
            raise ConfigError(f"plan.mde ({self.mde!r}) must be < 1 for the binary primary "
                              f"metric {primary!r} (it is an absolute difference of rates)")

    def describe(self) -> str:
        """One line: ``alpha=0.05 two-sided, power 0.8, mde 0.01, 5 looks, obrien-fleming``."""
        horizon = (f"mde {self.mde:g}" if self.mde is not None
                   else f"max {self.max_units:,} units per group")
        gamma = "" if self.gamma is None else f" (gamma {self.gamma:g})"
        side = "two-sided" if self.sided == 2 else "one-sided"
        futility = "" if self.futility_spending is None else (
            f", non-binding futility ({self.futility_spending} beta spending"
            + ("" if self.futility_gamma is None else f", gamma {self.futility_gamma:g}") + ")")
        vr = self.expected_variance_reduction
        cuped = "" if not vr else (f", CUPED-adjusted (variance -{vr:.1%}"
                                   + ("" if self.rho is None else f", rho {self.rho:g}") + ")")
        return (f"alpha={self.alpha:g} {side}, power {self.power:g}, {horizon}{cuped}, "
                f"{self.looks} planned looks, {self.spending} spending{gamma}{futility}")

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain data (the shape :func:`parse_plan` accepts)."""
        return config_dict(self)

    to_dict = as_dict  # the name GuardrailSpec and MetricSpec use

    def __repr__(self) -> str:
        return config_repr(self)


_FIELDS = frozenset(f.name for f in dataclasses.fields(ExperimentPlan))


def parse_plan(value: object) -> ExperimentPlan | None:
    """An :class:`ExperimentPlan` from itself, a mapping (e.g. a TOML table) or None."""
    if value is None or isinstance(value, ExperimentPlan):
        return value
    fields = check_mapping("plan", value, expected="an ExperimentPlan or a mapping of its fields")
    check_keys("plan", fields, _FIELDS, what="plan field")
    return ExperimentPlan(**{str(k): v for k, v in fields.items()})  # type: ignore[arg-type]
