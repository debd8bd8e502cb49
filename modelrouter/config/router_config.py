"""Experiment configuration: one keyword-only :class:`RouterConfig`, validated eagerly.

Every mistake raises :class:`~modelrouter.exceptions.ConfigError` naming the field path and the
bad value (``metrics.click.kind ('bool') must be one of 'binary', 'continuous'``). A config can
be built in code, from a dict (``RouterConfig.from_dict``), from a TOML file
(``RouterConfig.from_toml``); secrets may come from the environment.

Flat outside, composed inside. The constructor stays flat -
``RouterConfig(reward="click", refresh_every=50, store="redis://...", secret=...)`` - because
it is the public contract: user code, ``from_dict`` and the TOML ``[router]`` table all use
these names, and a nested form would break every one of them for no gain to the user. Inside,
the fields are grouped into frozen, typed sub-configs, each validating its own fields:

- ``config.metrics``: the parsed ``dict[str, MetricSpec]`` (:mod:`~modelrouter.config.metrics`)
- ``config.plan``: an :class:`~modelrouter.config.plan.ExperimentPlan` or None
- ``config.guardrail_config``: :class:`~modelrouter.config.guardrails.GuardrailConfig`
- ``config.bandit_config``: :class:`~modelrouter.config.bandit.BanditConfig`
- ``config.store_config``: :class:`~modelrouter.config.store.StoreConfig`
- ``config.http_config``: :class:`~modelrouter.config.http.HttpConfig`
- ``config.shadow_config``: :class:`~modelrouter.config.shadow.ShadowConfig`
- ``config.covariate_config``: :class:`~modelrouter.config.request_covariates.CovariateConfig`
- ``config.rollout``: a :class:`~modelrouter.config.rollout.Rollout` or None (the stages of
  each shadow candidate; see modelrouter/config/rollout.py)

``__post_init__`` builds each sub-config from the flat fields of the same names (so a bad value
raises here, with the sub-config's message) and writes the normalised values back to the flat
fields; the sub-configs are built once and cached, so code that needs only the bandit settings
can take a ``BanditConfig`` instead of the whole ``RouterConfig``. What belongs to no group
(experiment name, salt, weights, unit ids, paths, mode) and the checks across groups (``mode``
needs a ``reward``, the plan fits the ``primary``) stay here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from modelrouter.config._checks import (
    check_callable,
    check_choice,
    check_keys,
    check_mapping,
    check_mapping_of,
    check_name,
    check_number,
    check_optional,
    check_path_prefixes,
    check_positive_int,
    check_text,
    invalid,
)
from modelrouter.config.bandit import BanditConfig, BanditPolicy, MissingReward
from modelrouter.config.base import SECRET, SHOW, SubConfig, config_dict, config_repr
from modelrouter.config.guardrails import GuardrailConfig
from modelrouter.config.http import HttpConfig
from modelrouter.config.limits import MAX_TOKEN_CHARS, MAX_VARIANTS, max_token_unit_id_length
from modelrouter.config.metrics import (
    AUTOMATIC_METRICS,
    Aggregate,
    MetricKind,
    MetricSpec,
    parse_metrics,
)
from modelrouter.config.plan import ExperimentPlan, parse_plan
from modelrouter.config.request_covariates import CovariateConfig
from modelrouter.config.rollout import Rollout
from modelrouter.config.shadow import ShadowConfig, ShadowKind
from modelrouter.config.store import StoreConfig, redact_url
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
    "load_toml",
]

Level = Literal["user", "session", "request"]
MissingUnitPolicy = Literal["control", "random", "reject"]
Mode = Literal["ab", "bandit"]
_UNIT_SOURCES = ("unit_header", "unit_cookie", "unit_query")


@dataclass(frozen=True, kw_only=True, repr=False)
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
    # bandit mode (BanditConfig, see modelrouter/config/bandit.py and routing/bandit.py)
    reward: str | None = None
    reward_cost: Mapping[str, float] | None = None
    refresh_every: int = 100
    refresh_seconds: float | None = 1.0
    min_share: float = 0.01
    bandit_policy: BanditPolicy = "thompson"
    prior: Mapping[str, float] | None = None
    sticky_seconds: float | None = None
    sticky_max_units: int = 100_000
    missing_reward: MissingReward = "zero"
    holdout: float = 0.0
    # HTTP surface (HttpConfig, see modelrouter/config/http.py)
    secret: str | None = field(default=None, repr=False, metadata=SECRET)
    admin_token: str | None = field(default=None, repr=False, metadata=SECRET)
    http_prefix: str = "/_modelrouter"
    metrics_public: bool = False
    max_seen_feedback: int = 100_000
    cors_origins: Sequence[str] = ()
    # scale-out and durability (StoreConfig, with attribution_window and max_pending; see
    # modelrouter/config/store.py)
    store: str = field(default="memory", metadata={SHOW: redact_url})
    snapshot_path: str | None = None
    snapshot_seconds: float | None = None
    flush_seconds: float = 0.1
    flush_events: int = 10_000
    max_buffer: int = 1_000_000
    # primary, segments, guardrails, rollback (GuardrailConfig, modelrouter/config/guardrails.py)
    primary: str | None = None
    segments: Mapping[str, str | None] = field(default_factory=dict)
    segment_fn: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None
    segment_cap: int = 50
    min_segment_units: int = 100
    # covariates read from the request at a unit's first exposure (CovariateConfig, see
    # modelrouter/config/request_covariates.py)
    covariate_headers: Mapping[str, str] = field(default_factory=dict)
    covariate_fn: Callable[[Mapping[str, Any]], Mapping[str, object]] | None = None
    guardrails: Mapping[str, Any] | None = None
    guardrail_alpha: float = 0.05
    rollback: bool = False
    guardrail_check_every: int = 1000
    # statistical plan of the primary metric's sequential test (modelrouter/config/plan.py)
    plan: ExperimentPlan | Mapping[str, Any] | None = None
    # shadow evaluation (ShadowConfig, see modelrouter/config/shadow.py)
    shadow_share: float = 1.0
    shadow_timeout: float = 5.0
    shadow_queue: int = 1000
    shadow_workers: int = 2
    shadow_kind: ShadowKind = "label"
    shadow_max_decisions: int = 100_000
    # the automatic rollout of shadow candidates (modelrouter/config/rollout.py)
    rollout: Rollout | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_name("experiment", self.experiment)
        if self.salt is None:
            object.__setattr__(self, "salt", self.experiment)
        check_text("salt", self.salt, expected="a string", allow_empty=True)
        check_choice("level", self.level, Level)
        check_choice("missing_unit", self.missing_unit, MissingUnitPolicy)
        check_choice("mode", self.mode, Mode)
        check_positive_int("max_unit_id_length", self.max_unit_id_length)
        self._check_units()
        object.__setattr__(self, "metrics", parse_metrics(self.metrics))
        self._adopt(self.covariate_config)
        self.covariate_config.check_level(self.level)
        self._adopt(self.store_config)
        self._adopt(self.http_config)
        if self.weights is not None:
            object.__setattr__(self, "weights", self.check_weights(self.weights))
        self._adopt(self.guardrail_config)
        plan = parse_plan(self.plan)
        object.__setattr__(self, "plan", plan)
        if plan is not None and self.primary is not None:
            plan.check_primary(self.primary, self.metrics[self.primary])
        self._adopt(self.bandit_config)
        self._adopt(self.shadow_config)
        rollout = Rollout.parse_shape(self.rollout)
        object.__setattr__(self, "rollout", rollout)
        reads = [] if rollout is None else rollout.reads_primary()
        if reads and (self.primary is None or plan is None):
            raise ConfigError(f"rollout.{reads[0]}.advance_if reads the primary metric: set "
                              "primary= and plan= (the always-valid test's alpha and scale)")
        if self.mode == "bandit" and self.reward is None:
            raise ConfigError("reward (None) must name a declared metric when mode is 'bandit'")
        self._check_token_room()

    def _check_token_room(self) -> None:
        """With a secret, a decision token (it carries the unit id) must fit the length
        tokens are verified at (see config/limits.py); ``Experiment`` checks again with the
        variant names."""
        if self.secret is None:
            return
        limit = max_token_unit_id_length(self.experiment)
        if self.max_unit_id_length > limit:
            raise invalid("max_unit_id_length", self.max_unit_id_length,
                          f"<= {limit} with a secret: a decision token carries the unit id "
                          f"(up to 4 UTF-8 bytes a character) and is verified up to "
                          f"{MAX_TOKEN_CHARS} characters")

    def _check_units(self) -> None:
        """Where a unit id comes from, and which paths are routed."""
        for name in _UNIT_SOURCES:
            check_optional(check_text, name, getattr(self, name))
        if self.unit_header is not None:
            object.__setattr__(self, "unit_header", self.unit_header.lower())
        check_optional(check_callable, "unit_id", self.unit_id,
                       expected="a callable taking the scope")
        if self.level != "request" and not (self.unit_id or self.unit_header or self.unit_cookie
                                            or self.unit_query):
            raise ConfigError(f"level ({self.level!r}) needs a unit id source: unit_header, "
                              "unit_cookie, unit_query or unit_id")
        object.__setattr__(self, "paths", check_optional(check_path_prefixes, "paths",
                                                         self.paths))
        object.__setattr__(self, "exclude_paths",
                           check_path_prefixes("exclude_paths", self.exclude_paths))

    def _adopt(self, section: SubConfig) -> None:
        """Take the normalised values of a sub-config built from our flat fields (resolved
        secrets, parsed guardrails, float costs), so flat field and sub-config agree."""
        for f in dataclasses.fields(section):
            if f.name != "metrics":  # parsed above; the sub-configs hold equal copies
                object.__setattr__(self, f.name, getattr(section, f.name))

    # -- the sub-configs (built once, by __post_init__, from the flat fields) ----------------
    @cached_property
    def store_config(self) -> StoreConfig:
        """``store``, ``snapshot_*``, ``flush_*``, ``max_buffer``, ``max_pending`` and
        ``attribution_window``."""
        return StoreConfig.from_config(self)

    @cached_property
    def http_config(self) -> HttpConfig:
        """``secret``, ``admin_token``, ``http_prefix``, ``metrics_public``,
        ``max_seen_feedback`` and ``cors_origins``."""
        return HttpConfig.from_config(self)

    @cached_property
    def guardrail_config(self) -> GuardrailConfig:
        """``primary``, ``segments``, ``segment_fn``, ``segment_cap``, ``min_segment_units``,
        ``guardrails``, ``guardrail_alpha``, ``rollback``, ``guardrail_check_every`` (and the
        metrics they refer to)."""
        return GuardrailConfig.from_config(self)

    @cached_property
    def bandit_config(self) -> BanditConfig:
        """``reward``, ``reward_cost``, ``refresh_*``, ``min_share``, ``bandit_policy``,
        ``prior``, ``sticky_*``, ``missing_reward``, ``holdout`` (and the metrics)."""
        return BanditConfig.from_config(self)

    @cached_property
    def covariate_config(self) -> CovariateConfig:
        """``covariate_headers`` and ``covariate_fn``: covariates read from the request at a
        unit's first exposure (and the metrics declaring them)."""
        return CovariateConfig.from_config(self)

    @cached_property
    def shadow_config(self) -> ShadowConfig:
        """``shadow_share``, ``shadow_timeout``, ``shadow_queue``, ``shadow_workers``,
        ``shadow_kind`` and ``shadow_max_decisions``."""
        return ShadowConfig.from_config(self)

    @staticmethod
    def check_weights(weights: object, variants: Sequence[str] | None = None) -> dict[str, float]:
        """Validate a weights mapping (finite, >= 0, sum 1, known names); return a plain dict."""
        out = check_mapping_of("weights", weights, check_number, low=0, non_empty=True,
                               expected="a non-empty mapping of variant to share")
        if len(out) > MAX_VARIANTS:
            raise ConfigError(f"weights: {len(out)} variants; at most {MAX_VARIANTS} (a unit's "
                              "variant is stored as a signed byte)")
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
        return config_dict(self)

    def __repr__(self) -> str:
        """The fields that differ from the defaults (secrets hidden, store URL redacted)."""
        return config_repr(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterConfig:
        """Build from plain data (e.g. a parsed TOML ``[router]`` table); unknown keys fail."""
        check_keys("", check_mapping("config", data, expected="a mapping"), _FIELDS,
                   what="config field")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], table: str = "router") -> RouterConfig:
        """Load the ``[router]`` table (or the whole file when it has none) of a TOML file."""
        data = load_toml(path)
        section = data.get(table, data)
        section = {k: v for k, v in section.items() if k != "variants"}
        return cls.from_dict(section)


_FIELDS = frozenset(f.name for f in dataclasses.fields(RouterConfig))


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
