"""Inverse-propensity estimates from per-(epoch, arm) sums instead of per-decision arrays.

Within one weights epoch every decision on arm ``a`` had the same propensity ``p[e, a]``, so
the estimators of :mod:`modelrouter.stats.ipw` only need, per (epoch, arm): the number of
decisions ``n``, and the sums ``sx = sum x``, ``sxx = sum x^2`` of the outcome (for ratio
metrics also ``sy``, ``syy``, ``sxy`` of the per-decision denominator; ``y = 1`` otherwise).
The estimates and standard errors equal those of ``ipw_means`` / ``ipw_difference`` run on
the equivalent per-decision arrays (a test checks it to 1e-9), at O(epochs x arms) cost.

Epochs (rows) must be in time order: the stratified estimator merges consecutive epochs into
periods and AIPW's outcome model for an epoch uses only earlier epochs.

Ratio metrics (``sy`` given) use ``sum(w x) / sum(w y)`` with ``w = 1/p`` and a linearised
(delta-method) standard error; AIPW is offered for plain means only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as _st

from modelrouter.stats.ipw import METHOD_NAMES, IPWDifference, IPWEstimate, merge_periods

__all__ = ["GroupedData", "grouped_ipw_difference", "grouped_ipw_means"]

Method = Literal["hajek", "stratified", "aipw", "naive"]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class GroupedData:
    """Sums per (epoch, arm), shape ``(E, K)``; ``p`` is the propensity of arm a in epoch e."""

    n: FloatArray
    sx: FloatArray
    sxx: FloatArray
    p: FloatArray
    sy: FloatArray | None = None
    syy: FloatArray | None = None
    sxy: FloatArray | None = None

    def __post_init__(self) -> None:
        shape = self.n.shape
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 2:
            raise ValueError(f"sums must have shape (epochs, arms >= 2), got {shape}")
        for name in ("sx", "sxx", "p", "sy", "syy", "sxy"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
        used = self.n > 0
        if not np.all((self.p[used] > 0) & (self.p[used] <= 1)):
            raise ValueError("propensities of cells with decisions must lie in (0, 1]")
        if self.total <= 0:
            raise ValueError("no decisions")

    @property
    def ratio(self) -> bool:
        """Whether the outcome is a ratio (sum of x over sum of y)."""
        return self.sy is not None

    @property
    def total(self) -> float:
        """Number of decisions over all arms and epochs."""
        return float(self.n.sum())

    def y_sums(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(sy, syy, sxy), with ``y = 1`` per decision for plain means."""
        if self.sy is None or self.syy is None or self.sxy is None:
            return self.n, self.n, self.sx
        return self.sy, self.syy, self.sxy

    def inv_p(self) -> FloatArray:
        """``1 / p`` where the cell has decisions, else 0."""
        return np.where(self.n > 0, 1.0 / np.where(self.p > 0, self.p, 1.0), 0.0)


def _ratio_part(d: GroupedData, arm: int, rows: NDArray[np.bool_]) -> tuple[float, float, float]:
    """Hajek ratio R over the epochs in ``rows`` for ``arm``; sum of w^2 (x - R y)^2; sum w y."""
    sy, syy, sxy = d.y_sums()
    w = d.inv_p()[rows, arm]
    wy = float(np.dot(w, sy[rows, arm]))
    if wy <= 0:
        raise ValueError(f"arm {arm} has no decisions in some period: cannot estimate its mean")
    r = float(np.dot(w, d.sx[rows, arm])) / wy
    q = d.sxx[rows, arm] - 2.0 * r * sxy[rows, arm] + r * r * syy[rows, arm]
    return r, float(np.dot(w * w, q)), wy


