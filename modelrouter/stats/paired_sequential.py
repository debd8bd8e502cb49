"""Always-valid paired tests: a shadow vs the served model, watched continuously.

A shadow's dashboard is read whenever someone looks, and a rollout gate checks it from the
background monitor: a fixed-sample test (McNemar, paired t) read that way rejects far more
often than its alpha. Two accumulators give p-values and confidence sequences that hold at
every time at once (Ville's inequality on a non-negative martingale), fed one labelled pair at
a time and kept in bounded memory (counts and running moments, plus ``O(log n)`` looks):

- :class:`DiscordantWatch`, paired binary outcomes (correct answers): only discordant pairs
  carry information on the difference of accuracies (McNemar). Given that a pair is
  discordant, the shadow is the one right with probability ``p``; equal accuracy is
  ``p = 1/2``. The mixture likelihood ratio with a ``Beta(a, a)`` prior on ``p`` (Robbins
  1970, Ann. Math. Statist. 41:1397) after ``b`` served-only and ``c`` shadow-only pairs
  is::

      Lambda(p0) = B(c + a, b + a) / B(a, a) / (p0^c (1 - p0)^b)

  a martingale under ``p = p0`` (concordant pairs leave it unchanged), so the p-value
  ``min(1, 1 / max_t Lambda_t(1/2))`` (updated at every discordant pair) is always valid, and
  ``{p0 : Lambda_t(p0) < 1/alpha}`` intersected over looks is a confidence sequence for ``p``
  (Howard, Ramdas, McAuliffe & Sekhon 2021, Ann. Statist. 49:1055, sec. 3). The difference
  of accuracies is ``(c - b) / n``; its sign is that of ``p - 1/2``. ``a`` =
  :data:`DISCORDANT_PRIOR` = 10 puts the mixture's mass on shares ``0.5 +- 0.11`` (its sd),
  the size of effect a shadow usually has: simulated (200 runs each, alpha 0.05) the median
  number of discordant pairs to reject at a true share of 0.55 is 673 with ``a = 10``
  against 1,175 with Jeffreys' ``a = 1/2`` (958 with ``a = 2``), about the same at 0.6 (188
  vs 217) and 0.7 (53 vs 55). Validity holds for any ``a``.
- :class:`DifferenceWatch`, paired continuous outcomes (per-request losses): the mean of the
  per-pair differences ``d = shadow - served`` with the normal-mixture mSPRT of
  :mod:`modelrouter.stats.always_valid` (the same test the experiment's
  ``analysis.always_valid()`` runs), on the looks ``(mean d, var d / n)``. A look enters
  once :data:`~modelrouter.stats.always_valid.MIN_EVENTS` pairs were seen (the estimated
  variance is credible; see that module), and the mixing variance ``tau2`` is frozen at the
  first entered look as :func:`~modelrouter.stats.always_valid.mixing_variance` of the
  variance the mean would have at ``horizon`` pairs (default :data:`HORIZON_PAIRS`): the
  interval is then narrowest there. ``tau2`` never follows the data afterwards.

**Looks.** The p-value of the binary test uses every discordant pair. Confidence sequences
and the mSPRT use looks on a geometric grid (every pair up to 100, then every
:data:`LOOK_GROWTH` - 1 = 2% more pairs) and the current state: ``O(log n)`` looks are kept.
Leaving times out never costs validity (Ville's inequality covers all times, so any subset).

**Level.** The binary confidence sequence is intersected at the level the watch was built
with (``confidence_level``, 0.95 by default); asked at another level the result gives the
current look's interval, which is also valid at every time, only not intersected.

Not thread safe (the shadow log calls them under its lock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scipy.optimize import brentq

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.always_valid import (
    MIN_EVENTS,
    AlwaysValidResult,
    always_valid_test,
    mixing_variance,
)
from modelrouter.stats.jsondata import finite_or_none
from modelrouter.stats.results import ConfidenceInterval

__all__ = ["DISCORDANT_PRIOR", "HORIZON_PAIRS", "LOOK_GROWTH", "DifferenceWatch",
           "DiscordantSequential", "DiscordantWatch", "discordant_interval",
           "discordant_log_lr"]

#: ``a`` of the ``Beta(a, a)`` mixture on the shadow's share of discordant pairs (see above).
DISCORDANT_PRIOR = 10.0
#: Looks after the first 100 are taken each time the count grew by this factor.
LOOK_GROWTH = 1.02
#: Labelled pairs at which the loss test's interval is narrowest (fixes its ``tau2``).
HORIZON_PAIRS = 10_000


def _next_look(n: int) -> int:
    return n + 1 if n < 100 else max(n + 1, int(n * LOOK_GROWTH))


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def _check_level(confidence_level: float) -> float:
    if not (isinstance(confidence_level, (int, float)) and 0.0 < confidence_level < 1.0):
        raise AnalysisError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    return float(confidence_level)


def discordant_log_lr(served_only: int, shadow_only: int, p0: float = 0.5,
                      prior: float = DISCORDANT_PRIOR) -> float:
    """``log Lambda(p0)``: the Beta(prior, prior) mixture against ``p = p0`` after
    ``served_only`` (b) and ``shadow_only`` (c) discordant pairs (0 without any)."""
    b, c = served_only, shadow_only
    if b == 0 and c == 0:
        return 0.0
    log_mix = _log_beta(c + prior, b + prior) - _log_beta(prior, prior)
    log_null = (c * math.log(p0) if c else 0.0) + (b * math.log1p(-p0) if b else 0.0)
    return log_mix - log_null


def _lower(b: int, c: int, bound: float) -> float:
    """The smallest ``p`` with ``c log p + b log(1 - p) > bound`` (the maximum is at c / m)."""
    if c == 0:
        return 0.0

    def h(p: float) -> float:
        return c * math.log(p) + b * math.log1p(-p) - bound

    lo, top = 1e-300, c / (b + c)
    if h(lo) >= 0.0:
        return 0.0
    if top >= 1.0:
        top = 1.0 - 1e-16
    return float(brentq(h, lo, top, xtol=1e-14, rtol=1e-12))


def discordant_interval(served_only: int, shadow_only: int, confidence_level: float = 0.95,
                        prior: float = DISCORDANT_PRIOR) -> ConfidenceInterval:
    """``{p0 : Lambda(p0) < 1 / alpha}`` at one look: a time-uniform confidence set for the
    shadow's share ``p`` of the discordant pairs (``[0, 1]`` without discordant pairs)."""
    level = _check_level(confidence_level)
    b, c = served_only, shadow_only
    if b + c == 0:
        return ConfidenceInterval(0.0, 1.0)
    bound = (_log_beta(c + prior, b + prior) - _log_beta(prior, prior)
             - math.log(1.0 / (1.0 - level)))
    return ConfidenceInterval(_lower(b, c, bound), 1.0 - _lower(c, b, bound))


