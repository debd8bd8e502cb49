"""Metric declarations: :class:`MetricSpec`, the automatic metrics, and the shared validators
that name the field and the bad value in every :class:`~modelrouter.exceptions.ConfigError`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from modelrouter.exceptions import ConfigError

__all__ = ["AUTOMATIC_METRICS", "Aggregate", "MetricKind", "MetricSpec"]

MetricKind = Literal["binary", "continuous"]
Aggregate = Literal["any", "sum", "mean"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _choice(path: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{path} ({value!r}) must be one of {options}")


def _check_name(path: str, name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise ConfigError(f"{path} ({name!r}) must be a non-empty name of at most 64 characters "
                          "from letters, digits, '_', '-' and '.'")
    return name


def _positive(path: str, value: object, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{path} ({value!r}) must be {kind}")
    assert isinstance(value, (int, float))
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{path} ({value!r}) must be {'>= 0' if allow_zero else '> 0'}")


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

    def __post_init__(self) -> None:
        _check_name("metrics", self.name)
        path = f"metrics.{self.name}"
        _choice(f"{path}.kind", self.kind, get_args(MetricKind))
        if self.aggregate is None:
            object.__setattr__(self, "aggregate", "any" if self.kind == "binary" else "sum")
        _choice(f"{path}.aggregate", self.aggregate, get_args(Aggregate))
        if self.aggregate == "any" and self.kind != "binary":
            raise ConfigError(f"{path}.aggregate ('any') needs kind 'binary', got {self.kind!r}")
        if not isinstance(self.lower_is_better, bool):
            raise ConfigError(f"{path}.lower_is_better ({self.lower_is_better!r}) must be a bool")

    @property
    def is_ratio(self) -> bool:
        """True when analysed per event (sum / count per unit, delta method)."""
        return self.aggregate == "mean"

    @classmethod
    def parse(cls, name: str, spec: object) -> MetricSpec:
        """Build from the shorthand ``"binary"`` / ``"continuous"`` or a mapping of fields."""
        if isinstance(spec, MetricSpec):
            if spec.name != name:
                raise ConfigError(f"metrics.{name}: MetricSpec is named {spec.name!r}")
            return spec
        if isinstance(spec, str):
            return cls(name=name, kind=spec)  # type: ignore[arg-type]
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"kind", "aggregate", "lower_is_better"}
            if unknown:
                raise ConfigError(f"metrics.{name}: unknown field(s) {sorted(unknown)}")
            return cls(name=name, **spec)
        raise ConfigError(f"metrics.{name} ({spec!r}) must be 'binary', 'continuous' or a mapping")


AUTOMATIC_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("latency_ms", "continuous", "mean", lower_is_better=True),
    MetricSpec("error", "binary", "mean", lower_is_better=True),
)
