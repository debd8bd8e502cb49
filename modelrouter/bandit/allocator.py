"""The Thompson allocator: posterior + policy -> routing weights, refreshed on a schedule.

Request path: ``allocator.choose(u)`` (or ``weights.choose(u)``) reads one attribute, an
immutable :class:`Weights`, and bisects its cumulative weights: O(log K), no lock, no numpy.
Off the request path: ``update`` feeds rewards to the posterior and ``maybe_refresh`` /
``refresh`` build a new :class:`Weights` (next ``epoch``) and swap it in with one attribute
assignment, so a reader sees the old weights or the new ones, never a mix.

Thread safety: ``choose``, ``draw``, ``weights``, ``epoch`` are safe from any thread or task.
``update``, ``update_batch``, ``load_counters``, ``refresh``, ``pause`` and ``resume`` mutate
the posterior or the schedule and must be serialised by the caller (the router's store lock
or a single refresher task); the allocator holds no lock of its own.

Randomness: each allocator owns a ``numpy.random.Generator``. Without ``seed``/``rng`` it is
seeded from OS entropy, and re-seeded in a forked child (``os.register_at_fork``), so two
worker processes never make identical draws even when the app was imported before the fork.
"""

from __future__ import annotations

import math
import os
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from modelrouter.bandit.policies import (
    PosteriorSummary,
    ThompsonPolicy,
    apply_floor,
    check_min_share,
    make_policy,
    p_best_monte_carlo,
    p_best_quadrature,
    summarize,
)
from modelrouter.bandit.posteriors import Posterior, make_posterior
from modelrouter.exceptions import ConfigError

__all__ = ["Method", "ThompsonAllocator", "Weights", "arm_index", "fixed_split"]

Method = Literal["auto", "quadrature", "mc"]
_METHODS = ("auto", "quadrature", "mc")


