"""Non-binding futility bounds from a beta-spending function (Pampallona & Tsiatis 1994; rpact).

A futility bound ``f_k`` lets a test stop early when the treatment is unlikely to prove better:
for a one-sided design at ``Z_k <= f_k`` (a lower bound), for a two-sided design when
``|Z_k| < f_k`` (an inner "accept H0" region). The bounds spend the type II error ``beta`` over
the looks under the design alternative (drift ``mu`` = E[Z at information rate 1]): the
cumulative probability of stopping for futility by look ``k`` is ``B(t_k)``, with ``B`` one of
the spending families of :mod:`modelrouter.stats.sequential` applied to ``beta`` (O'Brien-Fleming
type ``2 - 2 Phi(z_(1-beta/2) / sqrt(t))``, Pocock type, Hwang-Shih-DeCani, power ``beta t^rho``:
rpact's ``bsOF``, ``bsP``, ``bsHSD``, ``bsKD``). Each ``f_k`` is solved with ``brentq`` on the
recursive integration of :mod:`modelrouter.stats.sequential_recursion`, the continuation region
of earlier looks being ``(f_j, c_j)`` (one-sided) or ``(-c_j, -f_j) U (f_j, c_j)``.

**Non-binding** (rpact's default ``bindingFutility = FALSE``): the efficacy boundaries ``c_k``
are the alpha-spending ones computed as if there were no futility bounds, so ignoring a futility
bound never inflates the type I error; obeying it only lowers the power a little (reported).

Two ways to fix the drift:

- :func:`futility_design` (``drift=None``): rpact's design, the drift at which the last
  futility bound meets the last efficacy bound (``f_K = c_K``), so the power at that drift is
  exactly ``1 - beta`` with the futility bounds obeyed; the maximum information is the drift's
  square over the fixed-sample one (the inflation factor).
- ``drift=`` given: the bounds for an experiment whose maximum information was already planned
  (:class:`~modelrouter.config.ExperimentPlan` plans it without futility), at the plan's
  alternative; the last look has no futility region (``f_K = c_K``) and the power with the
  futility bounds obeyed is reported below the plan's.

Two-sided designs follow rpact: no futility region at looks where the one-sided design (alpha/2)
would have a negative bound, and the beta-spending function is rescaled to start after them
(rpact's ``betaAdjustment = TRUE``); the power is that of the upper side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtri

from modelrouter.stats.sequential import (
    Sided,
    Spending,
    check_alpha,
    check_rates,
    check_sided,
    spending_boundaries,
    spending_function,
)
from modelrouter.stats.sequential_recursion import Z_MAX, BrownianRecursion, stopping_probabilities

__all__ = ["FutilityDesign", "futility_bounds", "futility_design"]


def _one_sided(t: np.ndarray, c: np.ndarray, drift: float, beta_cum: np.ndarray) -> np.ndarray:
    """Lower futility bounds f_k: P_drift(Z_j <= f_j first at some j <= k) = beta_cum[k]."""
    f = np.full(t.size, -math.inf)
    rec, spent = BrownianRecursion(drift), 0.0
    for k in range(t.size):
        tk, ck, target = float(t[k]), float(c[k]), float(beta_cum[k]) - spent
        if target > 0.0:
            if k == 0:
                f[k] = float(ndtri(min(target, 1.0))) + math.sqrt(tk) * drift
            else:
                def g(x: float, tk: float = tk, target: float = target) -> float:
                    return rec.lower(x, tk) - target
                lo, hi = -Z_MAX, Z_MAX
                f[k] = lo if g(lo) >= 0.0 else hi if g(hi) <= 0.0 else float(
                    brentq(g, lo, hi, xtol=1e-12, rtol=1e-12))
        if k + 1 < t.size:
            f[k] = min(f[k], ck)
            spent += rec.lower(f[k], tk) if f[k] > -math.inf else 0.0
            rec.advance(f[k], ck, tk)
    return f


def _two_sided(t: np.ndarray, c: np.ndarray, drift: float, beta_cum: np.ndarray,
               none_at: np.ndarray) -> np.ndarray:
    """Inner futility bounds f_k >= 0 (stop when |Z_k| < f_k), 0 where ``none_at``."""
    f = np.zeros(t.size)
    rec, spent = BrownianRecursion(drift), 0.0
    for k in range(t.size):
        tk, ck, target = float(t[k]), float(c[k]), float(beta_cum[k]) - spent
        if target > 0.0 and not none_at[k]:
            cap = ck if k + 1 < t.size else math.inf  # the last bound may pass c_K (drift solve)

            def g(x: float, tk: float = tk, cap: float = cap, target: float = target) -> float:
                return rec.between(-min(x, cap), min(x, cap), tk) - target
            hi = Z_MAX
            f[k] = 0.0 if g(0.0) >= 0.0 else hi if g(hi) <= 0.0 else float(
                brentq(g, 0.0, hi, xtol=1e-12, rtol=1e-12))
        if k + 1 < t.size:
            f[k] = min(f[k], ck)
            spent += rec.between(-f[k], f[k], tk)
            regions = ((-ck, -f[k]), (f[k], ck)) if f[k] > 0.0 else ((-ck, ck),)
            rec.advance_regions(regions, tk)
    return f


def _solve_drift(fk_minus_ck: Any) -> float:
    """The drift at which the last futility bound meets the last efficacy bound."""
    lo, hi = 0.0, 10.0
    while fk_minus_ck(hi) < 0.0 and hi < 80.0:
        hi *= 2.0
    return float(brentq(fk_minus_ck, lo, hi, xtol=1e-12, rtol=1e-12))


def _adjusted_beta(beta_cum: np.ndarray, one_sided: np.ndarray, total: float, final: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """rpact's two-sided rule: no inner region where the one-sided bound is negative; beta
    spending restarts after the last such look (``getAdjustedBetaSpendingValues``, with
    ``total`` = beta, the spending at information rate 1). ``final``: the last look is the
    final analysis (no futility region of its own)."""
    early = one_sided[:-1] if final else one_sided
    none_at = np.append(early < 0.0, False) if final else early < 0.0
    positive = np.flatnonzero(early > 0.0)
    k_min = int(positive[0]) if positive.size else early.size
    if k_min <= 0:
        return beta_cum, none_at
    b0 = float(beta_cum[k_min - 1])
    adj = np.zeros_like(beta_cum)
    adj[k_min - 1:] = (beta_cum[k_min - 1:] - b0) / (total - b0) * total
    return adj, none_at


def futility_bounds(information_rates: Sequence[float] | np.ndarray,
                    efficacy: Sequence[float] | np.ndarray, drift: float, beta: float = 0.2,
                    sided: Sided = 1, beta_spending: Spending = "obrien-fleming",
                    beta_gamma: float | None = None, last_is_final: bool = True) -> np.ndarray:
    """Futility bounds at the given looks for a known design ``drift`` (see the module).

    ``efficacy`` are the (non-binding) efficacy boundaries of those looks. With
    ``last_is_final`` the last look is the final analysis and its bound is its efficacy
    boundary; otherwise (monitoring before the end) it is the beta-spending bound.
    """
    t, s = check_rates(information_rates), check_sided(sided)
    c = np.asarray(efficacy, dtype=float)
    if c.shape != t.shape:
        raise ValueError(f"efficacy has {c.size} values but information_rates has {t.size}")
    check_alpha(beta, "beta")
    b = spending_function(t, beta, 1, beta_spending, beta_gamma)
    if s == 1:
        f = _one_sided(t, c, float(drift), b)
    else:
        one = _one_sided(t, c, float(drift), b)
        f = _two_sided(t, c, float(drift), *_adjusted_beta(b, one, beta, last_is_final))
    if last_is_final:
        f[-1] = c[-1]
    return f


@dataclass(frozen=True, eq=False)
class FutilityDesign:
    """Efficacy boundaries ``efficacy`` (non-binding alpha spending) and futility bounds
    ``futility`` (beta spending; the last equals the last efficacy boundary) at ``drift``.

    ``power`` is the cumulative probability of crossing the efficacy boundary at ``drift`` with
    the futility bounds obeyed, ``power_ignoring_futility`` without them (the non-binding
    worst case for power is obeying them); ``beta_spent`` the cumulative futility stops at
    ``drift``; ``futility_under_h0`` the cumulative futility stops when there is no effect.
    ``asn_*`` are expected information as a fraction of the maximum (drift 0 = H0, ``drift``
    = H1), with and without obeying the futility bounds.
    """

    information_rates: np.ndarray
    efficacy: np.ndarray
    futility: np.ndarray
    drift: float
    alpha: float
    beta: float
    sided: int
    power: np.ndarray
    power_ignoring_futility: float
    beta_spent: np.ndarray
    futility_under_h0: np.ndarray
    asn_h0: float
    asn_h1: float
    asn_h0_ignoring_futility: float
    asn_h1_ignoring_futility: float

    def __post_init__(self) -> None:
        for name in ("information_rates", "efficacy", "futility", "power", "beta_spent",
                     "futility_under_h0"):
            arr = np.array(getattr(self, name), dtype=float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __repr__(self) -> str:
        def a(x: np.ndarray) -> str:
            return "[" + ", ".join(f"{v:.4g}" for v in x) + "]"
        return (f"FutilityDesign(sided={self.sided}, alpha={self.alpha:g}, beta={self.beta:g}, "
                f"efficacy={a(self.efficacy)}, futility={a(self.futility)}, "
                f"drift={self.drift:.4g}, power={self.power[-1]:.4g} "
                f"(ignoring futility {self.power_ignoring_futility:.4g}), "
                f"asn_h0={self.asn_h0:.4g}, asn_h1={self.asn_h1:.4g})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (infinite bounds become None)."""
        def lst(x: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in x]
        return {"information_rates": lst(self.information_rates),
                "efficacy": lst(self.efficacy), "futility": lst(self.futility),
                "drift": self.drift, "alpha": self.alpha, "beta": self.beta,
                "sided": self.sided, "power": lst(self.power),
                "power_ignoring_futility": self.power_ignoring_futility,
                "beta_spent": lst(self.beta_spent),
                "futility_under_h0": lst(self.futility_under_h0), "asn_h0": self.asn_h0,
                "asn_h1": self.asn_h1, "asn_h0_ignoring_futility": self.asn_h0_ignoring_futility,
                "asn_h1_ignoring_futility": self.asn_h1_ignoring_futility}


