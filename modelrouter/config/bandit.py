"""Validation of the bandit fields of :class:`~modelrouter.config.RouterConfig`.

Kept apart from ``config.py`` so the bandit options live next to the bandit. The number of arms
is not known here (variants are given to the router, not the config), so the floor is checked
against two arms here and against the real count when the router is built
(``min_share x arms <= 1``).

The reward of a decision (what the posterior learns from) is
``reward value - sum(cost * value of cost metric)`` over ``reward_cost``; see
:mod:`modelrouter.store.decisions` for when each part is taken into account.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

from modelrouter.exceptions import ConfigError

__all__ = ["BANDIT_POLICIES", "MissingReward", "check_bandit_fields", "reward_kind"]

MissingReward = Literal["zero", "omit"]
BANDIT_POLICIES = ("thompson", "thompson-per-request", "top-two")
# prior keys per posterior kind, and whether the value must be > 0
_PRIOR_KEYS: dict[str, dict[str, bool]] = {
    "binary": {"alpha0": True, "beta0": True},
    "continuous": {"mu0": False, "kappa0": True, "alpha0": True, "beta0": True, "shift": False},
}


def _number(path: str, value: object, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):  # type: ignore[arg-type]
        raise ConfigError(f"{path} ({value!r}) must be {'an integer' if integer else 'a number'}")
    v = float(value)  # type: ignore[arg-type]
    if (low is not None and (v < low or (low_open and v == low))) or (
            high is not None and (v > high or (high_open and v == high))):
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}, "
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ConfigError(f"{path} ({value!r}) must lie in {lo or '(-inf, '}{hi or 'inf)'}")
    return v


def reward_kind(config: Any) -> str:
    """``"binary"`` (Beta-Bernoulli) for a binary reward without costs, else ``"continuous"``
    (Normal-Inverse-Gamma): a cost, or counting conversions (``aggregate="sum"``), makes the
    reward of a binary metric continuous."""
    spec = config.metrics[config.reward]
    binary = spec.kind == "binary" and spec.aggregate != "sum" and not config.reward_cost
    return "binary" if binary else "continuous"


def check_bandit_fields(config: Any) -> None:
    """Validate ``reward``, ``reward_cost``, ``refresh_*``, ``min_share``, ``bandit_policy``,
    ``prior``, ``sticky_*``, ``missing_reward`` and ``holdout``; normalise mappings."""
    c = config
    metrics = c.metrics
    if c.reward is not None:
        if not isinstance(c.reward, str) or c.reward not in metrics:
            declared = sorted(m for m in metrics if m not in ("latency_ms", "error"))
            raise ConfigError(f"reward ({c.reward!r}) is not a declared metric; declared "
                              f"metrics are {declared}")
        if c.reward in ("latency_ms", "error") or metrics[c.reward].lower_is_better:
            raise ConfigError(f"reward ({c.reward!r}) must be a metric where higher is better "
                              "(the bandit maximises it); charge latency or errors through "
                              "reward_cost instead")
    elif c.mode == "bandit":
        raise ConfigError("reward (None) must name a declared metric when mode is 'bandit'")
    if c.reward_cost is not None:
        if not isinstance(c.reward_cost, Mapping):
            raise ConfigError(f"reward_cost ({c.reward_cost!r}) must map metric names to costs")
        if c.reward is None:
            raise ConfigError(f"reward_cost ({dict(c.reward_cost)!r}) needs reward= as well")
        for name, cost in c.reward_cost.items():
            if name not in metrics or name == c.reward:
                raise ConfigError(f"reward_cost.{name}: ({name!r}) must be a declared metric "
                                  f"other than the reward; declared metrics are "
                                  f"{sorted(metrics)}")
            _number(f"reward_cost.{name}", cost)
        object.__setattr__(c, "reward_cost", {k: float(v) for k, v in c.reward_cost.items()}
                           or None)
    _number("refresh_every", c.refresh_every, low=1, integer=True)
    if c.refresh_seconds is not None:
        _number("refresh_seconds", c.refresh_seconds, low=0, low_open=True)
    _number("min_share", c.min_share, low=0, high=0.5)
    if c.bandit_policy not in BANDIT_POLICIES:
        raise ConfigError(f"bandit_policy ({c.bandit_policy!r}) must be one of "
                          f"{', '.join(map(repr, BANDIT_POLICIES))}")
    if c.missing_reward not in get_args(MissingReward):
        raise ConfigError(f"missing_reward ({c.missing_reward!r}) must be one of 'zero', 'omit'")
    _number("holdout", c.holdout, low=0, high=1, high_open=True)
    if c.sticky_seconds is not None:
        _number("sticky_seconds", c.sticky_seconds, low=0, low_open=True)
    _number("sticky_max_units", c.sticky_max_units, low=1, integer=True)
    _check_prior(c)


def _check_prior(c: Any) -> None:
    if c.prior is None:
        return
    if not isinstance(c.prior, Mapping):
        raise ConfigError(f"prior ({c.prior!r}) must be a mapping such as "
                          "{'alpha0': 1, 'beta0': 1}")
    if c.reward is None:
        raise ConfigError(f"prior ({dict(c.prior)!r}) needs reward= as well")
    kind = reward_kind(c)
    allowed = _PRIOR_KEYS[kind]
    for key, value in c.prior.items():
        if key not in allowed:
            raise ConfigError(f"prior.{key}: unknown for a {kind} reward "
                              f"({'Beta' if kind == 'binary' else 'Normal-Inverse-Gamma'} "
                              f"prior); known keys are {sorted(allowed)}")
        _number(f"prior.{key}", value, low=0 if allowed[key] else None, low_open=True)
    object.__setattr__(c, "prior", {k: float(v) for k, v in c.prior.items()})
