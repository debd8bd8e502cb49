"""Experiment configuration: one keyword-only :class:`RouterConfig`, validated eagerly.

The constructor is flat (the public contract, also the shape of the TOML ``[router]`` table);
inside, a config is composed of frozen, typed sub-configs that code can take one at a time:
``config.metrics`` (:class:`MetricSpec` by name), ``config.plan`` (:class:`ExperimentPlan`),
``config.guardrail_config`` (:class:`GuardrailConfig`), ``config.bandit_config``
(:class:`BanditConfig`), ``config.store_config`` (:class:`StoreConfig`) and
``config.http_config`` (:class:`HttpConfig`). See :mod:`modelrouter.config.router_config`.
"""

from modelrouter.config.bandit import BanditConfig, BanditPolicy, MissingReward, RewardKind
from modelrouter.config.guardrails import GuardrailConfig, GuardrailSpec
from modelrouter.config.http import HttpConfig
from modelrouter.config.metrics import AUTOMATIC_METRICS, Aggregate, MetricKind, MetricSpec
from modelrouter.config.plan import ExperimentPlan, Spending
from modelrouter.config.router_config import (
    Level,
    MissingUnitPolicy,
    Mode,
    RouterConfig,
    load_toml,
)
from modelrouter.config.store import StoreConfig, StoreScheme

__all__ = [
    "AUTOMATIC_METRICS",
    "Aggregate",
    "BanditConfig",
    "BanditPolicy",
    "ExperimentPlan",
    "GuardrailConfig",
    "GuardrailSpec",
    "HttpConfig",
    "Level",
    "MetricKind",
    "MetricSpec",
    "MissingReward",
    "MissingUnitPolicy",
    "Mode",
    "RewardKind",
    "RouterConfig",
    "Spending",
    "StoreConfig",
    "StoreScheme",
    "load_toml",
]
