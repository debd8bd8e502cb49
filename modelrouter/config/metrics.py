"""Metric declarations: :class:`MetricSpec`, the automatic metrics, and :func:`parse_metrics`.

The parsed metrics (``dict[str, MetricSpec]``, automatic ones included) are the metrics part of
a :class:`~modelrouter.config.RouterConfig`: ``config.metrics``. The bandit and guardrail
settings refer to them by name, so their sub-configs carry them too, to validate against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from modelrouter.config._checks import (
    check_bool,
    check_choice,
    check_keys,
    check_mapping,
    check_name,
)
from modelrouter.exceptions import ConfigError

__all__ = ["AUTOMATIC_METRICS", "Aggregate", "MetricKind", "MetricSpec", "covariate_names",
           "parse_metrics"]

MetricKind = Literal["binary", "continuous"]
Aggregate = Literal["any", "sum", "mean"]
_FIELDS = frozenset({"kind", "aggregate", "lower_is_better", "covariates"})


@dataclass(frozen=True)
class MetricSpec:
    """One outcome metric.

    ``kind="binary"`` values are 0 or 1; ``kind="continuous"`` any finite float.
    ``aggregate`` says how a unit's many values become one number: ``"any"`` (binary default:
    the unit converts if any value is 1), ``"sum"`` (continuous default: revenue per user) or
    ``"mean"`` (per-event rate or mean, analysed as a ratio metric with the delta method, as
    for the automatic ``latency_ms`` and ``error``). ``lower_is_better`` orients guardrails.
    """

    name: str
    kind: MetricKind = "continuous"
    aggregate: Aggregate | None = None
    lower_is_better: bool = False
    covariates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name("metrics", self.name)
        path = f"metrics.{self.name}"
        check_choice(f"{path}.kind", self.kind, MetricKind)
        if self.aggregate is None:
            object.__setattr__(self, "aggregate", "any" if self.kind == "binary" else "sum")
        check_choice(f"{path}.aggregate", self.aggregate, Aggregate)
        if self.aggregate == "any" and self.kind != "binary":
            raise ConfigError(f"{path}.aggregate ('any') needs kind 'binary', got {self.kind!r}")
        check_bool(f"{path}.lower_is_better", self.lower_is_better)
        object.__setattr__(self, "covariates", _covariates(path, self.covariates))

    @property
    def is_ratio(self) -> bool:
        """True when analysed per event (sum / count per unit, delta method)."""
        return self.aggregate == "mean"

    def to_dict(self) -> dict[str, object]:
        """The fields but the name, as plain data (the mapping form :meth:`parse` accepts)."""
        out: dict[str, object] = {"kind": self.kind, "aggregate": self.aggregate,
                                  "lower_is_better": self.lower_is_better}
        if self.covariates:
            out["covariates"] = list(self.covariates)
        return out

    @classmethod
    def parse(cls, name: str, spec: object) -> MetricSpec:
        """Build from the shorthand ``"binary"`` / ``"continuous"`` or a mapping of fields."""
        if isinstance(spec, MetricSpec):
            if spec.name != name:
                raise ConfigError(f"metrics.{name}: MetricSpec is named {spec.name!r}")
            return spec
        if isinstance(spec, str):
            return cls(name=name, kind=spec)  # type: ignore[arg-type]  # checked on creation
        kinds = ", ".join(map(repr, get_args(MetricKind)))
        fields = check_mapping(f"metrics.{name}", spec, expected=f"{kinds} or a mapping")
        check_keys(f"metrics.{name}", fields, _FIELDS)
        return cls(name=name, **{str(k): v for k, v in fields.items()})  # type: ignore[arg-type]


def _covariates(path: str, names: object) -> tuple[str, ...]:
    """The covariate names of a metric: a list or tuple of distinct valid names."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"{path}.covariates ({names!r}) must be a list of names")
    out = tuple(check_name(f"{path}.covariates", n) for n in names)
    if len(set(out)) != len(out):
        raise ConfigError(f"{path}.covariates ({list(out)!r}) names a covariate twice")
    return out


AUTOMATIC_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("latency_ms", "continuous", "mean", lower_is_better=True),
    MetricSpec("error", "binary", "mean", lower_is_better=True),
)


def parse_metrics(metrics: object) -> dict[str, MetricSpec]:
    """The automatic metrics and the declared ones (shorthand, mappings or specs), by name."""
    declared = check_mapping("metrics", metrics, expected="a mapping of name to spec")
    parsed: dict[str, MetricSpec] = {m.name: m for m in AUTOMATIC_METRICS}
    for name, spec in declared.items():
        parsed[check_name("metrics", name)] = MetricSpec.parse(str(name), spec)
    for spec in parsed.values():
        for c in spec.covariates:
            if c in parsed:
                raise ConfigError(f"metrics.{spec.name}.covariates: {c!r} is a metric's name; "
                                  "a covariate needs a name of its own")
    return parsed


def covariate_names(metrics: Mapping[str, MetricSpec]) -> tuple[str, ...]:
    """Every covariate the metrics declare, once each, in declaration order (the stores keep
    one column per name)."""
    return tuple(dict.fromkeys(c for spec in metrics.values() for c in spec.covariates))
