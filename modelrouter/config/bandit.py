"""The bandit settings of a :class:`~modelrouter.config.RouterConfig`: :class:`BanditConfig`.

Kept apart so the bandit options live next to the bandit, in one frozen value that the bandit
router can take instead of the whole config. The number of arms is not known here (variants are
given to the router, not the config), so the floor is checked against two arms here and against
the real count when the router is built (``min_share x arms <= 1``).

The reward of a decision (what the posterior learns from) is
``reward value - sum(cost * value of cost metric)`` over ``reward_cost``; see
:mod:`modelrouter.store.decisions` for when each part is taken into account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modelrouter.config._checks import (
    check_choice,
    check_integer,
    check_mapping,
    check_mapping_of,
    check_number,
    check_optional,
    check_positive,
    choices,
)
from modelrouter.config.base import SubConfig
from modelrouter.config.metrics import AUTOMATIC_METRICS, MetricSpec, parse_metrics
from modelrouter.exceptions import ConfigError

__all__ = [
    "BANDIT_POLICIES",
    "BanditConfig",
    "BanditPolicy",
    "HasBanditConfig",
    "MissingReward",
    "RewardKind",
    "reward_kind",
]

# the same names as modelrouter.bandit (policies.PolicyName, posteriors.RewardKind; a test keeps
# them in step), repeated so that building a config does not import the numerics
BanditPolicy = Literal["thompson", "thompson-per-request", "top-two"]
RewardKind = Literal["binary", "continuous"]
MissingReward = Literal["zero", "omit"]
BANDIT_POLICIES: tuple[str, ...] = choices(BanditPolicy)
# prior keys per posterior kind, and whether the value must be > 0
_PRIOR_KEYS: dict[str, dict[str, bool]] = {
    "binary": {"alpha0": True, "beta0": True},
    "continuous": {"mu0": False, "kappa0": True, "alpha0": True, "beta0": True, "shift": False},
}
_AUTOMATIC = frozenset(m.name for m in AUTOMATIC_METRICS)
_COSTS = "a mapping of metric names to costs"


@dataclass(frozen=True, kw_only=True, repr=False)
class BanditConfig(SubConfig):
    """How the bandit learns (``reward``, ``reward_cost``, ``prior``, ``missing_reward``), how
    often it re-plans (``refresh_every`` decisions or ``refresh_seconds``), how it explores
    (``bandit_policy``, ``min_share`` floor, ``holdout`` share kept uniformly random) and how
    long a unit keeps its arm (``sticky_seconds``, for at most ``sticky_max_units`` units).

    ``metrics`` are the config's declared metrics, which the reward and costs refer to.
    """

    metrics: Mapping[str, MetricSpec] = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        metrics = parse_metrics(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        if self.reward is not None:
            if not isinstance(self.reward, str) or self.reward not in metrics:
                declared = sorted(m for m in metrics if m not in _AUTOMATIC)
                raise ConfigError(f"reward ({self.reward!r}) is not a declared metric; declared "
                                  f"metrics are {declared}")
            if self.reward in _AUTOMATIC or metrics[self.reward].lower_is_better:
                raise ConfigError(f"reward ({self.reward!r}) must be a metric where higher is "
                                  "better (the bandit maximises it); charge latency or errors "
                                  "through reward_cost instead")
        if self.reward_cost is not None:
            check_mapping("reward_cost", self.reward_cost, expected=_COSTS)
            if self.reward is None:
                raise ConfigError(f"reward_cost ({dict(self.reward_cost)!r}) needs reward= as "
                                  "well")
            costs = check_mapping_of("reward_cost", self.reward_cost, check_number,
                                     expected=_COSTS, keys=self._cost_metric)
            object.__setattr__(self, "reward_cost", costs or None)
        check_integer("refresh_every", self.refresh_every, low=1)
        check_optional(check_positive, "refresh_seconds", self.refresh_seconds)
        check_number("min_share", self.min_share, low=0, high=0.5)
        check_choice("bandit_policy", self.bandit_policy, BanditPolicy)
        check_choice("missing_reward", self.missing_reward, MissingReward)
        check_number("holdout", self.holdout, low=0, high=1, high_open=True)
        check_optional(check_positive, "sticky_seconds", self.sticky_seconds)
        check_integer("sticky_max_units", self.sticky_max_units, low=1)
        if self.prior is not None:
            object.__setattr__(self, "prior", self._check_prior(self.prior))

    def _cost_metric(self, path: str, name: object) -> str:
        if not isinstance(name, str) or name not in self.metrics or name == self.reward:
            raise ConfigError(f"{path}.{name}: ({name!r}) must be a declared metric other than "
                              f"the reward; declared metrics are {sorted(self.metrics)}")
        return name

    def _check_prior(self, prior: object) -> dict[str, float]:
        given = check_mapping("prior", prior, expected="a mapping such as "
                              "{'alpha0': 1, 'beta0': 1}")
        if self.reward is None:
            raise ConfigError(f"prior ({dict(given)!r}) needs reward= as well")
        kind = self.reward_kind
        allowed = _PRIOR_KEYS[kind]
        out: dict[str, float] = {}
        for key, value in given.items():
            if not isinstance(key, str) or key not in allowed:
                raise ConfigError(f"prior.{key}: unknown for a {kind} reward "
                                  f"({'Beta' if kind == 'binary' else 'Normal-Inverse-Gamma'} "
                                  f"prior); known keys are {sorted(allowed)}")
            out[key] = check_number(f"prior.{key}", value, low=0 if allowed[key] else None,
                                    low_open=True)
        return out

    @property
    def reward_kind(self) -> RewardKind:
        """``"binary"`` (Beta-Bernoulli) for a binary reward without costs, else
        ``"continuous"`` (Normal-Inverse-Gamma): a cost, or counting conversions
        (``aggregate="sum"``), makes the reward of a binary metric continuous. Needs a
        ``reward``."""
        if self.reward is None:
            raise ConfigError("reward (None): the reward kind needs a declared reward metric")
        spec = self.metrics[self.reward]
        binary = spec.kind == "binary" and spec.aggregate != "sum" and not self.reward_cost
        return "binary" if binary else "continuous"


class HasBanditConfig(Protocol):
    """What holds a :class:`BanditConfig`: a :class:`~modelrouter.config.RouterConfig`."""

    @property
    def bandit_config(self) -> BanditConfig: ...


def reward_kind(config: BanditConfig | HasBanditConfig) -> RewardKind:
    """The reward kind of a config's bandit settings (see :attr:`BanditConfig.reward_kind`)."""
    bandit = config if isinstance(config, BanditConfig) else config.bandit_config
    return bandit.reward_kind