def operating_characteristics(t: np.ndarray, c: np.ndarray, f: np.ndarray | None, drift: float,
                              sided: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(upper exits, futility stops, expected information fraction) per look at ``drift``;
    ``f=None``: without futility bounds."""
    if f is None:
        up, lo, mid = stopping_probabilities(t, c, drift, -c if sided == 2 else None)
        fut = np.zeros(t.size)
    elif sided == 1:
        fl = f.copy()
        fl[-1] = c[-1]  # at the last look everything below c_K stops for futility
        up, lo, mid = stopping_probabilities(t, c, drift, fl)
        fut = lo
    else:
        fi = f.copy()
        fi[-1] = c[-1]
        up, lo, mid = stopping_probabilities(t, c, drift, -c, fi)
        fut = mid
    stop = up + lo + mid
    asn = float(np.sum(t[:-1] * stop[:-1]) + t[-1] * max(0.0, 1.0 - float(stop[:-1].sum())))
    return up, fut, asn


def futility_design(information_rates: Sequence[float] | np.ndarray, alpha: float = 0.05,
                    beta: float = 0.2, sided: Sided = 2, spending: Spending = "obrien-fleming",
                    gamma: float | None = None, beta_spending: Spending = "obrien-fleming",
                    beta_gamma: float | None = None, drift: float | None = None
                    ) -> FutilityDesign:
    """A group-sequential design with non-binding beta-spending futility bounds.

    ``drift=None`` solves rpact's design drift (``f_K = c_K``, power exactly ``1 - beta``);
    a given ``drift`` (e.g. the plan's alternative at its maximum information) keeps it and
    reports the power with the futility bounds obeyed.
    """
    t = check_rates(information_rates)
    check_alpha(beta, "beta")
    design = spending_boundaries(t, alpha, sided, spending, gamma)
    c = np.asarray(design.z, dtype=float)
    if drift is None:
        b = spending_function(t, beta, 1, beta_spending, beta_gamma)
        if sided == 1:
            mu = _solve_drift(lambda m: float(_one_sided(t, c, m, b)[-1]) - float(c[-1]))
            f = _one_sided(t, c, mu, b)
        else:
            # rpact: the one-sided (alpha/2) design's own drift decides where a bound exists
            mu1 = _solve_drift(lambda m: float(_one_sided(t, c, m, b)[-1]) - float(c[-1]))
            adj, none_at = _adjusted_beta(b, _one_sided(t, c, mu1, b), beta, True)
            mu = _solve_drift(lambda m: float(_two_sided(t, c, m, adj, none_at)[-1])
                              - float(c[-1]))
            f = _two_sided(t, c, mu, adj, none_at)
        f[-1] = c[-1]
    else:
        mu = float(drift)
        f = futility_bounds(t, c, mu, beta, sided, beta_spending, beta_gamma)
    up1, fut1, asn1 = operating_characteristics(t, c, f, mu, int(sided))
    _, fut0, asn0 = operating_characteristics(t, c, f, 0.0, int(sided))
    up1n, _, asn1n = operating_characteristics(t, c, None, mu, int(sided))
    _, _, asn0n = operating_characteristics(t, c, None, 0.0, int(sided))
    return FutilityDesign(t, c, f, mu, float(alpha), float(beta), int(sided), np.cumsum(up1),
                          float(up1n.sum()), np.cumsum(fut1), np.cumsum(fut0), asn0, asn1,
                          asn0n, asn1n)

