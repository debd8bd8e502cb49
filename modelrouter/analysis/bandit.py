"""``analysis.bandit()``: where the bandit stands, as one frozen result.

Posterior quantities (means, P(best), expected loss) come from the training counters at the
moment of the analysis, not from the last refresh: P(best) by quadrature, the expected loss
``E[max_j theta_j - theta_i | data]`` from 20,000 posterior draws, over all arms (a paused
arm's numbers say what it would be worth).

Cumulative regret estimate: ``sum over arms of n_i x expected_loss_i``, where ``n_i`` is the
number of decisions the bandit routed to arm i (holdout excluded). It is the posterior
expectation of ``sum over decisions of (best mean - mean of the arm served)``, the regret
against always serving the best arm, given everything observed so far; the same for a uniform
split of those decisions (``regret_uniform``) shows what the adaptation saved. Like every
posterior quantity it is an estimate, and it assumes the arms' means did not drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.results import format_table
from modelrouter.exceptions import AnalysisError
from modelrouter.store.decisions import HOLDOUT

__all__ = ["BanditResult", "WeightsEpoch", "bandit_result"]


@dataclass(frozen=True)
class WeightsEpoch:
    """One epoch of the weights history."""

    epoch: int
    mode: str
    weights: dict[str, float]
    started_at: float


@dataclass(frozen=True)
class BanditResult:
    """The bandit now; dicts are keyed by variant."""

    policy: str
    mode: str
    epoch: int
    weights: dict[str, float]
    p_best: dict[str, float]
    expected_loss: dict[str, float]
    posterior_mean: dict[str, float]
    decisions: dict[str, int]  # routed by the bandit (holdout excluded)
    holdout_decisions: int
    regret: float
    regret_uniform: float
    paused: tuple[str, ...] = ()
    history: tuple[WeightsEpoch, ...] = field(default=(), repr=False)

    @property
    def best(self) -> str:
        """The arm most likely to be the best."""
        return max(self.p_best, key=self.p_best.__getitem__)

    def __repr__(self) -> str:
        def fmt(d: dict[str, float]) -> str:
            return "{" + ", ".join(f"{k!r}: {v:.4g}" for k, v in d.items()) + "}"
        return (f"BanditResult(policy={self.policy!r}, mode={self.mode!r}, epoch={self.epoch}, "
                f"weights={fmt(self.weights)}, p_best={fmt(self.p_best)}, "
                f"regret={self.regret:.4g}, regret_uniform={self.regret_uniform:.4g})")

    def summary(self) -> str:
        """A readable table per arm, the regret estimate and the epochs."""
        rows = [[v + (" (paused)" if v in self.paused else ""), f"{self.weights[v]:.4f}",
                 f"{self.p_best[v]:.4f}", f"{self.posterior_mean[v]:.5g}",
                 f"{self.expected_loss[v]:.3g}", f"{self.decisions[v]:,}"]
                for v in self.weights]
        table = format_table(["arm", "weight", "P(best)", "posterior mean", "expected loss",
                              "decisions"], rows)
        saved = (1.0 - self.regret / self.regret_uniform) if self.regret_uniform > 0 else math.nan
        return "\n".join([
            f"bandit ({self.policy}, mode {self.mode}, epoch {self.epoch}): best arm "
            f"{self.best!r} with P(best) {self.p_best[self.best]:.3f}", table,
            f"cumulative regret estimate {self.regret:.4g} (uniform split of the same "
            f"decisions: {self.regret_uniform:.4g}; saved {saved:.0%})"
            if math.isfinite(saved) else f"cumulative regret estimate {self.regret:.4g}",
            f"{len(self.history)} epochs; {self.holdout_decisions:,} holdout decisions"])

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for code and JSON."""
        return {"policy": self.policy, "mode": self.mode, "epoch": self.epoch,
                "weights": dict(self.weights), "p_best": dict(self.p_best),
                "expected_loss": dict(self.expected_loss),
                "posterior_mean": dict(self.posterior_mean), "decisions": dict(self.decisions),
                "holdout_decisions": self.holdout_decisions, "regret": self.regret,
                "regret_uniform": self.regret_uniform, "paused": list(self.paused),
                "history": [{"epoch": h.epoch, "mode": h.mode, "weights": dict(h.weights),
                             "started_at": h.started_at} for h in self.history]}


def bandit_result(data: AnalysisData) -> BanditResult:
    """Build the :class:`BanditResult` from the snapshot and the bandit's status."""
    status = data.bandit_status
    if status is None:
        raise AnalysisError("this experiment has no bandit: set RouterConfig(reward=...) and "
                            "mode='bandit' (or configure(mode='bandit'))")
    names = data.variants
    snap = data.snapshot
    routed = np.zeros(len(names))
    held = 0
    for (variant, _epoch, _seg, tag), (n, _m) in snap.decisions.items():
        if tag & HOLDOUT:
            held += n
        else:
            routed[variant] += n
    loss = np.asarray(status.expected_loss, dtype=np.float64)
    history = tuple(WeightsEpoch(e.epoch, e.mode, dict(zip(names, e.weights)), e.started_at)
                    for e in snap.epochs)
    return BanditResult(
        policy=status.policy, mode="bandit" if status.active else "ab",
        epoch=int(status.epoch), weights=dict(zip(names, status.weights)),
        p_best=dict(zip(names, status.p_best)),
        expected_loss=dict(zip(names, loss.tolist())),
        posterior_mean=dict(zip(names, status.mean)),
        decisions={v: int(n) for v, n in zip(names, routed)}, holdout_decisions=int(held),
        regret=float(np.dot(routed, loss)), regret_uniform=float(routed.sum() * loss.mean()),
        paused=tuple(v for v, p in zip(names, status.paused) if p), history=history)
