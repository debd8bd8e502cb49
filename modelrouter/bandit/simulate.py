"""Simulated traffic for the allocator: Bernoulli rewards, batched refreshes, regret.

Used by the tests, the benchmarks and the demo. Every request gets one reward at once (no
delay), so "refresh every N rewards" means every N requests; between refreshes the weights are
fixed and the batch is routed with one vectorised ``choose_batch`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from modelrouter.bandit.allocator import ThompsonAllocator, Weights
from modelrouter.bandit.posteriors import BetaBernoulli
from modelrouter.exceptions import ConfigError

__all__ = ["SimulationResult", "simulate_bernoulli"]


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Per-request log of one simulated run (arrays of length ``n_requests``)."""

    arms: NDArray[np.intp]
    rewards: NDArray[np.float64]
    propensities: NDArray[np.float64]
    epochs: NDArray[np.intp]
    rates: NDArray[np.float64]  # (n_requests, n_arms) true success rates at each request
    weights_history: NDArray[np.float64]  # (n_epochs, n_arms) weights of each epoch

    @property
    def n_arms(self) -> int:
        """Number of arms."""
        return int(self.rates.shape[1])

    @property
    def true_means(self) -> NDArray[np.float64]:
        """Each arm's mean rate over the requests (the estimand of the IPW estimators)."""
        return np.asarray(self.rates.mean(axis=0), dtype=np.float64)

    @property
    def best_arm(self) -> int:
        """Arm with the highest mean rate."""
        return int(self.true_means.argmax())

    @property
    def share_best(self) -> float:
        """Share of requests routed to the best arm."""
        return float(np.mean(self.arms == self.best_arm))

    @property
    def shares(self) -> NDArray[np.float64]:
        """Share of requests per arm."""
        return np.bincount(self.arms, minlength=self.n_arms) / self.arms.size

    @property
    def regret(self) -> float:
        """Cumulative expected (pseudo-)regret: sum over requests of best rate - chosen rate."""
        chosen = self.rates[np.arange(self.arms.size), self.arms]
        return float(np.sum(self.rates.max(axis=1) - chosen))


def _rate_matrix(true_rates: ArrayLike, n_requests: int) -> NDArray[np.float64]:
    rates = np.asarray(true_rates, dtype=np.float64)
    if rates.ndim == 1:
        rates = np.broadcast_to(rates, (n_requests, rates.size))
    if rates.shape[0] != n_requests or rates.ndim != 2 or rates.shape[1] < 1:
        raise ConfigError(f"true_rates shape {rates.shape} must be (arms,) or ({n_requests}, arms)")
    if np.any((rates < 0) | (rates > 1)):
        raise ConfigError("true_rates must lie in [0, 1]")
    return rates


def simulate_bernoulli(
    true_rates: ArrayLike,
    n_requests: int = 10_000,
    *,
    policy: str = "thompson",
    refresh_every: int = 100,
    min_share: float = 0.01,
    seed: int | None = None,
    fixed_weights: ArrayLike | None = None,
    **allocator_options: Any,
) -> SimulationResult:
    """Route ``n_requests`` Bernoulli-reward requests with a Thompson allocator (or fixed weights).

    ``true_rates`` is ``(arms,)`` or ``(n_requests, arms)`` for rates that drift over time.
    ``fixed_weights`` replaces the bandit by a static split (the A/B baseline); otherwise
    ``policy``, ``refresh_every``, ``min_share`` and ``allocator_options`` (e.g. ``alpha0``
    as ``prior``... see :class:`ThompsonAllocator`) configure the allocator. One ``seed``
    drives both the traffic and the allocator's generator, through independent streams.
    """
    rates = _rate_matrix(true_rates, n_requests)
    k = rates.shape[1]
    traffic_seq, allocator_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(traffic_seq)
    arms = np.empty(n_requests, dtype=np.intp)
    propensities = np.empty(n_requests)
    epochs = np.empty(n_requests, dtype=np.intp)
    rewards = (rng.random((n_requests, k)) < rates).astype(np.float64)  # potential outcomes
    history: list[tuple[float, ...]] = []

    if fixed_weights is not None:
        weights = Weights.fixed(fixed_weights)
        arms[:], propensities[:] = weights.choose_batch(rng.random(n_requests))
        epochs[:] = 0
        history.append(weights.probabilities)
    else:
        prior = allocator_options.pop("prior", {})
        allocator = ThompsonAllocator(
            BetaBernoulli(k, **prior), policy=policy, refresh_every=refresh_every,
            min_share=min_share, refresh_seconds=None,
            rng=np.random.default_rng(allocator_seq), **allocator_options,
        )
        per_request = allocator.policy.per_request
        start = 0
        while start < n_requests:
            weights = allocator.weights
            history.append(weights.probabilities)
            stop = min(start + allocator.refresh_every, n_requests)
            if per_request:
                for t in range(start, stop):
                    arms[t], propensities[t] = allocator.draw()
            else:
                arms[start:stop], propensities[start:stop] = weights.choose_batch(
                    rng.random(stop - start)
                )
            epochs[start:stop] = weights.epoch
            chosen = arms[start:stop]
            allocator.update_batch(chosen, rewards[np.arange(start, stop), chosen])
            allocator.maybe_refresh()
            start = stop

    observed = rewards[np.arange(n_requests), arms]
    return SimulationResult(arms, observed, propensities, epochs, np.asarray(rates),
                            np.asarray(history))
