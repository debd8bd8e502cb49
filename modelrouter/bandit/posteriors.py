"""Conjugate reward posteriors per arm, kept as additive sufficient statistics.

Every posterior stores only counters that merge by addition (``counters()`` /
``with_counters()`` / ``merge()``), so a shared store can sum the counters of several worker
processes and rebuild the same posterior without a read-modify-write.

Thread safety: ``update`` and ``update_batch`` mutate numpy arrays in place and are not
thread-safe; callers serialise them (the router under its store lock). Reading methods
(``mean``, ``sample``, ``cdf``) never mutate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from modelrouter.exceptions import ConfigError, InvalidValueError

__all__ = [
    "POSTERIORS",
    "BetaBernoulli",
    "NormalInverseGamma",
    "Posterior",
    "RewardKind",
    "make_posterior",
]

RewardKind = Literal["binary", "continuous"]
FloatArray = NDArray[np.float64]


class Posterior(Protocol):
    """What the allocator needs from a posterior over K arms' mean rewards."""

    kind: RewardKind
    shift: float  # rewards are stored as ``reward - shift`` (0 for binary rewards)

    @property
    def n_arms(self) -> int: ...
    def update(self, arm: int, reward: float) -> None: ...
    def update_batch(self, arms: ArrayLike, rewards: ArrayLike) -> None: ...
    def mean(self) -> FloatArray: ...
    def counts(self) -> FloatArray: ...
    def sample(self, rng: np.random.Generator, size: int) -> FloatArray: ...
    def cdf(self, x: FloatArray) -> FloatArray: ...
    def location_scale(self) -> tuple[FloatArray, FloatArray]: ...
    def support(self) -> tuple[float, float]: ...
    def counters(self) -> dict[str, FloatArray]: ...
    def with_counters(self, counters: Mapping[str, ArrayLike]) -> Posterior: ...
    def copy(self) -> Posterior: ...


def _check_number(name: str, value: float, *, positive: bool = True) -> float:
    what = "a positive finite number" if positive else "a finite number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} ({value!r}) must be {what}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise ConfigError(f"{name} ({value!r}) must be {what}")
    return number


def _check_n_arms(n_arms: int) -> int:
    if isinstance(n_arms, bool) or not isinstance(n_arms, (int, np.integer)) or n_arms < 1:
        raise ConfigError(f"n_arms ({n_arms!r}) must be a positive integer")
    return int(n_arms)


def _check_arm(arm: int, n_arms: int) -> int:
    if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)) or not 0 <= arm < n_arms:
        raise InvalidValueError(f"arm ({arm!r}) must be an integer in [0, {n_arms})")
    return int(arm)