def _hajek(d: GroupedData, arm: int, strata: NDArray[np.intp] | None) -> tuple[float, float]:
    """Estimate and sum of squared influences (scaled like ipw.py's) for one arm."""
    if strata is None:
        strata = np.zeros(d.n.shape[0], dtype=np.intp)
    n_all = d.n.sum(axis=1)
    big_n = d.total
    estimate, ss = 0.0, 0.0
    for s in range(int(strata.max()) + 1):
        rows = strata == s
        n_s = float(n_all[rows].sum())
        r, q, wy = _ratio_part(d, arm, rows)
        estimate += n_s / big_n * r
        ss += n_s * n_s * q / (wy * wy)
    return estimate, ss


def _naive(d: GroupedData, arm: int) -> tuple[float, float]:
    sy, syy, sxy = d.y_sums()
    total_y = float(sy[:, arm].sum())
    if d.n[:, arm].sum() <= 0 or total_y <= 0:
        raise ValueError(f"arm {arm} has no decisions: cannot estimate its mean")
    r = float(d.sx[:, arm].sum()) / total_y
    q = float((d.sxx[:, arm] - 2 * r * sxy[:, arm] + r * r * syy[:, arm]).sum())
    return r, d.total ** 2 * q / total_y ** 2


def _aipw_model(d: GroupedData, arm: int) -> FloatArray:
    """Outcome model per epoch: the arm's mean over earlier epochs, else all arms', else 0."""
    def shifted_cumsum(v: FloatArray) -> FloatArray:
        return np.concatenate([[0.0], np.cumsum(v)[:-1]])
    before, n_before = shifted_cumsum(d.sx[:, arm]), shifted_cumsum(d.n[:, arm])
    pooled, n_pooled = shifted_cumsum(d.sx.sum(axis=1)), shifted_cumsum(d.n.sum(axis=1))
    return np.where(n_before > 0, before / np.maximum(n_before, 1),
                    np.where(n_pooled > 0, pooled / np.maximum(n_pooled, 1), 0.0))


def _aipw(d: GroupedData, arm: int) -> tuple[float, float, FloatArray]:
    m = _aipw_model(d, arm)
    ip = d.inv_p()[:, arm]
    n_e = d.n.sum(axis=1)
    n_a, s_a, q_a = d.n[:, arm], d.sx[:, arm], d.sxx[:, arm]
    estimate = float(np.sum(n_e * m + ip * (s_a - n_a * m))) / d.total
    c = m - m * ip - estimate  # score of a decision on the arm is c + y / p
    ss = float(np.sum((n_e - n_a) * (m - estimate) ** 2 + n_a * c * c + 2 * c * s_a * ip
                      + q_a * ip * ip))
    return estimate, ss, m


def _check(d: GroupedData, method: str) -> None:
    if method not in METHOD_NAMES:
        names = ", ".join(map(repr, METHOD_NAMES))
        raise ValueError(f"method ({method!r}) must be one of {names}")
    if method == "aipw" and d.ratio:
        raise ValueError("method ('aipw') is offered for plain means, not ratio metrics")


def _strata(d: GroupedData, method: str, min_units: int, strata: NDArray[np.intp] | None
            ) -> NDArray[np.intp] | None:
    """The stratum of each epoch for ``"stratified"`` (given ones checked), else None."""
    if method != "stratified":
        if strata is not None:
            raise ValueError(f"strata apply to method 'stratified', not {method!r}")
        return None
    if strata is None:
        return merge_periods(d.n, min_units)
    s = np.asarray(strata)
    steps = np.diff(s)
    if (s.shape != (d.n.shape[0],) or not np.issubdtype(s.dtype, np.integer) or s[0] != 0
            or np.any((steps != 0) & (steps != 1))):
        raise ValueError(f"strata must be {d.n.shape[0]} integers 0, 0, 1, ... (one per "
                         "epoch in time order, each stratum one run of consecutive epochs)")
    return s.astype(np.intp)


def _one(d: GroupedData, arm: int, method: str, strata: NDArray[np.intp] | None
         ) -> tuple[float, float]:
    if method in ("hajek", "stratified"):
        return _hajek(d, arm, strata)
    if method == "naive":
        return _naive(d, arm)
    estimate, ss, _ = _aipw(d, arm)
    return estimate, ss


