"""Experiment configuration: one keyword-only :class:`RouterConfig`, validated eagerly."""

from modelrouter.config.metrics import AUTOMATIC_METRICS, Aggregate, MetricKind, MetricSpec
from modelrouter.config.router_config import (
    Level,
    MissingUnitPolicy,
    Mode,
    RouterConfig,
    load_toml,
)

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