def _check_arms(arms: ArrayLike, n_arms: int) -> NDArray[np.intp]:
    array = np.asarray(arms)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise InvalidValueError(f"arms must be a 1-d integer array, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= n_arms):
        raise InvalidValueError(f"arms must lie in [0, {n_arms}), got {array.min()}..{array.max()}")
    return array.astype(np.intp, copy=False)


def _reward_array(rewards: ArrayLike) -> FloatArray:
    raw = np.asarray(rewards)
    if raw.dtype.kind not in "biuf":  # strings, objects: refuse rather than coerce "1" -> 1.0
        raise InvalidValueError(f"rewards must be numbers, got dtype {raw.dtype}")
    return raw.astype(np.float64)


def _counter(counters: Mapping[str, ArrayLike], name: str, n_arms: int) -> FloatArray:
    if name not in counters:
        raise ConfigError(f"counters lack {name!r}; got {sorted(counters)}")
    array = np.array(counters[name], dtype=np.float64)
    if array.shape != (n_arms,) or not np.all(np.isfinite(array)):
        raise ConfigError(f"counters[{name!r}] ({array!r}) must be {n_arms} finite numbers")
    return array


class BetaBernoulli:
    """Beta-Bernoulli model for binary rewards: arm k's rate ~ Beta(alpha0 + s_k, beta0 + f_k)."""

    kind: RewardKind = "binary"
    shift: float = 0.0  # rates need no centring

    def __init__(self, n_arms: int, *, alpha0: float = 1.0, beta0: float = 1.0) -> None:
        self.alpha0 = _check_number("alpha0", alpha0)
        self.beta0 = _check_number("beta0", beta0)
        k = _check_n_arms(n_arms)
        # float64 counters: exact for integers below 2**53 and directly summable across workers
        self.successes: FloatArray = np.zeros(k)
        self.failures: FloatArray = np.zeros(k)

    def __repr__(self) -> str:
        return (
            f"BetaBernoulli(n_arms={self.n_arms}, alpha0={self.alpha0}, beta0={self.beta0}, "
            f"successes={self.successes.tolist()}, failures={self.failures.tolist()})"
        )

    @property
    def n_arms(self) -> int:
        """Number of arms."""
        return int(self.successes.shape[0])

    @property
    def alpha(self) -> FloatArray:
        """Posterior alpha per arm."""
        return self.alpha0 + self.successes

    @property
    def beta(self) -> FloatArray:
        """Posterior beta per arm."""
        return self.beta0 + self.failures

    def update(self, arm: int, reward: float) -> None:
        """Add one 0/1 reward for ``arm`` in O(1)."""
        k = _check_arm(arm, self.n_arms)
        if reward == 1:
            self.successes[k] += 1.0
        elif reward == 0:
            self.failures[k] += 1.0
        else:
            raise InvalidValueError(f"reward ({reward!r}) must be 0 or 1 for a binary reward")

    def update_batch(self, arms: ArrayLike, rewards: ArrayLike) -> None:
        """Add many 0/1 rewards at once (vectorised)."""
        index = _check_arms(arms, self.n_arms)
        values = _reward_array(rewards)
        if values.shape != index.shape:
            raise InvalidValueError(f"rewards shape {values.shape} != arms shape {index.shape}")
        if not np.all((values == 0.0) | (values == 1.0)):
            bad = values[(values != 0.0) & (values != 1.0)][0]
            raise InvalidValueError(f"reward ({bad!r}) must be 0 or 1 for a binary reward")
        k = self.n_arms
        wins = np.bincount(index, weights=values, minlength=k)
        self.successes += wins
        self.failures += np.bincount(index, minlength=k) - wins

    def counts(self) -> FloatArray:
        """Number of rewards seen per arm."""
        return self.successes + self.failures

    def mean(self) -> FloatArray:
        """Posterior mean rate per arm."""
        return self.alpha / (self.alpha + self.beta)

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw a ``(size, n_arms)`` matrix of rates from the posterior."""
        return rng.beta(self.alpha, self.beta, size=(size, self.n_arms))

    def cdf(self, x: FloatArray) -> FloatArray:
        """Posterior CDF of every arm at points ``x``: shape ``(n_arms, len(x))``."""
        grid = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        cdf = special.betainc(self.alpha[:, None], self.beta[:, None], grid[None, :])
        return np.asarray(cdf, dtype=np.float64)

    def location_scale(self) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation per arm (to place quadrature grids)."""
        a, b = self.alpha, self.beta
        total = a + b
        return a / total, np.sqrt(a * b / (total * total * (total + 1.0)))

    def support(self) -> tuple[float, float]:
        """Interval holding all posterior mass."""
        return 0.0, 1.0

    def counters(self) -> dict[str, FloatArray]:
        """Additive sufficient statistics (copies): ``successes`` and ``failures`` per arm."""
        return {"successes": self.successes.copy(), "failures": self.failures.copy()}

    def with_counters(self, counters: Mapping[str, ArrayLike]) -> BetaBernoulli:
        """A posterior with this prior and the given (e.g. summed) counters."""
        new = BetaBernoulli(self.n_arms, alpha0=self.alpha0, beta0=self.beta0)
        new.successes = _counter(counters, "successes", self.n_arms)
        new.failures = _counter(counters, "failures", self.n_arms)
        if np.any(new.successes < 0) or np.any(new.failures < 0):
            raise ConfigError(f"counters must be non-negative, got {dict(counters)!r}")
        return new

    def merge(self, other: BetaBernoulli) -> BetaBernoulli:
        """Posterior from the data of both (same prior), by adding counters."""
        if (other.alpha0, other.beta0, other.n_arms) != (self.alpha0, self.beta0, self.n_arms):
            raise ConfigError(f"cannot merge {other!r} into {self!r}: priors or arms differ")
        return self.with_counters(
            {"successes": self.successes + other.successes,
             "failures": self.failures + other.failures}
        )

    def copy(self) -> BetaBernoulli:
        """An independent copy."""
        return self.with_counters(self.counters())


class NormalInverseGamma:
    """Normal model with unknown mean and variance per arm, Normal-Inverse-Gamma conjugate prior.

    Prior: ``sigma2 ~ InvGamma(alpha0, beta0)``, ``mu | sigma2 ~ N(mu0, sigma2 / kappa0)``.
    Why not a Normal with the sample variance plugged in: with a handful of rewards the sample
    variance is itself very noisy (and zero after one reward), so a plug-in posterior is far too
    confident early and Thompson sampling can lock onto an arm. Integrating the unknown variance
    out gives a Student-t marginal for each arm's mean with ``2 * alpha_n`` degrees of freedom:
    wide tails at small n, tending to the Normal as n grows, at the same O(1) update cost.

    The state is ``n``, ``sum`` and ``sumsq`` of ``reward - shift`` per arm: additive, so workers
    merge by addition. ``shift`` (default ``mu0``) should be near the typical reward, which keeps
    ``sumsq - sum**2 / n`` free of catastrophic cancellation when the mean is large against the
    spread (latencies, revenue); every worker must use the same shift.
    """

    kind: RewardKind = "continuous"

    def __init__(
        self,
        n_arms: int,
        *,
        mu0: float = 0.0,
        kappa0: float = 0.01,
        alpha0: float = 1.0,
        beta0: float = 1.0,
        shift: float | None = None,
    ) -> None:
        self.mu0 = _check_number("mu0", mu0, positive=False)
        self.kappa0 = _check_number("kappa0", kappa0)
        self.alpha0 = _check_number("alpha0", alpha0)
        self.beta0 = _check_number("beta0", beta0)
        self.shift = self.mu0 if shift is None else _check_number("shift", shift, positive=False)
        k = _check_n_arms(n_arms)
        self.n: FloatArray = np.zeros(k)
        self.sum: FloatArray = np.zeros(k)
        self.sumsq: FloatArray = np.zeros(k)

    def __repr__(self) -> str:
        return (
            f"NormalInverseGamma(n_arms={self.n_arms}, mu0={self.mu0}, kappa0={self.kappa0}, "
            f"alpha0={self.alpha0}, beta0={self.beta0}, shift={self.shift}, n={self.n.tolist()})"
        )

    @property
    def n_arms(self) -> int:
        """Number of arms."""
        return int(self.n.shape[0])

    def update(self, arm: int, reward: float) -> None:
        """Add one finite reward for ``arm`` in O(1)."""
        k = _check_arm(arm, self.n_arms)
        if isinstance(reward, bool) or not isinstance(reward, (int, float, np.number)):
            raise InvalidValueError(f"reward ({reward!r}) must be a finite number")
        value = float(reward)
        if not math.isfinite(value):
            raise InvalidValueError(f"reward ({reward!r}) must be a finite number")
        y = value - self.shift
        self.n[k] += 1.0
        self.sum[k] += y
        self.sumsq[k] += y * y

    def update_batch(self, arms: ArrayLike, rewards: ArrayLike) -> None:
        """Add many finite rewards at once (vectorised)."""
        index = _check_arms(arms, self.n_arms)
        values = _reward_array(rewards)
        if values.shape != index.shape:
            raise InvalidValueError(f"rewards shape {values.shape} != arms shape {index.shape}")
        if not np.all(np.isfinite(values)):
            bad = values[~np.isfinite(values)][0]
            raise InvalidValueError(f"reward ({bad!r}) must be a finite number")
        y = values - self.shift
        k = self.n_arms
        self.n += np.bincount(index, minlength=k)
        self.sum += np.bincount(index, weights=y, minlength=k)
        self.sumsq += np.bincount(index, weights=y * y, minlength=k)

    def _params(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Posterior (mu_n, kappa_n, alpha_n, beta_n) per arm, mu_n in reward units."""
        n = self.n
        m0 = self.mu0 - self.shift
        safe_n = np.maximum(n, 1.0)
        ybar = np.where(n > 0, self.sum / safe_n, 0.0)
        within = np.maximum(self.sumsq - self.sum * ybar, 0.0)  # sum of squared deviations
        kappa_n = self.kappa0 + n
        mu_n = (self.kappa0 * m0 + self.sum) / kappa_n
        alpha_n = self.alpha0 + 0.5 * n
        beta_n = self.beta0 + 0.5 * within + 0.5 * self.kappa0 * n * (ybar - m0) ** 2 / kappa_n
        return mu_n + self.shift, kappa_n, alpha_n, beta_n

    def marginal(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Student-t marginal of each arm's mean: (degrees of freedom, location, scale)."""
        mu_n, kappa_n, alpha_n, beta_n = self._params()
        return 2.0 * alpha_n, mu_n, np.sqrt(beta_n / (alpha_n * kappa_n))

    def counts(self) -> FloatArray:
        """Number of rewards seen per arm."""
        return np.array(self.n, dtype=np.float64)

    def mean(self) -> FloatArray:
        """Posterior mean of each arm's mean reward."""
        return self._params()[0]

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw a ``(size, n_arms)`` matrix of mean rewards from the posterior."""
        df, loc, scale = self.marginal()
        return loc + scale * rng.standard_t(df, size=(size, self.n_arms))

    def cdf(self, x: FloatArray) -> FloatArray:
        """Posterior CDF of every arm's mean at points ``x``: shape ``(n_arms, len(x))``."""
        df, loc, scale = self.marginal()
        z = (np.asarray(x, dtype=np.float64)[None, :] - loc[:, None]) / scale[:, None]
        return np.asarray(special.stdtr(df[:, None], z), dtype=np.float64)

    def location_scale(self) -> tuple[FloatArray, FloatArray]:
        """Location and scale of each arm's t marginal (to place quadrature grids)."""
        _, loc, scale = self.marginal()
        return loc, scale

    def support(self) -> tuple[float, float]:
        """Interval holding all posterior mass."""
        return -math.inf, math.inf

    def counters(self) -> dict[str, FloatArray]:
        """Additive sufficient statistics (copies): ``n``, ``sum``, ``sumsq`` of reward - shift."""
        return {"n": self.n.copy(), "sum": self.sum.copy(), "sumsq": self.sumsq.copy()}

    def _prior(self) -> dict[str, float]:
        return {"mu0": self.mu0, "kappa0": self.kappa0, "alpha0": self.alpha0,
                "beta0": self.beta0, "shift": self.shift}

    def with_counters(self, counters: Mapping[str, ArrayLike]) -> NormalInverseGamma:
        """A posterior with this prior and shift and the given (e.g. summed) counters."""
        new = NormalInverseGamma(self.n_arms, **self._prior())
        new.n = _counter(counters, "n", self.n_arms)
        new.sum = _counter(counters, "sum", self.n_arms)
        new.sumsq = _counter(counters, "sumsq", self.n_arms)
        if np.any(new.n < 0) or np.any(new.sumsq < 0):
            raise ConfigError(f"counters n and sumsq must be non-negative, got {dict(counters)!r}")
        return new

    def merge(self, other: NormalInverseGamma) -> NormalInverseGamma:
        """Posterior from the data of both (same prior and shift), by adding counters."""
        if other._prior() != self._prior() or other.n_arms != self.n_arms:
            raise ConfigError(f"cannot merge {other!r} into {self!r}: priors or arms differ")
        return self.with_counters(
            {"n": self.n + other.n, "sum": self.sum + other.sum, "sumsq": self.sumsq + other.sumsq}
        )

    def copy(self) -> NormalInverseGamma:
        """An independent copy."""
        return self.with_counters(self.counters())


POSTERIORS: dict[str, type[BetaBernoulli] | type[NormalInverseGamma]] = {
    "binary": BetaBernoulli,
    "continuous": NormalInverseGamma,
}


def make_posterior(kind: str, n_arms: int, **prior: Any) -> BetaBernoulli | NormalInverseGamma:
    """Build the posterior for a reward kind (``"binary"`` or ``"continuous"``) and its prior."""
    try:
        cls = POSTERIORS[kind]
    except (KeyError, TypeError):
        raise ConfigError(
            f"reward kind ({kind!r}) must be one of {', '.join(map(repr, POSTERIORS))}"
        ) from None
    try:
        return cls(n_arms, **prior)
    except TypeError as exc:  # unknown prior keyword
        raise ConfigError(f"prior ({prior!r}) is not valid for {kind!r} rewards: {exc}") from None