def grouped_ipw_means(d: GroupedData, *, method: Method = "hajek", min_units: int = 10,
                      strata: NDArray[np.intp] | None = None,
                      arms: Sequence[int] | None = None) -> tuple[IPWEstimate, ...]:
    """Per-arm means as :func:`~modelrouter.stats.ipw.ipw_means` would give on the decisions.

    ``strata`` (``"stratified"`` only): the stratum of each epoch (row), numbered 0.. in
    time order; default :func:`~modelrouter.stats.ipw.merge_periods` with ``min_units``.
    ``arms``: the arms to estimate (default all), e.g. the two of a comparison when another
    arm has no decisions in some stratum."""
    _check(d, method)
    strata = _strata(d, method, min_units, strata)
    out = []
    for arm in range(d.n.shape[1]) if arms is None else arms:
        estimate, ss = _one(d, arm, method, strata)
        out.append(IPWEstimate(arm, estimate, math.sqrt(max(ss, 0.0)) / d.total,
                               int(d.n[:, arm].sum()), METHOD_NAMES[method]))
    return tuple(out)


def grouped_ipw_difference(d: GroupedData, *, arm: int, control: int = 0,
                           method: Method = "hajek", min_units: int = 10,
                           strata: NDArray[np.intp] | None = None) -> IPWDifference:
    """Arm minus control as :func:`~modelrouter.stats.ipw.ipw_difference` would give
    (``strata`` as in :func:`grouped_ipw_means`)."""
    _check(d, method)
    k = d.n.shape[1]
    for name, value in (("arm", arm), ("control", control)):
        if not 0 <= value < k:
            raise ValueError(f"{name} ({value!r}) must be an arm index in [0, {k})")
    if arm == control:
        raise ValueError(f"arm ({arm!r}) and control ({control!r}) must differ")
    strata = _strata(d, method, min_units, strata)
    if method == "aipw":
        mu_t, _, m_t = _aipw(d, arm)
        mu_c, _, m_c = _aipw(d, control)
        ss = _aipw_difference_ss(d, arm, control, mu_t, mu_c, m_t, m_c)
    else:  # each decision is on one arm: the influences have disjoint supports
        mu_t, ss_t = _one(d, arm, method, strata)
        mu_c, ss_c = _one(d, control, method, strata)
        ss = ss_t + ss_c
    se = math.sqrt(max(ss, 0.0)) / d.total
    delta = mu_t - mu_c
    z = delta / se if se > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    pvalue = float(2.0 * _st.norm.sf(abs(z)))
    return IPWDifference(arm, control, delta, se, z, pvalue, mu_t, mu_c, METHOD_NAMES[method])


def _aipw_difference_ss(d: GroupedData, t: int, c: int, mu_t: float, mu_c: float,
                        m_t: FloatArray, m_c: FloatArray) -> float:
    """Sum over decisions of (score_t - mu_t - score_c + mu_c)^2, from the sums."""
    ip = d.inv_p()
    ipt, ipc = ip[:, t], ip[:, c]
    n_e = d.n.sum(axis=1)
    g = (m_t - mu_t) - (m_c - mu_c)  # decisions on other arms
    dt = m_t * (1 - ipt) - mu_t - m_c + mu_c  # on t: y / p_t + dt
    dc = m_t - mu_t - m_c * (1 - ipc) + mu_c  # on c: -y / p_c + dc
    on_t = d.n[:, t] * dt * dt + 2 * dt * d.sx[:, t] * ipt + d.sxx[:, t] * ipt * ipt
    on_c = d.n[:, c] * dc * dc - 2 * dc * d.sx[:, c] * ipc + d.sxx[:, c] * ipc * ipc
    rest = (n_e - d.n[:, t] - d.n[:, c]) * g * g
    return float(np.sum(on_t + on_c + rest))
