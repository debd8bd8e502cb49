"""Guardrail and segment declarations of a :class:`~modelrouter.config.RouterConfig`.

A guardrail says how much a treatment may worsen a metric before it must not ship::

    guardrails={"latency_ms": {"max_increase": 0.10, "relative": True},   # +10% of control
                "unsubscribe": {"max_increase": 0.002},                  # +0.2 points, absolute
                "revenue": {"max_decrease": 0.5, "segments": ["platform"]},
                "error": None}                                           # remove a default

Exactly one of ``max_increase`` / ``max_decrease`` / ``margin`` gives the margin (a positive
number); ``margin`` takes the direction from the metric's ``lower_is_better`` (lower is better:
it must not increase). Margins are absolute unless ``relative=True`` (a share of the control's
mean). ``segments`` lists segment dimensions in which the guardrail is also checked per value.

``quantile`` (``latency_ms`` only: the store keeps its per-request histogram) tests a quantile
instead of the mean, e.g. ``{"max_increase": 0.1, "relative": True, "quantile": 0.95}``: the
treatment's p95 must not exceed the control's by more than 10%. Quantile guardrails are checked
overall (one histogram per variant), not per segment.

Defaults: ``latency_ms`` mean +10% relative, ``latency_ms`` p95 +10% relative and ``error`` +1
percentage point. The parsed guardrails are keyed by :attr:`GuardrailSpec.key`: the metric for
a mean, ``"latency_ms p95"`` for a quantile. Overriding and removing, order-independent:

- ``{"latency_ms": {...}}`` replaces the guardrail of the same statistic (the mean, or the
  quantile given in the spec); the other latency guardrail keeps its default;
- ``{"latency_ms p95": {...}}`` replaces the p95 guardrail (``quantile`` may be omitted);
- ``{"latency_ms p95": None}`` removes only the p95 guardrail;
- ``{"latency_ms": None}`` removes every guardrail on ``latency_ms`` (mean and quantiles);
  add ``"latency_ms p95": {...}`` beside it to keep only the p95 one.

``None`` may be written ``False`` (TOML has no null).

:class:`GuardrailConfig` groups what the experiment is judged on - ``primary``, segments,
guardrails, their test level and the rollback - into one frozen value, so the analysis and the
middleware's segment reader can take it instead of the whole config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modelrouter.config._checks import (
    check_bool,
    check_callable,
    check_integer,
    check_keys,
    check_list,
    check_mapping,
    check_number,
    check_open_unit,
    check_optional,
    check_positive_int,
    check_text,
    choices,
    invalid,
)
from modelrouter.config.base import SubConfig
from modelrouter.config.limits import MAX_SEGMENT_CAP
from modelrouter.config.metrics import MetricSpec, parse_metrics
from modelrouter.exceptions import ConfigError

__all__ = [
    "DEFAULT_GUARDRAILS",
    "Direction",
    "GuardrailConfig",
    "GuardrailSpec",
    "Guardrails",
    "MarginKey",
    "guardrail_key",
    "parse_guardrails",
    "parse_segments",
]

Direction = Literal["increase", "decrease"]
MarginKey = Literal["max_increase", "max_decrease", "margin"]  # exactly one per guardrail
_KEYS = frozenset({*choices(MarginKey), "relative", "segments", "quantile"})
QUANTILE_METRICS = frozenset({"latency_ms"})  # metrics whose per-request histogram is kept
_LABEL = re.compile(r"^(?P<metric>\S+) p(?P<pct>\d+(?:\.\d+)?)$")
_MARGIN_WHY = ("the margin is the size of the allowed change, its direction is in the key "
               "(max_increase / max_decrease)")


def guardrail_key(metric: str, quantile: float | None = None) -> str:
    """``"latency_ms"`` for a mean guardrail, ``"latency_ms p95"`` for a quantile one."""
    return metric if quantile is None else f"{metric} p{quantile * 100:g}"


@dataclass(frozen=True)
class GuardrailSpec:
    """``metric`` must not move in ``direction`` by more than ``margin`` (absolute or relative)."""

    metric: str
    direction: Direction
    margin: float
    relative: bool = False
    segments: tuple[str, ...] = ()
    quantile: float | None = None  # None: the mean; 0.95: the 95th percentile

    @property
    def key(self) -> str:
        """Its key among the guardrails and its display name: ``latency_ms p95``."""
        return guardrail_key(self.metric, self.quantile)

    def __repr__(self) -> str:
        sign = "+" if self.direction == "increase" else "-"
        amount = f"{self.margin:.4g}" + (" relative" if self.relative else "")
        where = f", segments={list(self.segments)}" if self.segments else ""
        return f"GuardrailSpec({self.key} at most {sign}{amount}{where})"

    def describe(self) -> str:
        """Plain words: ``latency_ms must not increase by more than 10% of control``."""
        stat = "mean" if self.quantile is None else f"p{self.quantile * 100:g}"
        amount = (f"{self.margin * 100:.4g}% of the control's {stat}" if self.relative
                  else f"{self.margin:.4g} (absolute)")
        return f"{self.key} must not {self.direction} by more than {amount}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, in the config's own shorthand."""
        out: dict[str, Any] = {f"max_{self.direction}": self.margin, "relative": self.relative}
        if self.segments:
            out["segments"] = list(self.segments)
        if self.quantile is not None:
            out["quantile"] = self.quantile
        return out


