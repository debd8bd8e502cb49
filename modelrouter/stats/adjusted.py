"""Regression adjustment with treatment-by-covariate interactions (Lin 2013), robust errors.

Lin (2013, "Agnostic notes on regression adjustments to experimental data: reexamining
Freedman's critique", Annals of Applied Statistics 7(1)) fits by OLS

    y = a + tau T + b' (X - mean(X)) + g' T (X - mean(X)) + e

with ``mean(X)`` over both arms, and shows that ``tau`` is consistent for the average treatment
effect and never less precise asymptotically than the unadjusted difference, with a
heteroskedasticity-consistent (sandwich) standard error. This is equivalent to a separate
regression per arm evaluated at the pooled covariate mean, so each arm has its own slope (unlike
CUPED's pooled theta, :mod:`modelrouter.stats.cuped`).

Robust covariance (White 1980; MacKinnon & White 1985), as statsmodels'
``OLS(...).fit(cov_type=...)``: ``"HC0"`` is ``(Z'Z)^-1 Z' diag(e^2) Z (Z'Z)^-1``; ``"HC1"``
(the default here, Stata's ``robust``) multiplies it by ``n / (n - p)``, ``p`` the number of
coefficients, a small-sample correction that makes the interval slightly wider. p-values and
intervals use the normal distribution (statsmodels' default for robust covariances).

The unadjusted reference (for ``variance_reduction``) is the same regression without
covariates (``y = a + tau T + e``) with the same robust covariance. Missing covariates are
handled as in :func:`modelrouter.stats.cuped.prepare_covariates` (mean imputation and a
missingness indicator, itself interacted with the treatment).

A covariate that is constant within one arm (a missingness indicator when only the other arm
has missing values) is not interacted: it has no slope in that arm, and its interaction would be
collinear with the treatment indicator.

The exact HC variance needs fourth-order sums (``e^2`` times the covariates' cross-products),
so unlike CUPED it is computed from per-unit arrays only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from modelrouter.stats.adjusted_result import AdjustedResult, normal_result
from modelrouter.stats.cuped import pow2_scales, prepare_covariates

__all__ = ["COV_TYPES", "CovType", "lin_regression"]

CovType = Literal["HC0", "HC1"]
#: The robust covariance estimators :func:`lin_regression` offers.
COV_TYPES: tuple[CovType, ...] = ("HC0", "HC1")


def _robust_fit(z: NDArray[np.float64], y: NDArray[np.float64],
                cov_type: CovType) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """OLS coefficients and their HC0/HC1 sandwich covariance (pseudo-inverse bread, as
    statsmodels, so a rank-deficient design still gives the estimable contrasts)."""
    with np.errstate(over="ignore", invalid="ignore"):
        gram = z.T @ z
        moments = z.T @ y
        if not (np.isfinite(gram).all() and np.isfinite(moments).all()
                and np.isfinite(y @ y)):
            raise ValueError("the values are too large: their squares overflow the float "
                             "range (rescale the metric or covariate, e.g. to thousands)")
        bread = np.linalg.pinv(gram)
        beta = bread @ moments
        resid = y - z @ beta
        meat = (z * (resid * resid)[:, None]).T @ z
        cov = bread @ meat @ bread
    if cov_type == "HC1":
        n, rank = z.shape[0], int(np.linalg.matrix_rank(z))
        cov *= n / (n - rank) if n > rank else math.nan
    return beta, cov


def lin_regression(y: ArrayLike, treatment: ArrayLike, covariates: ArrayLike | None = None, *,
                   covariate_names: Sequence[str] | None = None, cov_type: CovType = "HC1",
                   confidence_level: float = 0.95) -> AdjustedResult:
    """Lin's (2013) interacted regression estimate of treatment minus control, with an
    ``cov_type`` ("HC0" or "HC1") robust standard error and a normal test.

    ``y``: outcome per unit (binary or continuous); ``treatment``: 0/1 or bool per unit;
    ``covariates``: ``(n,)`` or ``(n, k)`` pre-exposure values (NaN for missing). The adjusted
    arm means are the intercept and intercept + tau; the relative lift's interval is the delta
    method on their log ratio with the same robust covariance. ``theta`` holds the control
    arm's slopes ``b`` (the treatment arm's are ``b + g``)."""
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type ({cov_type!r}) must be one of 'HC0', 'HC1'")
    yv = np.asarray(y, dtype=np.float64)
    t_raw = np.asarray(treatment)
    if yv.ndim != 1 or t_raw.shape != yv.shape or not np.isfinite(yv).all():
        raise ValueError("y must be a finite 1-d array with treatment's shape")
    uniq = set(np.unique(t_raw).tolist())
    if not uniq <= {0, 1} or len(uniq) != 2:
        raise ValueError(f"treatment must hold both 0 (control) and 1 (treatment), got "
                         f"{sorted(uniq)!r}")
    t = t_raw.astype(np.float64)
    n_t = int(t.sum())
    n_c = yv.size - n_t
    if min(n_c, n_t) < 2:
        raise ValueError(f"each arm needs at least 2 units, got {n_c} and {n_t}")
    x, names = prepare_covariates(covariates, yv.size, covariate_names)
    # exact power-of-two scaling (see pow2_scales), undone on the result below
    scale = pow2_scales(np.column_stack([yv, x]))
    yv, x = yv * scale[0], x * scale[1:]
    xc = x - x.mean(axis=0)
    ones = np.ones_like(yv)
    # a covariate constant within one arm (e.g. a missingness indicator when only the other
    # arm has missing values) has no slope in that arm: it is not interacted (one common slope),
    # else its interaction would be collinear with T and tau not identified
    treated = t == 1.0
    varies = [bool(np.ptp(x[treated, j]) > 0 and np.ptp(x[~treated, j]) > 0)
              for j in range(x.shape[1])]
    z = np.column_stack([ones, t, xc, t[:, None] * xc[:, varies]])
    beta, cov = _robust_fit(z, yv, cov_type)
    _b0, cov0 = _robust_fit(np.column_stack([ones, t]), yv, cov_type)
    mu_c, mu_t = float(beta[0]), float(beta[0] + beta[1])
    log_se = math.nan
    if mu_c > 0 and mu_t > 0:
        grad = np.zeros(z.shape[1])
        grad[0], grad[1] = 1.0 / mu_t - 1.0 / mu_c, 1.0 / mu_t
        log_se = math.sqrt(max(float(grad @ cov @ grad), 0.0))
    k = x.shape[1]
    with np.errstate(over="ignore"):  # a coefficient beyond the float range is inf
        units = scale[1:] / scale[0]
    theta = tuple(float(v) * float(u) for v, u in zip(beta[2:2 + k], units))
    method = (f"Lin regression with interactions ({k} covariate{'s' if k != 1 else ''}, "
              f"{cov_type} robust SE, normal)" if k else
              f"difference in means ({cov_type} robust SE, normal, unadjusted)")
    return normal_result(n_control=n_c, n_treatment=n_t, mean_control=mu_c,
                         mean_treatment=mu_t, std_err=math.sqrt(max(float(cov[1, 1]), 0.0)),
                         std_err_unadjusted=math.sqrt(max(float(cov0[1, 1]), 0.0)),
                         log_std_err=log_se, theta=theta, covariates=names,
                         confidence_level=confidence_level,
                         method=method).rescaled(float(1.0 / scale[0]), theta)