@dataclass(frozen=True, eq=False)
class Weights:
    """One immutable set of routing weights (an epoch); ``choose(u)`` maps u in [0, 1) to an arm.

    ``probabilities[i]`` is the propensity of arm i in this epoch; ``p_best`` the P(best) they
    were computed from (over active arms); ``snapshot`` the posterior frozen at this refresh,
    used by per-request draws.
    """

    probabilities: tuple[float, ...]
    p_best: tuple[float, ...]
    epoch: int
    created_at: float
    policy: str = "thompson"
    min_share: float = 0.0
    active: tuple[bool, ...] = ()
    snapshot: Posterior | None = field(default=None, repr=False)
    _cumulative: tuple[float, ...] = field(init=False, repr=False)
    _last: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cumulative = list(accumulate(self.probabilities))
        last = max(i for i, p in enumerate(self.probabilities) if p > 0)
        cumulative[last:] = [1.0] * (len(cumulative) - last)  # u < 1 always lands on an arm
        object.__setattr__(self, "_cumulative", tuple(cumulative))
        object.__setattr__(self, "_last", last)
        if not self.active:
            object.__setattr__(self, "active", tuple(p > 0 for p in self.probabilities))

    @classmethod
    def fixed(cls, probabilities: ArrayLike, *, epoch: int = 0, created_at: float = 0.0,
              policy: str = "fixed") -> Weights:
        """Static weights (A/B split or a baseline), normalised to sum to 1."""
        p = np.asarray(probabilities, dtype=np.float64)
        valid = p.ndim == 1 and p.size > 0 and bool(np.all(np.isfinite(p) & (p >= 0)))
        if not valid or p.sum() <= 0:
            raise ConfigError(f"weights ({probabilities!r}) must be non-negative, not all 0")
        p = p / p.sum()
        return cls(tuple(p.tolist()), tuple(p.tolist()), epoch, created_at, policy)

    @property
    def n_arms(self) -> int:
        """Number of arms, paused ones included."""
        return len(self.probabilities)

    def choose(self, u: float) -> tuple[int, float]:
        """Arm and its propensity for a uniform ``u`` in [0, 1) (random number or hash bucket)."""
        if not 0.0 <= u < 1.0:
            raise ValueError(f"u ({u!r}) must lie in [0, 1)")
        i = min(bisect_right(self._cumulative, u), self._last)
        return i, self.probabilities[i]

    def choose_batch(self, u: ArrayLike) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Vectorised ``choose`` for an array of uniforms (simulations, replays)."""
        arms = np.searchsorted(np.asarray(self._cumulative), np.asarray(u), side="right")
        arms = np.minimum(arms, self._last)
        return arms, np.asarray(self.probabilities)[arms]

    def draw(self, rng: np.random.Generator) -> tuple[int, float]:
        """Per-request Thompson draw from ``snapshot``; the propensity is this epoch's weight."""
        if self.snapshot is None:
            return self.choose(float(rng.random()))
        active = np.asarray(self.active)
        if rng.random() < self.min_share * int(active.sum()):  # the floor's share: uniform
            i = int(rng.choice(np.flatnonzero(active)))
        else:
            theta = self.snapshot.sample(rng, 1)[0]
            theta[~active] = -np.inf
            i = int(theta.argmax())
        return i, self.probabilities[i]

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the store, the stats endpoint and JSON."""
        return {"epoch": self.epoch, "created_at": self.created_at, "policy": self.policy,
                "min_share": self.min_share, "probabilities": list(self.probabilities),
                "p_best": list(self.p_best), "active": list(self.active)}


_UNSEEDED: weakref.WeakSet[ThompsonAllocator] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for allocator in list(_UNSEEDED):
        allocator.reseed()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} ({value!r}) must be a positive integer")
    return int(value)


class ThompsonAllocator:
    """Holds a posterior and the current :class:`Weights`; refreshes them every N rewards or T s.

    ``refresh_seconds=None`` disables the time trigger. A time-triggered refresh only happens
    when at least one reward arrived since the last one: without new data there is nothing
    to learn, and re-running the allocation would only bump the epoch.
    """

    def __init__(
        self,
        posterior: Posterior,
        *,
        policy: str | ThompsonPolicy = "thompson",
        min_share: float = 0.01,
        refresh_every: int = 100,
        refresh_seconds: float | None = 1.0,
        method: Method = "auto",
        draws: int = 10_000,
        points_per_arm: int = 64,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] = time.monotonic,
        **policy_options: Any,
    ) -> None:
        self.policy = make_policy(policy, **policy_options)
        self.min_share = check_min_share(min_share, posterior.n_arms)
        self.refresh_every = _positive_int("refresh_every", refresh_every)
        if refresh_seconds is not None and not (
            isinstance(refresh_seconds, (int, float)) and refresh_seconds > 0
        ):
            raise ConfigError(f"refresh_seconds ({refresh_seconds!r}) must be > 0 or None")
        self.refresh_seconds = math.inf if refresh_seconds is None else float(refresh_seconds)
        if method not in _METHODS:
            choices = ", ".join(map(repr, _METHODS))
            raise ConfigError(f"method ({method!r}) must be one of {choices}")
        self.method = method
        self.draws = _positive_int("draws", draws)
        self.points_per_arm = _positive_int("points_per_arm", points_per_arm)
        if seed is not None and rng is not None:
            raise ConfigError(f"give seed ({seed!r}) or rng ({rng!r}), not both")
        self._seeded = seed is not None or rng is not None
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        if not self._seeded:
            _UNSEEDED.add(self)
        self.clock = clock
        self.posterior = posterior
        self._active = np.ones(posterior.n_arms, dtype=bool)
        self._pending = 0
        self._last_refresh = clock()
        self._weights = self._compute(epoch=0, now=self._last_refresh)

    @classmethod
    def from_config(
        cls,
        n_arms: int,
        *,
        reward: str = "binary",
        prior: Mapping[str, float] | None = None,
        **options: Any,
    ) -> ThompsonAllocator:
        """Build from config values: reward kind (``"binary"``/``"continuous"``), prior, options."""
        return cls(make_posterior(reward, n_arms, **dict(prior or {})), **options)

    def __repr__(self) -> str:
        return (
            f"ThompsonAllocator(policy={self.policy.name!r}, n_arms={self.n_arms}, "
            f"min_share={self.min_share}, refresh_every={self.refresh_every}, "
            f"refresh_seconds={self.refresh_seconds}, method={self.method!r}, "
            f"epoch={self._weights.epoch})"
        )

    # -- reading (any thread) -------------------------------------------------------------------

    @property
    def n_arms(self) -> int:
        """Number of arms, paused ones included."""
        return self.posterior.n_arms

    @property
    def weights(self) -> Weights:
        """The current immutable weights; hold on to the object for a consistent view."""
        return self._weights

    @property
    def epoch(self) -> int:
        """Epoch of the current weights; +1 at every refresh, pause or resume."""
        return self._weights.epoch

    @property
    def p_best(self) -> tuple[float, ...]:
        """P(best) per arm as of the last refresh."""
        return self._weights.p_best

    @property
    def pending_rewards(self) -> int:
        """Rewards received since the last refresh."""
        return self._pending

    def choose(self, u: float) -> tuple[int, float]:
        """Arm and propensity for a uniform ``u`` in [0, 1), from the current weights."""
        return self._weights.choose(u)

    def draw(self, rng: np.random.Generator | None = None) -> tuple[int, float]:
        """Per-request choice: a posterior draw for ``thompson-per-request``, else ``choose``.

        Uses the allocator's generator by default; from several threads, pass one per thread.
        """
        return self._weights.draw(self.rng if rng is None else rng)

    def summary(self, draws: int = 20_000) -> PosteriorSummary:
        """Posterior mean, P(best) and expected loss per arm, from one set of MC draws."""
        return summarize(self.posterior, self.rng, draws=draws, active=self._active)

    # -- writing (serialised by the caller) ---------------------------------------------------

    def update(self, arm: int, reward: float) -> None:
        """Feed one reward to the posterior (validated there); O(1)."""
        self.posterior.update(arm, reward)
        self._pending += 1

    def update_batch(self, arms: ArrayLike, rewards: ArrayLike) -> None:
        """Feed many rewards at once."""
        self.posterior.update_batch(arms, rewards)
        self._pending += int(np.size(arms))

    def counters(self) -> dict[str, NDArray[np.float64]]:
        """The posterior's additive counters (what a shared store sums across workers)."""
        return self.posterior.counters()

    def load_counters(self, counters: Mapping[str, ArrayLike]) -> None:
        """Replace the posterior's state by (merged) counters; new rewards count as pending."""
        before = float(self.posterior.counts().sum())
        self.posterior = self.posterior.with_counters(counters)
        self._pending += max(int(round(float(self.posterior.counts().sum()) - before)), 0)

    def should_refresh(self, n_new_rewards: int | None = None, now: float | None = None) -> bool:
        """True once ``refresh_every`` rewards arrived, or ``refresh_seconds`` passed with any."""
        n = self._pending if n_new_rewards is None else n_new_rewards
        if n >= self.refresh_every:
            return True
        t = self.clock() if now is None else now
        return n > 0 and t - self._last_refresh >= self.refresh_seconds

    def maybe_refresh(self, now: float | None = None) -> Weights | None:
        """Refresh if the schedule says so; return the new weights, or None."""
        t = self.clock() if now is None else now
        return self.refresh(t) if self.should_refresh(now=t) else None

    def refresh(self, now: float | None = None) -> Weights:
        """Recompute the weights from the posterior now, swap them in, and return them."""
        t = self.clock() if now is None else now
        weights = self._compute(epoch=self._weights.epoch + 1, now=t)
        self._weights = weights  # one assignment: readers see old or new, never a mix
        self._pending = 0
        self._last_refresh = t
        return weights

    def pause(self, arm: int) -> Weights:
        """Force an arm's weight to 0 (others renormalised) from a new epoch on."""
        return self._set_active(arm, False)

    def resume(self, arm: int) -> Weights:
        """Let a paused arm back in from a new epoch on."""
        return self._set_active(arm, True)

    @property
    def active(self) -> tuple[bool, ...]:
        """Which arms take part in the allocation (a paused arm gets weight 0)."""
        return tuple(self._active.tolist())

    def set_active(self, active: Sequence[bool]) -> None:
        """Set which arms take part, applied at the next refresh (the caller serialises)."""
        mask = np.array(active, dtype=bool)
        if mask.shape != (self.n_arms,) or not mask.any():
            raise ConfigError(f"active ({list(active)!r}) must name {self.n_arms} arms, at "
                              "least one of them active")
        self._active = mask

    def restore(self, counters: Mapping[str, ArrayLike], weights: Weights) -> None:
        """Continue from a saved state: the posterior from ``counters``, ``weights`` (their
        epoch and active mask) in force, nothing pending. With a per-request policy the
        weights' posterior snapshot is the restored posterior."""
        if weights.n_arms != self.n_arms:
            raise ConfigError(f"weights over {weights.n_arms} arms for an allocator of "
                              f"{self.n_arms}")
        posterior = self.posterior.with_counters(counters)
        if self.policy.per_request and weights.snapshot is None:
            weights = Weights(weights.probabilities, weights.p_best, weights.epoch,
                              weights.created_at, weights.policy, weights.min_share,
                              weights.active, posterior.copy())
        self.posterior = posterior
        self._active = np.array(weights.active, dtype=bool)
        self._weights = weights
        self._pending = 0
        self._last_refresh = self.clock()

    def reseed(self, seed: int | None = None) -> None:
        """Replace the generator (OS entropy by default); done automatically after fork."""
        self.rng = np.random.default_rng(seed)

    def _set_active(self, arm: int, value: bool) -> Weights:
        if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)) or not (
            0 <= arm < self.n_arms
        ):
            raise ConfigError(f"arm ({arm!r}) must be an index in [0, {self.n_arms})")
        active = self._active.copy()
        active[arm] = value
        if not active.any():
            raise ConfigError(f"arm ({arm!r}) is the last active arm and cannot be paused")
        self._active = active
        return self.refresh()

    def _p_best(self) -> NDArray[np.float64]:
        if self.method == "mc":
            return p_best_monte_carlo(self.posterior, self.rng, draws=self.draws,
                                      active=self._active)
        return p_best_quadrature(self.posterior, points_per_arm=self.points_per_arm,
                                 active=self._active)

    def _compute(self, *, epoch: int, now: float) -> Weights:
        p_best = self._p_best()
        probabilities = apply_floor(self.policy.target(p_best), self.min_share, self._active)
        snapshot = self.posterior.copy() if self.policy.per_request else None
        return Weights(
            tuple(probabilities.tolist()), tuple(p_best.tolist()), epoch, now,
            self.policy.name, self.min_share, tuple(self._active.tolist()), snapshot,
        )


def fixed_split(n_arms: int) -> Weights:
    """Equal static weights over ``n_arms`` (the A/B baseline)."""
    return Weights.fixed(np.ones(_positive_int("n_arms", n_arms)))


def arm_index(arms: Sequence[str], name: str) -> int:
    """Index of a variant name in the arm order, with a ConfigError naming it if absent."""
    try:
        return list(arms).index(name)
    except ValueError:
        raise ConfigError(f"arm ({name!r}) must be one of {', '.join(map(repr, arms))}") from None