DEFAULT_GUARDRAILS: dict[str, GuardrailSpec] = {
    "latency_ms": GuardrailSpec("latency_ms", "increase", 0.10, relative=True),
    "latency_ms p95": GuardrailSpec("latency_ms", "increase", 0.10, relative=True,
                                    quantile=0.95),
    "error": GuardrailSpec("error", "increase", 0.01),
}


def _quantile(path: str, value: object, name: str) -> float:
    q = check_number(path, value, low=0, high=1, low_open=True, high_open=True,
                     expected="a number in (0, 1), e.g. 0.95")
    if name not in QUANTILE_METRICS:
        raise ConfigError(f"{path} ({value!r}): quantile guardrails need the per-request "
                          f"distribution, which the store keeps for {sorted(QUANTILE_METRICS)} "
                          f"only, not for {name!r}")
    return q


def _one(name: str, spec: object, metric: MetricSpec, dims: Sequence[str],
         label_quantile: float | None = None, label: str | None = None) -> GuardrailSpec:
    path = f"guardrails.{label or name}"
    if isinstance(spec, GuardrailSpec):
        if spec.metric != name:
            raise ConfigError(f"{path}: GuardrailSpec is for metric {spec.metric!r}")
        spec = spec.to_dict()
    spec = check_mapping(path, spec, expected="a mapping such as {'max_increase': 0.1, "
                         "'relative': True}, or None to remove it")
    check_keys(path, spec, _KEYS, what="key")
    given = [k for k in choices(MarginKey) if k in spec]
    if len(given) != 1:
        raise ConfigError(f"{path} ({dict(spec)!r}) needs exactly one of "
                          f"{', '.join(map(repr, choices(MarginKey)))}")
    key = given[0]
    margin = check_number(f"{path}.{key}", spec[key], low=0, low_open=True, why=_MARGIN_WHY)
    if key == "margin":
        direction: Direction = "increase" if metric.lower_is_better else "decrease"
    else:
        direction = "increase" if key == "max_increase" else "decrease"
    relative = check_bool(f"{path}.relative", spec.get("relative", False))
    quantile = label_quantile
    if spec.get("quantile") is not None:
        quantile = _quantile(f"{path}.quantile", spec["quantile"], name)
        if label is not None and guardrail_key(name, quantile) != label:
            raise ConfigError(f"{path}.quantile ({spec['quantile']!r}) contradicts the key "
                              f"{label!r}")
    segs = check_list(f"{path}.segments", spec.get("segments", ()),
                      expected="a list of segment dimensions")
    for d in segs:
        if d not in dims:
            raise ConfigError(f"{path}.segments ({d!r}) is not a declared segment dimension; "
                              f"declared dimensions are {list(dims)!r}")
    if quantile is not None and segs:
        raise ConfigError(f"{path}.segments ({list(segs)!r}): quantile guardrails are checked "
                          "overall only (the store keeps one latency histogram per variant)")
    return GuardrailSpec(name, direction, margin, relative, tuple(map(str, segs)), quantile)


