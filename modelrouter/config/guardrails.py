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
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelrouter.exceptions import ConfigError

__all__ = [
    "DEFAULT_GUARDRAILS",
    "GuardrailSpec",
    "Guardrails",
    "guardrail_key",
    "parse_guardrails",
    "parse_segments",
]

Direction = Literal["increase", "decrease"]
_KEYS = frozenset({"max_increase", "max_decrease", "margin", "relative", "segments", "quantile"})
QUANTILE_METRICS = frozenset({"latency_ms"})  # metrics whose per-request histogram is kept
_LABEL = re.compile(r"^(?P<metric>\S+) p(?P<pct>\d+(?:\.\d+)?)$")


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


def _margin(path: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path} ({value!r}) must be a finite number")
    if value <= 0:
        raise ConfigError(f"{path} ({value!r}) must be > 0: the margin is the size of the "
                          "allowed change, its direction is in the key (max_increase / "
                          "max_decrease)")
    return float(value)


def _quantile(path: str, value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{path} ({value!r}) must be a number in (0, 1), e.g. 0.95")
    if name not in QUANTILE_METRICS:
        raise ConfigError(f"{path} ({value!r}): quantile guardrails need the per-request "
                          f"distribution, which the store keeps for {sorted(QUANTILE_METRICS)} "
                          f"only, not for {name!r}")
    return float(value)


def _one(name: str, spec: object, metric: Any, dims: Sequence[str],
         label_quantile: float | None = None, label: str | None = None) -> GuardrailSpec:
    path = f"guardrails.{label or name}"
    if isinstance(spec, GuardrailSpec):
        if spec.metric != name:
            raise ConfigError(f"{path}: GuardrailSpec is for metric {spec.metric!r}")
        spec = spec.to_dict()
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{path} ({spec!r}) must be a mapping such as "
                          "{'max_increase': 0.1, 'relative': True}, or None to remove it")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key; known keys are {sorted(_KEYS)}")
    given = [k for k in ("max_increase", "max_decrease", "margin") if k in spec]
    if len(given) != 1:
        raise ConfigError(f"{path} ({dict(spec)!r}) needs exactly one of 'max_increase', "
                          "'max_decrease', 'margin'")
    key = given[0]
    margin = _margin(f"{path}.{key}", spec[key])
    if key == "margin":
        direction: Direction = "increase" if metric.lower_is_better else "decrease"
    else:
        direction = "increase" if key == "max_increase" else "decrease"
    relative = spec.get("relative", False)
    if not isinstance(relative, bool):
        raise ConfigError(f"{path}.relative ({relative!r}) must be a bool")
    quantile = label_quantile
    if spec.get("quantile") is not None:
        quantile = _quantile(f"{path}.quantile", spec["quantile"], name)
        if label is not None and guardrail_key(name, quantile) != label:
            raise ConfigError(f"{path}.quantile ({spec['quantile']!r}) contradicts the key "
                              f"{label!r}")
    segs = spec.get("segments", ())
    if isinstance(segs, str) or not isinstance(segs, Sequence):
        raise ConfigError(f"{path}.segments ({segs!r}) must be a list of segment dimensions")
    for d in segs:
        if d not in dims:
            raise ConfigError(f"{path}.segments ({d!r}) is not a declared segment dimension; "
                              f"declared dimensions are {list(dims)!r}")
    if quantile is not None and segs:
        raise ConfigError(f"{path}.segments ({list(segs)!r}): quantile guardrails are checked "
                          "overall only (the store keeps one latency histogram per variant)")
    return GuardrailSpec(name, direction, margin, relative, tuple(segs), quantile)


class Guardrails(dict):  # type: ignore[type-arg]
    """The parsed, complete set (defaults already merged): parsing it again merges nothing."""


def parse_guardrails(guardrails: object, metrics: Mapping[str, Any],
                     dims: Sequence[str]) -> Guardrails:
    """Defaults merged with the declared guardrails, validated against metrics and segments."""
    if guardrails is None:
        guardrails = {}
    if not isinstance(guardrails, Mapping):
        raise ConfigError(f"guardrails ({guardrails!r}) must be a mapping of metric to spec")
    out = Guardrails() if isinstance(guardrails, Guardrails) else Guardrails(DEFAULT_GUARDRAILS)
    labelled = []
    for name, spec in guardrails.items():  # metric keys first: "latency_ms": None removes all
        match = _LABEL.match(name) if isinstance(name, str) and name not in metrics else None
        if match is not None:
            labelled.append((name, match, spec))
            continue
        if name not in metrics:
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
    if segments is None:
        return {}
    if not isinstance(segments, Mapping):
        raise ConfigError(f"segments ({segments!r}) must be a mapping of dimension to request "
                          "header, e.g. {'platform': 'x-platform'}")
    out: dict[str, str | None] = {}
    for dim, header in segments.items():
        if not isinstance(dim, str) or not dim or not dim.replace("_", "").isalnum():
            raise ConfigError(f"segments ({dim!r}) must be a dimension name of letters, digits "
                              "and '_'")
        if header is not None and (not isinstance(header, str) or not header.strip()):
            raise ConfigError(f"segments.{dim} ({header!r}) must be a header name, or None "
                              "when segment_fn supplies it")
        out[dim] = None if header is None else header.strip().lower()
    return out
