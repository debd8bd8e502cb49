"""Variance reduction with pre-exposure covariates: CUPED with the pooled theta.

CUPED (Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled
Experiments by Utilizing Pre-Experiment Data", WSDM) replaces the outcome ``Y`` of a unit by
``Y - theta' (X - mean(X))`` where ``X`` holds covariates measured before exposure (so the
treatment cannot have changed them). Any fixed ``theta`` leaves the difference of means
unbiased; the variance is smallest for the regression coefficient of ``Y`` on ``X``, and the
variance of each arm's mean falls by the factor ``1 - R^2`` (``1 - rho^2`` for one covariate).

The form here is tea-tasting's (``Mean(..., covariate=...)`` and ``RatioOfMeans(...,
numer_covariate=..., denom_covariate=...)``, e10v/tea-tasting ``metrics/mean.py``), extended
from one covariate to several:

- ``theta = C_xx^-1 c_xy`` from the *pooled* sample of both arms (one coefficient for both
  arms, not one per arm), ``C`` the sample covariances of the delta-method linearised ratios
  (for a plain mean the "ratio" is the column itself);
- each arm's adjusted mean is ``r_y - theta' (r_x - r_x_pooled)`` and its variance is
  ``(V_yy - 2 theta' V_xy + theta' V_xx theta) / n`` with the arm's own covariances;
- the difference is tested with Welch's t-test (Welch-Satterthwaite df), and the relative
  lift's interval is tea-tasting's delta method on the log ratio (t quantile, Welch df of the
  log-scale variances).

Everything is a function of per-arm counts, sums and cross-products of the columns, so
:func:`cuped_from_sums` gives the array version's result from O(1) sums per arm (the store can
keep them per arm and merge them across workers). Sums lose a few digits to cancellation when
``|mean| >> sd``; keep the columns centred near zero if that is a concern.

Missing covariates (NaN): each covariate with a missing value is imputed with the mean of its
observed values (over both arms: it is pre-exposure, so the imputation does not depend on the
treatment) and a missingness indicator column is added. With the indicator in the regression
the imputed value does not matter at all (the regressors change by an invertible linear map,
which leaves the fitted adjustment unchanged), so a store may equally keep ``x * observed``
(0 for missing) and the indicator's sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from modelrouter.stats.adjusted_result import AdjustedResult, welch_result

__all__ = [
    "ArmSums",
    "cuped_from_sums",
    "cuped_mean",
    "cuped_ratio",
    "pow2_scales",
    "prepare_covariates",
    "two_arms",
]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ArmSums:
    """Sufficient statistics of one arm: ``n``, column sums and the cross-product matrix.

    Columns are in the order :func:`cuped_from_sums` is told: the outcome (numerator), then
    optionally its denominator, then the covariate columns. Two arms' sums (e.g. from two
    workers) add with ``+``."""

    n: int
    sums: tuple[float, ...]
    cross: tuple[tuple[float, ...], ...]

    @classmethod
    def from_columns(cls, columns: ArrayLike) -> ArmSums:
        """Sums of an ``(n_units, n_columns)`` array (no NaN: impute first)."""
        z = np.asarray(columns, dtype=np.float64)
        if z.ndim != 2:
            raise ValueError(f"columns must be 2-dimensional, got shape {z.shape}")
        with np.errstate(over="ignore", invalid="ignore"):  # checked in moments()
            s = z.sum(axis=0)
            q = z.T @ z
        return cls(int(z.shape[0]), tuple(float(v) for v in s),
                   tuple(tuple(float(v) for v in row) for row in q))

    def __add__(self, other: ArmSums) -> ArmSums:
        s = np.add(self.sums, other.sums)
        q = np.add(self.cross, other.cross)
        return ArmSums(self.n + other.n, tuple(float(v) for v in s),
                       tuple(tuple(float(v) for v in row) for row in q))

    def moments(self) -> tuple[int, Array, Array]:
        """``(n, means, covariance matrix with ddof=1)``."""
        if self.n < 2:
            raise ValueError(f"an arm needs at least 2 units, got {self.n}")
        s = np.asarray(self.sums, dtype=np.float64)
        q = np.asarray(self.cross, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            m = s / self.n
            cov = (q - self.n * np.outer(m, m)) / (self.n - 1)
        return _checked(self.n, m, cov)


def _checked(n: int, m: Array, cov: Array) -> tuple[int, Array, Array]:
    """Refuse moments that overflowed (values near 1e154 or beyond square to inf)."""
    if not (np.isfinite(m).all() and np.isfinite(cov).all()):
        raise ValueError("the values are too large: their squares overflow the float range "
                         "(rescale the metric or covariate, e.g. to thousands)")
    return n, m, cov


# A metric or covariate column spec: (numerator column, denominator column or None).
_Ratio = tuple[int, int | None]


def _linearise(m: Array, cov: Array, ratios: Sequence[_Ratio]) -> tuple[Array, Array]:
    """Values ``m_a / m_b`` of the ratios and the covariance of their linearisations
    (the delta method: gradient ``1/m_b`` on ``a`` and ``-m_a/m_b^2`` on ``b``)."""
    grad = np.zeros((m.size, len(ratios)))
    values = np.empty(len(ratios))
    for j, (a, b) in enumerate(ratios):
        if b is None:
            values[j] = m[a]
            grad[a, j] = 1.0
        else:
            values[j] = m[a] / m[b]
            grad[a, j] += 1.0 / m[b]
            grad[b, j] -= m[a] / (m[b] * m[b])
    return values, grad.T @ cov @ grad


def _pooled(n_c: int, m_c: Array, s_c: Array, n_t: int, m_t: Array,
            s_t: Array) -> tuple[Array, Array]:
    """Mean and ddof=1 covariance of the two arms taken together."""
    n = n_c + n_t
    d = m_c - m_t
    m = (n_c * m_c + n_t * m_t) / n
    cov = ((n_c - 1) * s_c + (n_t - 1) * s_t + np.outer(d, d) * n_c * n_t / n) / (n - 1)
    return m, cov


def _cuped_core(control: tuple[int, Array, Array], treatment: tuple[int, Array, Array],
                ratios: Sequence[_Ratio], names: tuple[str, ...],
                confidence_level: float, method: str) -> AdjustedResult:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # finite moments can still give a NaN/inf result (a denominator mean near 0): the
        # result then says so with NaN fields rather than a warning
        return _cuped_arms(control, treatment, ratios, names, confidence_level, method)


def _cuped_arms(control: tuple[int, Array, Array], treatment: tuple[int, Array, Array],
                ratios: Sequence[_Ratio], names: tuple[str, ...],
                confidence_level: float, method: str) -> AdjustedResult:
    n_c, m_c, s_c = control
    n_t, m_t, s_t = treatment
    m_p, s_p = _pooled(n_c, m_c, s_c, n_t, m_t, s_t)
    r_p, v_p = _linearise(m_p, s_p, ratios)
    k = len(ratios) - 1
    theta: Array = np.zeros(k)
    if k and not np.isfinite(v_p).all():  # e.g. a denominator whose mean is 0
        theta = np.full(k, np.nan)
    elif k:
        # lstsq: a collinear or constant covariate gets the minimum-norm coefficient (a constant
        # one: 0, as tea-tasting) instead of an error
        theta = np.asarray(np.linalg.lstsq(v_p[1:, 1:], v_p[1:, 0], rcond=None)[0],
                           dtype=np.float64)
    arms = []
    for n, m, s in ((n_c, m_c, s_c), (n_t, m_t, s_t)):
        r, v = _linearise(m, s, ratios)
        mean = float(r[0] - theta @ (r[1:] - r_p[1:]))
        var = float(v[0, 0] - 2.0 * theta @ v[1:, 0] + theta @ v[1:, 1:] @ theta)
        arms.append((n, mean, max(var, 0.0), float(v[0, 0])))
    (nc, mc, vc, uc), (nt, mt, vt, ut) = arms
    return welch_result(n_control=nc, mean_control=mc, var_control=vc, n_treatment=nt,
                        mean_treatment=mt, var_treatment=vt,
                        var_unadjusted=uc / nc + ut / nt, theta=tuple(float(x) for x in theta),
                        covariates=names, confidence_level=confidence_level, method=method)


def cuped_from_sums(control: ArmSums, treatment: ArmSums, *, n_covariates: int,
                    denominator: bool = False,
                    covariate_denominators: Sequence[bool] | None = None,
                    covariate_names: Sequence[str] | None = None,
                    confidence_level: float = 0.95) -> AdjustedResult:
    """:func:`cuped_mean` (or :func:`cuped_ratio` with ``denominator=True``) from per-arm sums.

    Column order: the outcome (numerator), its denominator when ``denominator``, then for each
    covariate its column followed by its denominator column when ``covariate_denominators[i]``.
    """
    flags = list(covariate_denominators or [False] * n_covariates)
    if len(flags) != n_covariates:
        raise ValueError(f"covariate_denominators has {len(flags)} entries, expected "
                         f"{n_covariates}")
    ratios: list[_Ratio] = [(0, 1 if denominator else None)]
    col = 2 if denominator else 1
    for has_den in flags:
        ratios.append((col, col + 1 if has_den else None))
        col += 2 if has_den else 1
    if len(control.sums) != col or len(treatment.sums) != col:
        raise ValueError(f"the sums have {len(control.sums)} and {len(treatment.sums)} columns, "
                         f"the specification needs {col}")
    names = tuple(covariate_names or (f"x{i}" for i in range(n_covariates)))
    method = _method_name(denominator, n_covariates)
    return _cuped_core(control.moments(), treatment.moments(), ratios, names,
                       confidence_level, method)


def pow2_scales(z: Array) -> Array:
    """Per-column powers of two that bring each column's largest ``|value|`` into [0.5, 1):
    multiplying by them is exact in binary floating point, so results computed on the scaled
    columns are the same numbers, but squares of values near 1e300 (or 1e-300) neither
    overflow nor underflow."""
    top = np.max(np.abs(z), axis=0) if z.shape[0] else np.ones(z.shape[1])
    _mant, exp = np.frexp(np.where(top > 0, top, 1.0))
    return np.asarray(np.ldexp(1.0, -exp), dtype=np.float64)


def _scaled_core(z: Array, t: NDArray[np.bool_], ratios: Sequence[_Ratio],
                 names: tuple[str, ...], confidence_level: float,
                 method: str) -> AdjustedResult:
    """:func:`_cuped_core` on power-of-two-scaled columns, returned in the original units."""
    scale = pow2_scales(z)
    zs = z * scale
    res = _cuped_core(_arm_moments(zs[~t]), _arm_moments(zs[t]), ratios, names,
                      confidence_level, method)

    log2 = np.rint(np.log2(scale)).astype(int)  # exact: the scales are powers of two

    def unit(ratio: _Ratio) -> int:  # original value = scaled value * 2**unit
        a, b = ratio
        return int((0 if b is None else log2[b]) - log2[a])

    uy = unit(ratios[0])
    theta = tuple(th * _pow2(uy - unit(r)) if th else 0.0
                  for th, r in zip(res.theta, ratios[1:]))
    return res.rescaled(_pow2(uy), theta)


def _pow2(k: int) -> float:
    """``2.0**k``, inf beyond the float range (instead of OverflowError)."""
    return math.inf if k > 1023 else math.ldexp(1.0, max(k, -1100))


def _method_name(ratio: bool, k: int) -> str:
    what = "ratio of means, delta method" if ratio else "mean"
    if k == 0:
        return f"Welch's t-test ({what}, unadjusted)"
    return f"CUPED, pooled theta ({what}, {k} covariate{'s' if k > 1 else ''}, Welch's t)"


def prepare_covariates(covariates: ArrayLike | None, n: int,
                       names: Sequence[str] | None = None) -> tuple[Array, tuple[str, ...]]:
    """Covariate matrix ``(n, k)`` with NaN imputed by the column's observed mean and one
    missingness indicator column (named ``"<name>:missing"``) per column with a NaN.

    A column with no observed value is dropped (its indicator would be constant). See the
    module docstring for why the imputed value does not change the estimate."""
    if covariates is None:
        return np.empty((n, 0)), ()
    x = np.asarray(covariates, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"covariates must have shape ({n},) or ({n}, k), got {x.shape}")
    labels = list(names) if names is not None else [f"x{i}" for i in range(x.shape[1])]
    if len(labels) != x.shape[1]:
        raise ValueError(f"{len(labels)} covariate names for {x.shape[1]} columns")
    if np.isinf(x).any():
        raise ValueError("covariates must be finite or NaN (missing)")
    cols: list[Array] = []
    out: list[str] = []
    extra: list[Array] = []
    extra_names: list[str] = []
    for j, label in enumerate(labels):
        col = x[:, j]
        miss = np.isnan(col)
        if miss.all():
            continue
        if miss.any():
            col = np.where(miss, float(col[~miss].mean()), col)
            extra.append(miss.astype(np.float64))
            extra_names.append(f"{label}:missing")
        cols.append(col)
        out.append(label)
    cols += extra
    out += extra_names
    mat = np.column_stack(cols) if cols else np.empty((n, 0))
    return mat, tuple(out)


def two_arms(codes: ArrayLike, control: object, treatment: object
             ) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """For three or more variants: ``(mask, indicator)`` selecting the units of ``control``
    and ``treatment`` from per-unit variant codes, and the 0/1 treatment indicator of the
    selected units. Use as ``cuped_mean(y[mask], indicator, x[mask])``: each comparison
    estimates its own theta from its two arms, as tea-tasting does."""
    c = np.asarray(codes)
    if control == treatment:
        raise ValueError(f"control ({control!r}) and treatment ({treatment!r}) must differ")
    mask = (c == control) | (c == treatment)
    return mask, (c[mask] == treatment).astype(np.int64)


def _split(values: ArrayLike, treatment: ArrayLike, what: str) -> tuple[Array, NDArray[np.bool_]]:
    y = np.asarray(values, dtype=np.float64)
    t = np.asarray(treatment)
    if y.ndim != 1 or t.shape != y.shape:
        raise ValueError(f"{what} and treatment must be 1-d arrays of the same length, got "
                         f"{y.shape} and {t.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{what} must be finite (a missing outcome is not imputed)")
    uniq = set(np.unique(t).tolist())
    if not uniq <= {0, 1} or len(uniq) != 2:
        raise ValueError(f"treatment must hold both 0 (control) and 1 (treatment), got "
                         f"{sorted(uniq)!r}")
    return y, t.astype(bool)


def _arm_moments(z: Array) -> tuple[int, Array, Array]:
    n = int(z.shape[0])
    if n < 2:
        raise ValueError(f"an arm needs at least 2 units, got {n}")
    with np.errstate(over="ignore", invalid="ignore"):
        return _checked(n, z.mean(axis=0), np.atleast_2d(np.cov(z, rowvar=False, ddof=1)))


def cuped_mean(y: ArrayLike, treatment: ArrayLike, covariates: ArrayLike | None = None, *,
          covariate_names: Sequence[str] | None = None,
          confidence_level: float = 0.95) -> AdjustedResult:
    """CUPED-adjusted difference of means (treatment minus control) from per-unit arrays.

    ``y``: outcome per unit (binary 0/1 or continuous); ``treatment``: 0/1 or bool per unit;
    ``covariates``: ``(n,)`` or ``(n, k)`` pre-exposure values, NaN for missing (see
    :func:`prepare_covariates`). Equals tea-tasting's ``Mean("y", covariate="x")`` for one
    covariate (Deng et al. 2013; pooled theta)."""
    yv, t = _split(y, treatment, "y")
    x, names = prepare_covariates(covariates, yv.size, covariate_names)
    z = np.column_stack([yv, x])
    ratios: list[_Ratio] = [(j, None) for j in range(1 + x.shape[1])]
    return _scaled_core(z, t, ratios, names, confidence_level, _method_name(False, x.shape[1]))


def cuped_ratio(numerator: ArrayLike, denominator: ArrayLike, treatment: ArrayLike,
                covariate_numerators: ArrayLike | None = None,
                covariate_denominators: ArrayLike | None = None, *,
                covariate_names: Sequence[str] | None = None,
                confidence_level: float = 0.95) -> AdjustedResult:
    """CUPED for a ratio metric ``sum(numerator) / sum(denominator)`` per arm (e.g. clicks per
    session, randomised by user) with the delta method (Deng, Knoblich & Lu 2018), each
    covariate itself a ratio of per-unit pre-period columns (``covariate_denominators`` None:
    plain per-unit covariates). Equals tea-tasting's ``RatioOfMeans(numer, denom,
    numer_covariate, denom_covariate)``. Covariates here must not be missing."""
    num, t = _split(numerator, treatment, "numerator")
    den = np.asarray(denominator, dtype=np.float64)
    if den.shape != num.shape or not np.isfinite(den).all():
        raise ValueError("denominator must be finite and have the numerator's shape")
    cols = [num, den]
    ratios: list[_Ratio] = [(0, 1)]
    k = 0
    if covariate_numerators is not None:
        xn = np.asarray(covariate_numerators, dtype=np.float64).reshape(num.size, -1)
        k = xn.shape[1]
        xd = None if covariate_denominators is None else np.asarray(
            covariate_denominators, dtype=np.float64).reshape(num.size, -1)
        if xd is not None and xd.shape != xn.shape:
            raise ValueError(f"covariate_denominators {xd.shape} must match "
                             f"covariate_numerators {xn.shape}")
        if not np.isfinite(xn).all() or (xd is not None and not np.isfinite(xd).all()):
            raise ValueError("ratio covariates must be finite (no missing values)")
        for j in range(k):
            cols.append(xn[:, j])
            if xd is None:
                ratios.append((len(cols) - 1, None))
            else:
                cols.append(xd[:, j])
                ratios.append((len(cols) - 2, len(cols) - 1))
    z = np.column_stack(cols)
    names = tuple(covariate_names or (f"x{i}" for i in range(k)))
    for arm in (z[~t], z[t]):
        if any(b is not None and not arm[:, b].any() for _a, b in ratios):
            raise ValueError(f"a denominator column sums to 0 in an arm of {arm.shape[0]} "
                             "units")
    return _scaled_core(z, t, ratios, names, confidence_level, _method_name(True, k))
