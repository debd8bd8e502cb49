"""``sequential()``, recorded looks and ``always_valid()`` on a CUPED-adjusted metric (issue 16).

Cells: store memory, mode ab, 2 variants, level user, life fresh and restored from a snapshot,
input valid (the Redis store: tests/store/test_redis_cuped_looks.py).

The adjusted difference must travel with ITS standard error: before this test the two
sequential tests paired the adjusted difference with the unadjusted summaries' error (the
summaries keep the unadjusted data), so the always-valid test of an adjusted metric stopped
LATER than the unadjusted one (60 runs, continuous, rho 0.6: mean stopping 3,123 units vs
2,970; power 0.68 vs 0.62; tests/analysis/test_cuped_stopping_sim.py measures the fixed code).

References, independent of modelrouter's statistics: statsmodels' pooled OLS slope (CUPED
theta) and scipy's Welch test on the adjusted outcome give the difference and its standard
error (``diff / t``); the mSPRT p-value is Johari et al.'s normal-mixture likelihood ratio
``sqrt(V / (V + tau2)) exp(tau2 d^2 / (2 V (V + tau2)))`` written out here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from tests.analysis._cuped_sim import Clock

TOL = 1e-8


def _experiment() -> Experiment:
    metrics = {"y": {"kind": "continuous", "covariates": ["pre"]}, "y_raw": "continuous"}
    return Experiment({"a": 0, "b": 1}, RouterConfig(
        metrics=metrics, primary="y", salt="cuped-seq",
        plan={"max_units": 2000, "looks": 4}), clock=Clock())


def _drive(exp: Experiment, rng: np.random.Generator, start: int, n: int, *,
           late: bool = False) -> tuple[list[int], list[float], list[float]]:
    """``n`` more units; the covariate before exposure, or (``late``) after it and made of
    the treatment (``x + 5 * treated``)."""
    codes, ys, xs = [], [], []
    for i in range(start, start + n):
        unit = f"u{i}"
        x = float(rng.normal())
        if not late:
            exp.record_covariate(unit, "pre", x)
        code = exp.names.index(exp.assign(unit).variant)
        y = 0.7 * x + math.sqrt(1 - 0.49) * float(rng.normal()) + 0.1 * code
        exp.record_unit(unit, "y", y)
        exp.record_unit(unit, "y_raw", y)
        if late:
            exp.record_covariate(unit, "pre", x + 5.0 * code)  # changed by the treatment
        codes.append(code), ys.append(y), xs.append(x)
    return codes, ys, xs


def _reference(codes: list[int], ys: list[float], xs: list[float]) -> tuple[float, float]:
    t, y, x = np.array(codes), np.array(ys), np.array(xs)
    theta = float(sm.OLS(y, sm.add_constant(x)).fit().params[1])
    adj = y - theta * (x - x.mean())
    w = stats.ttest_ind(adj[t == 1], adj[t == 0], equal_var=False)
    diff = float(adj[t == 1].mean() - adj[t == 0].mean())
    return diff, diff / float(w.statistic)


def _msprt_p(diffs: list[float], variances: list[float], tau2: float) -> float:
    lr = [math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
          for d, v in zip(diffs, variances)]
    return min(1.0, min(1.0 / r for r in lr))


def test_sequential_looks_and_always_valid_use_the_adjusted_standard_error() -> None:
    rng = np.random.default_rng(160)
    exp = _experiment()
    codes, ys, xs = _drive(exp, rng, 0, 800)
    d1, se1 = _reference(codes, ys, xs)
    look = exp.record_look("y")
    assert look.difference == pytest.approx(d1, rel=TOL)
    assert look.variance == pytest.approx(se1**2, rel=TOL)
    more = _drive(exp, rng, 800, 700)
    codes, ys, xs = codes + more[0], ys + more[1], xs + more[2]
    d2, se2 = _reference(codes, ys, xs)
    a = Analysis.from_experiment(exp)
    cmp = a.compare("y")
    assert cmp.adjusted and cmp.std_err == pytest.approx(se2, rel=TOL)
    seq = a.sequential("y")
    assert seq.difference == pytest.approx(d2, rel=TOL)
    assert seq.std_err == pytest.approx(se2, rel=TOL)
    # the repeated interval of the current look: difference +- boundary * its (adjusted) error
    assert seq.test is not None
    ci = seq.repeated_cis[-1]
    c = float(seq.test.design.z[-1])
    assert ci.low == pytest.approx(d2 - c * se2, rel=TOL)
    assert ci.high == pytest.approx(d2 + c * se2, rel=TOL)
    av = a.always_valid("y")
    assert av.std_err == pytest.approx(se2, rel=TOL)
    assert av.pvalue == pytest.approx(_msprt_p([d1, d2], [se1**2, se2**2], av.tau2), rel=TOL)
    # the unadjusted copy of the same data: Welch's error, and a wider one
    raw = a.always_valid("y_raw")
    t = np.array(codes)
    y = np.array(ys)
    w = stats.ttest_ind(y[t == 1], y[t == 0], equal_var=False)
    se_raw = float((y[t == 1].mean() - y[t == 0].mean()) / w.statistic)
    assert raw.std_err == pytest.approx(se_raw, rel=TOL)
    assert a.sequential("y_raw").std_err == pytest.approx(se_raw, rel=TOL)
    assert se2 < 0.8 * se_raw  # rho 0.7: about sqrt(1 - 0.49) = 0.71 as wide


def test_late_covariate_made_by_the_treatment_never_enters_the_sequential_tests() -> None:
    """Covariates recorded after each unit's first exposure and shifted by the treatment
    (``x + 5 * treated``: used, they would remove the whole effect and more) are left out
    of sequential() and always_valid() too: both equal the unadjusted test of the same data,
    and the comparison's note counts the late values."""
    rng = np.random.default_rng(161)
    exp = _experiment()
    _drive(exp, rng, 0, 600, late=True)
    exp.record_look("y")
    exp.record_look("y_raw")
    _drive(exp, rng, 600, 600, late=True)
    a = Analysis.from_experiment(exp)
    cmp = a.compare("y")
    assert not cmp.adjusted
    assert any("1,200 covariate values recorded after" in n for n in cmp.notes)
    for got, want in ((a.sequential("y"), a.sequential("y_raw")),
                      (a.always_valid("y"), a.always_valid("y_raw"))):
        assert got.difference == want.difference
        assert got.std_err == want.std_err
    assert a.always_valid("y").pvalue == a.always_valid("y_raw").pvalue
    assert a.sequential("y").statistic == a.sequential("y_raw").statistic


def test_restored_experiment_keeps_the_adjusted_looks(tmp_path: Path) -> None:
    """Cell: life restored from a snapshot. The recorded looks (adjusted variance) and the
    covariates come back, and the restored experiment's next look is adjusted too."""
    rng = np.random.default_rng(162)
    exp = _experiment()
    codes, ys, xs = _drive(exp, rng, 0, 600)
    exp.record_look("y")
    more = _drive(exp, rng, 600, 300)
    a = Analysis.from_experiment(exp)
    before_av, before_seq = a.always_valid("y"), a.sequential("y")
    info = exp.save(tmp_path / "s.snap")
    fresh = _experiment()
    fresh.restore(info.path)
    b = Analysis.from_experiment(fresh)
    assert b.always_valid("y").to_dict() == before_av.to_dict()
    assert b.sequential("y").to_dict() == before_seq.to_dict()
    look = fresh.record_look("y")
    d, se = _reference(codes + more[0], ys + more[1], xs + more[2])
    assert look.number == 2
    assert look.difference == pytest.approx(d, rel=TOL)
    assert look.variance == pytest.approx(se**2, rel=TOL)