@dataclass(frozen=True)
class DiscordantSequential:
    """The always-valid test of equal accuracy (or error rate) from the discordant pairs.

    ``share`` is the shadow's share of the discordant pairs (0.5: equal), ``ci`` its
    confidence sequence, ``pvalue`` always valid; ``statistic`` is ``log Lambda(1/2)`` now."""

    outcome: str
    served_only: int
    shadow_only: int
    statistic: float
    pvalue: float
    share: float
    ci: ConfidenceInterval
    confidence_level: float
    looks: int
    intersected: bool
    prior: float = DISCORDANT_PRIOR

    @property
    def method(self) -> str:
        """The method in one line."""
        return (f"mixture SPRT on the discordant pairs (Beta({self.prior:g}, {self.prior:g}) "
                "mixture vs p = 1/2; always-valid p-value and confidence sequence)")

    def confidence_interval(self) -> ConfidenceInterval:
        """The confidence sequence of :attr:`share` at :attr:`confidence_level`."""
        return self.ci

    def __repr__(self) -> str:
        return (f"DiscordantSequential({self.outcome}: shadow {self.shadow_only} vs served "
                f"{self.served_only} discordant, share {self.share:.4g} "
                f"[{self.ci.low:.4g}, {self.ci.high:.4g}], always-valid p={self.pvalue:.3g})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN becomes ``None``."""
        return {"outcome": self.outcome, "served_only": self.served_only,
                "shadow_only": self.shadow_only, "statistic": self.statistic,
                "pvalue": self.pvalue, "share": finite_or_none(self.share),
                "ci": self.ci.to_dict(), "confidence_level": self.confidence_level,
                "looks": self.looks, "intersected": self.intersected, "prior": self.prior,
                "method": self.method}


@dataclass
class DiscordantWatch:
    """Feeds :class:`DiscordantSequential` one paired binary outcome at a time."""

    outcome: str = "correct"
    confidence_level: float = 0.95
    prior: float = DISCORDANT_PRIOR
    served_only: int = 0
    shadow_only: int = 0
    max_log_lr: float = 0.0  # running maximum of log Lambda(1/2): the p-value
    low: float = 0.0  # running intersection of the confidence sets at the looks
    high: float = 1.0
    looks: int = 0
    next_look: int = 1

    def __post_init__(self) -> None:
        _check_level(self.confidence_level)
        if not (isinstance(self.prior, (int, float)) and 0.0 < self.prior < math.inf):
            raise AnalysisError(f"prior ({self.prior!r}) must be a positive number")

    def add(self, served: bool, shadow: bool) -> None:
        """Count one pair (``served``/``shadow``: the outcome held for that model)."""
        if served == shadow:
            return  # concordant: Lambda does not move
        if served:
            self.served_only += 1
        else:
            self.shadow_only += 1
        llr = discordant_log_lr(self.served_only, self.shadow_only, 0.5, self.prior)
        if llr > self.max_log_lr:
            self.max_log_lr = llr
        if self.served_only + self.shadow_only >= self.next_look:
            ci = discordant_interval(self.served_only, self.shadow_only,
                                     self.confidence_level, self.prior)
            self.low, self.high = max(self.low, ci.low), min(self.high, ci.high)
            self.looks += 1
            self.next_look = _next_look(self.served_only + self.shadow_only)

    def result(self, confidence_level: float | None = None) -> DiscordantSequential:
        """The test now (see the module docstring for the level)."""
        level = self.confidence_level if confidence_level is None else \
            _check_level(confidence_level)
        b, c = self.served_only, self.shadow_only
        ci = discordant_interval(b, c, level, self.prior)
        intersected = level == self.confidence_level
        if intersected:
            lo, hi = max(self.low, ci.low), min(self.high, ci.high)
            if lo <= hi:  # empty only if the model (constant p) is wrong: keep the current
                ci = ConfidenceInterval(lo, hi)
        m = b + c
        return DiscordantSequential(
            self.outcome, b, c, discordant_log_lr(b, c, 0.5, self.prior),
            min(1.0, math.exp(-self.max_log_lr)), c / m if m else math.nan, ci, level,
            self.looks, intersected, self.prior)


@dataclass
class DifferenceWatch:
    """Feeds the mSPRT of :mod:`modelrouter.stats.always_valid` with per-pair differences."""

    horizon: int = HORIZON_PAIRS
    min_pairs: int = MIN_EVENTS
    alpha: float = 0.05  # fixes tau2 (with the horizon); any level may be read
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    tau2: float | None = None
    differences: list[float] = field(default_factory=list, repr=False)
    variances: list[float] = field(default_factory=list, repr=False)
    next_look: int = 0
    looked_at: int = 0  # pairs at the last look

    def __post_init__(self) -> None:
        for name in ("horizon", "min_pairs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise AnalysisError(f"{name} ({v!r}) must be an integer >= 2")
        if not 0.0 < self.alpha < 1.0:
            raise AnalysisError(f"alpha ({self.alpha!r}) must be in (0, 1)")
        self.next_look = max(self.next_look, self.min_pairs)

    def _variance(self) -> float:
        return self.m2 / (self.n - 1) / self.n if self.n >= 2 else math.nan

    def add(self, difference: float) -> None:
        """Count one pair's difference (shadow minus served; must be finite)."""
        if not math.isfinite(difference):
            raise AnalysisError(f"difference ({difference!r}) must be finite")
        self.n += 1
        delta = difference - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (difference - self.mean)
        if self.n < self.next_look:
            return
        variance = self._variance()
        if not (variance > 0.0 and math.isfinite(variance) and math.isfinite(self.mean)):
            return  # no spread yet (or overflow): this look carries no information
        if self.tau2 is None:
            self.tau2 = mixing_variance(horizon_variance=variance * self.n / self.horizon,
                                        alpha=self.alpha)
        self.differences.append(self.mean)
        self.variances.append(variance)
        self.looked_at = self.n
        self.next_look = _next_look(self.n)

    def result(self) -> AlwaysValidResult | None:
        """The mSPRT over the looks and now; None before a look entered (see
        :meth:`why_not`)."""
        if self.tau2 is None:
            return None
        d, v = list(self.differences), list(self.variances)
        now = self._variance()
        if self.n > self.looked_at and now > 0.0 and math.isfinite(now):
            d.append(self.mean)
            v.append(now)
        return always_valid_test(d, v, self.tau2)

    def why_not(self) -> str:
        """Why :meth:`result` is None."""
        if self.n < self.min_pairs:
            return f"{self.n} labelled pair(s); the always-valid test needs {self.min_pairs}"
        return "the per-pair differences have no spread yet (all equal)"