class Guardrails(dict[str, GuardrailSpec]):
    """The parsed, complete set (defaults already merged): parsing it again merges nothing."""

    @classmethod
    def defaults(cls) -> Guardrails:
        """The default guardrails, as a parsed set."""
        return cls(DEFAULT_GUARDRAILS)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`parse_guardrails` turns back into this set: each guardrail in
        the shorthand, and ``False`` for a removed default (else parsing would restore it)."""
        out: dict[str, Any] = {key: g.to_dict() for key, g in self.items()}
        out.update({key: False for key in DEFAULT_GUARDRAILS if key not in self})
        return out


def parse_guardrails(guardrails: object, metrics: Mapping[str, MetricSpec],
                     dims: Sequence[str]) -> Guardrails:
    """Defaults merged with the declared guardrails, validated against metrics and segments."""
    declared = check_mapping("guardrails", {} if guardrails is None else guardrails,
                             expected="a mapping of metric to spec")
    out = Guardrails() if isinstance(declared, Guardrails) else Guardrails.defaults()
    labelled: list[tuple[str, re.Match[str], object]] = []
    for name, spec in declared.items():  # metric keys first: "latency_ms": None removes all
        match = _LABEL.match(name) if isinstance(name, str) and name not in metrics else None
        if match is not None:
            labelled.append((match.string, match, spec))
            continue
        if not isinstance(name, str) or name not in metrics:
            raise ConfigError(f"guardrails.{name}: metric ({name!r}) is not declared; declared "
                              f"metrics are {sorted(metrics)}")
        if spec is None or spec is False:
            for key in [k for k, g in out.items() if g.metric == name]:
                del out[key]
            continue
        g = _one(name, spec, metrics[name], dims)
        out[g.key] = g
    for key, match, spec in labelled:  # then "latency_ms p95": one quantile guardrail
        name = match["metric"]
        if name not in metrics:
            raise ConfigError(f"guardrails.{key}: metric ({name!r}) is not declared; declared "
                              f"metrics are {sorted(metrics)}")
        q = _quantile(f"guardrails.{key}", float(match["pct"]) / 100.0, name)
        if guardrail_key(name, q) != key:
            raise ConfigError(f"guardrails.{key}: write the key as {guardrail_key(name, q)!r}")
        if spec is None or spec is False:
            out.pop(key, None)
            continue
        out[key] = _one(name, spec, metrics[name], dims, q, key)
    return out


def parse_segments(segments: object) -> dict[str, str | None]:
    """Validate ``segments`` (dimension -> request header, or None: from ``segment_fn`` only)."""
    declared = check_mapping("segments", {} if segments is None else segments,
                             expected="a mapping of dimension to request header, e.g. "
                             "{'platform': 'x-platform'}")
    out: dict[str, str | None] = {}
    for dim, header in declared.items():
        if not isinstance(dim, str) or not dim or not dim.replace("_", "").isalnum():
            raise invalid("segments", dim, "a dimension name of letters, digits and '_'")
        if header is not None:
            header = check_text(f"segments.{dim}", header, expected="a header name, or None "
                                "when segment_fn supplies it").strip().lower()
        out[dim] = header
    return out


@dataclass(frozen=True, kw_only=True, repr=False)
class GuardrailConfig(SubConfig):
    """What the experiment is judged on: the ``primary`` metric, the ``guardrails`` (parsed,
    defaults merged), the ``segments`` they may be checked in, and what happens on a failure.

    ``metrics`` are the config's declared metrics, which ``primary`` and the guardrails refer
    to. ``segments`` maps a dimension to its request header (None: from ``segment_fn``);
    at most ``segment_cap`` values are kept per dimension (one is ``"other"``) and a segment
    needs ``min_segment_units`` units to be analysed. Guardrails are tested at level
    ``guardrail_alpha`` every ``guardrail_check_every`` feedback events; with ``rollback`` a
    failing one sends all traffic to the control. Mappings and shorthand are accepted, as by
    :class:`~modelrouter.config.RouterConfig`, and normalised.
    """

    metrics: Mapping[str, MetricSpec] = field(default_factory=dict)
    primary: str | None = None
    segments: Mapping[str, str | None] = field(default_factory=dict)
    segment_fn: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None
    segment_cap: int = 50
    min_segment_units: int = 100
    guardrails: Mapping[str, GuardrailSpec] = field(default_factory=Guardrails.defaults)
    guardrail_alpha: float = 0.05
    rollback: bool = False
    guardrail_check_every: int = 1000

    def __post_init__(self) -> None:
        metrics = parse_metrics(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        if self.primary is not None and self.primary not in metrics:
            raise ConfigError(f"primary ({self.primary!r}) is not a declared metric; declared "
                              f"metrics are {sorted(metrics)}")
        object.__setattr__(self, "segments", parse_segments(self.segments))
        check_optional(check_callable, "segment_fn", self.segment_fn,
                       expected="a callable taking the scope and returning {dimension: value}")
        check_integer("segment_cap", self.segment_cap, low=2,
                      why="one value is reserved for 'other'")
        check_integer("segment_cap", self.segment_cap, high=MAX_SEGMENT_CAP,
                      why="segment values are stored as 16-bit codes")
        check_positive_int("min_segment_units", self.min_segment_units)
        check_positive_int("guardrail_check_every", self.guardrail_check_every)
        check_open_unit("guardrail_alpha", self.guardrail_alpha)
        check_bool("rollback", self.rollback)
        object.__setattr__(self, "guardrails", parse_guardrails(
            self.guardrails, metrics, tuple(self.segments)))
