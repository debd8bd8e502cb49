"""Experiment configuration: one keyword-only :class:`RouterConfig`, validated eagerly.

Every mistake raises :class:`~modelrouter.exceptions.ConfigError` naming the field path and the
bad value (``metrics.click.kind ('bool') must be one of 'binary', 'continuous'``). A config can
be built in code, from a dict (``RouterConfig.from_dict``), from a TOML file
(``RouterConfig.from_toml``); secrets may come from the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from modelrouter.config.bandit import check_bandit_fields
from modelrouter.config.guardrails import parse_guardrails, parse_segments
from modelrouter.config.metrics import (
    _NAME_CHARS,
    AUTOMATIC_METRICS,
    Aggregate,
    MetricKind,
    MetricSpec,
    _check_name,
    _choice,
    _positive,
)
from modelrouter.config.plan import ExperimentPlan, parse_plan
from modelrouter.config.store import check_store_fields, redact_url
from modelrouter.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "AUTOMATIC_METRICS",
    "Aggregate",
    "Level",
    "MetricKind",
    "MetricSpec",
    "MissingUnitPolicy",
    "Mode",
    "RouterConfig",
]

Level = Literal["user", "session", "request"]
MissingUnitPolicy = Literal["control", "random", "reject"]
Mode = Literal["ab", "bandit"]


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """Everything that defines one experiment. Keyword-only, immutable, validated on creation.

    Unit id sources are tried in order: ``unit_id`` callable, ``unit_header``, ``unit_cookie``,
    ``unit_query``. ``level`` is the split level: ``"user"`` and ``"session"`` hash the unit id
    and analyse per unit; ``"request"`` randomises every request and keeps O(1) state.
    ``missing_unit`` decides what happens to a request without a unit id: ``"control"`` serves
    the control and does not count it, ``"random"`` randomises it as its own unit (not stored
    per unit), ``"reject"`` answers 400.
    """

    experiment: str = "experiment"
    salt: str | None = None
    weights: Mapping[str, float] | None = None
    control: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    level: Level = "user"
    unit_header: str | None = "x-user-id"
    unit_cookie: str | None = None
    unit_query: str | None = None
    unit_id: Callable[[Mapping[str, Any]], str | None] | None = None
    missing_unit: MissingUnitPolicy = "control"
    max_unit_id_length: int = 256
    paths: Sequence[str] | None = None
    exclude_paths: Sequence[str] = ()
    attribution_window: float = 86_400.0
    max_pending: int = 1_000_000
    mode: Mode = "ab"
    # bandit mode (see modelrouter/bandit_config.py and modelrouter/bandit/router.py)
    reward: str | None = None
    reward_cost: Mapping[str, float] | None = None
    refresh_every: int = 100
    refresh_seconds: float | None = 1.0
    min_share: float = 0.01
    bandit_policy: str = "thompson"
    prior: Mapping[str, float] | None = None
    sticky_seconds: float | None = None
    sticky_max_units: int = 100_000
    missing_reward: str = "zero"
    holdout: float = 0.0
    secret: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    http_prefix: str = "/_modelrouter"
    metrics_public: bool = False
    max_seen_feedback: int = 100_000
    # scale-out and durability (see modelrouter/store_options.py)
    store: str = "memory"
    snapshot_path: str | None = None
    snapshot_seconds: float | None = None
    flush_seconds: float = 0.1
    flush_events: int = 10_000
    max_buffer: int = 1_000_000
    # segments, guardrails, rollback (see modelrouter/guardrail_config.py)
    primary: str | None = None
    segments: Mapping[str, str | None] = field(default_factory=dict)
    segment_fn: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None
    segment_cap: int = 50
    min_segment_units: int = 100
    guardrails: Mapping[str, Any] | None = None
    guardrail_alpha: float = 0.05
    rollback: bool = False
    guardrail_check_every: int = 1000
    # statistical plan of the primary metric's sequential test (see modelrouter/plan.py)
    plan: ExperimentPlan | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_name("experiment", self.experiment)
        if self.salt is None:
            object.__setattr__(self, "salt", self.experiment)
        if not isinstance(self.salt, str):
            raise ConfigError(f"salt ({self.salt!r}) must be a string")
        _choice("level", self.level, get_args(Level))
        _choice("missing_unit", self.missing_unit, get_args(MissingUnitPolicy))
        _choice("mode", self.mode, get_args(Mode))
        _positive("max_unit_id_length", self.max_unit_id_length, integer=True)
        _positive("attribution_window", self.attribution_window)
        _positive("max_pending", self.max_pending, integer=True)
        check_store_fields(self)
        for name in ("unit_header", "unit_cookie", "unit_query"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} ({value!r}) must be a non-empty string or None")
        if self.unit_header is not None:
            object.__setattr__(self, "unit_header", self.unit_header.lower())
        if self.unit_id is not None and not callable(self.unit_id):
            raise ConfigError(f"unit_id ({self.unit_id!r}) must be a callable taking the scope")
        if self.level != "request" and not (self.unit_id or self.unit_header or self.unit_cookie
                                            or self.unit_query):
            raise ConfigError(f"level ({self.level!r}) needs a unit id source: unit_header, "
                              "unit_cookie, unit_query or unit_id")
        for name in ("paths", "exclude_paths"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(p, str) and p.startswith("/")
                                                 for p in value):
                raise ConfigError(f"{name} ({value!r}) must be a list of path prefixes "
                                  "starting with '/'")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "metrics", self._parse_metrics(self.metrics))
        self._check_http()
        if self.weights is not None:
            object.__setattr__(self, "weights", self.check_weights(self.weights))
        self._check_guardrail_fields()
        self._check_plan()
        check_bandit_fields(self)

    def _check_plan(self) -> None:
        plan = parse_plan(self.plan)
        object.__setattr__(self, "plan", plan)
        spec = self.metrics.get(self.primary) if self.primary is not None else None
        if plan is None or spec is None:
            return
        conversion = spec.aggregate == "any"  # planned as a difference of two proportions
        if conversion and plan.sd is not None:
            raise ConfigError(f"plan.sd ({plan.sd!r}) is for means; primary {self.primary!r} "
                              "is a conversion: give plan.baseline (its rate) instead")
        if not conversion and plan.baseline is not None:
            raise ConfigError(f"plan.baseline ({plan.baseline!r}) is a conversion rate; primary "
                              f"{self.primary!r} is a mean: give plan.sd (per unit) instead")
        if spec.kind == "binary" and plan.mde is not None and plan.mde >= 1:
            raise ConfigError(f"plan.mde ({plan.mde!r}) must be < 1 for the binary primary "
                              f"metric {self.primary!r} (it is an absolute difference of rates)")

    def _check_guardrail_fields(self) -> None:
        if self.primary is not None and self.primary not in self.metrics:
            raise ConfigError(f"primary ({self.primary!r}) is not a declared metric; declared "
                              f"metrics are {sorted(self.metrics)}")
        object.__setattr__(self, "segments", parse_segments(self.segments))
        if self.segment_fn is not None and not callable(self.segment_fn):
            raise ConfigError(f"segment_fn ({self.segment_fn!r}) must be a callable taking the "
                              "scope and returning {dimension: value}")
        _positive("segment_cap", self.segment_cap, integer=True)
        if self.segment_cap < 2:
            raise ConfigError(f"segment_cap ({self.segment_cap!r}) must be >= 2 (one value is "
                              "reserved for 'other')")
        _positive("min_segment_units", self.min_segment_units, integer=True)
        _positive("guardrail_check_every", self.guardrail_check_every, integer=True)
        _positive("guardrail_alpha", self.guardrail_alpha)
        if not self.guardrail_alpha < 1:
            raise ConfigError(f"guardrail_alpha ({self.guardrail_alpha!r}) must be in (0, 1)")
        if not isinstance(self.rollback, bool):
            raise ConfigError(f"rollback ({self.rollback!r}) must be a bool")
        object.__setattr__(self, "guardrails", parse_guardrails(
            self.guardrails, self.metrics, tuple(self.segments)))

    def _check_http(self) -> None:
        """Resolve the secrets (argument, else environment) and check the HTTP surface."""
        for name, env in (("secret", "MODELROUTER_SECRET"),
                          ("admin_token", "MODELROUTER_ADMIN_TOKEN")):
            value = getattr(self, name)
            if value is None:
                value = os.environ.get(env) or None
                object.__setattr__(self, name, value)
            # the value itself is never repeated in a message: it may be a real secret
            if value is not None and (not isinstance(value, str) or len(value) < 16
                                      or not value.isprintable() or value != value.strip()):
                raise ConfigError(f"{name} (from the argument or ${env}) must be a string of "
                                  "at least 16 printable characters without surrounding spaces")
        p = self.http_prefix
        if (not isinstance(p, str) or not p.startswith("/") or p.endswith("/") or len(p) < 2
                or not set(p[1:]) <= _NAME_CHARS | {"/"}):
            raise ConfigError(f"http_prefix ({p!r}) must start with '/', not end with '/', and "
                              "use letters, digits, '_', '-', '.' and '/'")
        if not isinstance(self.metrics_public, bool):
            raise ConfigError(f"metrics_public ({self.metrics_public!r}) must be a bool")
        _positive("max_seen_feedback", self.max_seen_feedback, integer=True)

    @staticmethod
    def _parse_metrics(metrics: object) -> dict[str, MetricSpec]:
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"metrics ({metrics!r}) must be a mapping of name to spec")
        parsed: dict[str, MetricSpec] = {m.name: m for m in AUTOMATIC_METRICS}
        for name, spec in metrics.items():
            _check_name("metrics", name)
            parsed[name] = MetricSpec.parse(name, spec)
        return parsed

    @staticmethod
    def check_weights(weights: object, variants: Sequence[str] | None = None) -> dict[str, float]:
        """Validate a weights mapping (finite, >= 0, sum 1, known names); return a plain dict."""
        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError(f"weights ({weights!r}) must be a non-empty mapping of variant "
                              "to share")
        out: dict[str, float] = {}
        for name, w in weights.items():
            _check_name("weights", name)
            _positive(f"weights.{name}", w, allow_zero=True)
            out[name] = float(w)
        try:
            total = math.fsum(out.values())
        except OverflowError:  # each share finite, their sum not (1e308 + 1e308)
            total = math.inf
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"weights must sum to 1, got {total!r} from {out!r}")
        if variants is not None:
            unknown = sorted(set(out) - set(variants))
            if unknown:
                raise ConfigError(f"weights.{unknown[0]}: unknown variant {unknown[0]!r}; "
                                  f"variants are {list(variants)!r}")
            missing = sorted(set(variants) - set(out))
            if missing:
                raise ConfigError(f"weights: variant {missing[0]!r} has no weight; give every "
                                  f"variant a weight (0 to pause it)")
        return out

    # -- construction helpers -------------------------------------------------------------
    def replace(self, **changes: Any) -> RouterConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The config as plain data (callables shown by name; secrets never included)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                value = None if value is None else "***"
            elif f.name == "store":
                value = redact_url(value)
            elif f.name == "metrics":
                value = {n: {"kind": m.kind, "aggregate": m.aggregate,
                             "lower_is_better": m.lower_is_better} for n, m in value.items()}
            elif f.name == "plan":
                value = None if value is None else value.to_dict()
            elif f.name == "guardrails":
                value = {n: g.to_dict() for n, g in value.items()}
            elif callable(value):
                value = getattr(value, "__qualname__", repr(value))
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterConfig:
        """Build from plain data (e.g. a parsed TOML ``[router]`` table); unknown keys fail."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config ({data!r}) must be a mapping")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown config field; known fields are "
                              f"{sorted(names)}")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], table: str = "router") -> RouterConfig:
        """Load the ``[router]`` table (or the whole file when it has none) of a TOML file."""
        data = load_toml(path)
        section = data.get(table, data)
        section = {k: v for k, v in section.items() if k != "variants"}
        return cls.from_dict(section)


_SECRET_FIELDS: frozenset[str] = frozenset({"secret", "admin_token"})


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file, turning read and syntax errors into ConfigError."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
