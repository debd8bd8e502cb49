"""``compare()`` adjusted for covariates recorded per unit (issue 16), through the real router.

References (independent of modelrouter's statistics, to 1e-8): the pooled-sample OLS slope(s)
of the outcome on the covariates from statsmodels, then scipy's Welch ``ttest_ind`` on the
adjusted outcome ``y - theta'(x - mean x)`` (CUPED with the pooled theta, Deng et al. 2013);
and modelrouter's own ``cuped_mean`` on the same per-unit arrays (checked against tea-tasting
in tests/stats/test_cuped.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from modelrouter import ModelRouter, RouterConfig
from modelrouter.exceptions import (
    ConfigError,
    FeedbackError,
    InvalidValueError,
    UnitIdError,
    UnknownMetricError,
)
from modelrouter.stats.cuped import cuped_mean
from modelrouter.store.covariates import CovariateTable

TOL = 1e-8


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def _router(variants: tuple[str, ...] = ("a", "b"), kind: str = "continuous",
            covariates: tuple[str, ...] = ("pre",), clock: Clock | None = None,
            **extra: Any) -> ModelRouter:
    metrics = {"y": {"kind": kind, "covariates": list(covariates)}}
    return ModelRouter(_app, {v: i for i, v in enumerate(variants)},
                       RouterConfig(metrics=metrics, salt="cuped", **extra),
                       clock=clock or Clock())


def _reference(y: np.ndarray, t: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """statsmodels OLS theta (pooled sample), scipy Welch on the adjusted outcome."""
    x = x.reshape(y.size, -1)
    theta = sm.OLS(y, sm.add_constant(x)).fit().params[1:]
    adj = y - (x - x.mean(axis=0)) @ theta
    res = stats.ttest_ind(adj[t == 1], adj[t == 0], equal_var=False)
    ci = res.confidence_interval(0.95)
    diff = adj[t == 1].mean() - adj[t == 0].mean()
    return {"difference": diff, "statistic": float(res.statistic), "pvalue": float(res.pvalue),
            "df": float(res.df), "ci_low": float(ci.low), "ci_high": float(ci.high)}


def _drive(router: ModelRouter, n: int, seed: int, *, rho: float = 0.7, effect: float = 0.3,
           binary: bool = False, before: bool = True
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Route ``n`` users with a pre-period covariate recorded before (``before``) exposure;
    returns per-unit (variant code, y, x, ids) as the router saw them."""
    rng = np.random.default_rng(seed)
    e = router.experiment
    clock = e.clock
    assert isinstance(clock, Clock)
    codes, ys, xs, ids = [], [], [], []
    for i in range(n):
        unit = f"user-{seed}-{i}"
        x = rng.normal(5.0, 2.0)
        if before:
            router.record_covariate(unit, "pre", x)
        clock.t += 1.0
        d = e.assign(unit)
        code = e.names.index(d.variant)
        z = rho * (x - 5.0) / 2.0 + math.sqrt(1 - rho * rho) * rng.normal()
        y = z + effect * code
        if binary:
            y = float(y > 0.2)
        if not before:
            clock.t += 1.0
            router.record_covariate(unit, "pre", x)
        if y != 0.0:
            router.record_unit(unit, "y", y)
        codes.append(code), ys.append(y), xs.append(x), ids.append(unit)
    return np.array(codes), np.array(ys), np.array(xs), ids


def _check(r: Any, ref: dict[str, float]) -> None:
    ci = r.confidence_interval()
    for key, got in (("difference", r.difference), ("statistic", r.statistic),
                     ("pvalue", r.pvalue), ("df", r.df), ("ci_low", ci.low),
                     ("ci_high", ci.high)):
        assert got == pytest.approx(ref[key], rel=TOL, abs=1e-12), key


@pytest.mark.parametrize("binary", [False, True])
def test_adjusted_compare_equals_ols_theta_and_welch(binary: bool) -> None:
    router = _router(kind="binary" if binary else "continuous")
    codes, y, x, _ = _drive(router, 1200, seed=1, binary=binary)
    r = router.analysis().compare("y")
    assert r.adjusted and r.estimator.startswith("difference in means, CUPED")
    _check(r, _reference(y, codes, x))
    ours = cuped_mean(y, codes, x)
    assert r.difference == pytest.approx(ours.difference, rel=1e-12)
    assert r.std_err == pytest.approx(ours.std_err, rel=1e-12)
    assert r.variance_reduction == pytest.approx(ours.variance_reduction, rel=1e-12)
    assert r.variance_reduction > 0.2
    d = r.to_dict()
    assert d["adjusted"] is True and d["variance_reduction"] == r.variance_reduction
    # the unadjusted comparison: not adjusted, the test that fits the metric, same summaries
    u = router.analysis().compare("y", adjust=False)
    assert not u.adjusted and math.isnan(u.variance_reduction)
    assert u.control == r.control and u.treatment == r.treatment
    if not binary:
        w = stats.ttest_ind(y[codes == 1], y[codes == 0], equal_var=False)
        assert u.pvalue == pytest.approx(float(w.pvalue), rel=TOL)
    assert r.std_err < u.std_err


def test_three_variants_each_treatment_on_its_two_arms() -> None:
    router = _router(variants=("a", "b", "c"))
    codes, y, x, _ = _drive(router, 1500, seed=2)
    a = router.analysis()
    for code, v in ((1, "b"), (2, "c")):
        keep = (codes == 0) | (codes == code)
        ref = _reference(y[keep], (codes[keep] == code).astype(int), x[keep])
        _check(a.compare("y", v), ref)


def test_covariate_after_exposure_is_not_used() -> None:
    """A value recorded after the unit's first exposure is treated as missing: here the late
    values are the outcome itself (as a treatment-affected covariate could be); they never
    enter the estimate, and the note counts them."""
    clock = Clock()
    router = _router(clock=clock)
    codes, y, x, ids = _drive(router, 900, seed=3)
    late = ids[::3]  # these units get their value after exposure: a fresh router
    router2 = _router(clock=Clock())
    e2 = router2.experiment
    for i, unit in enumerate(ids):
        if i % 3:
            router2.record_covariate(unit, "pre", x[i])
        assert isinstance(e2.clock, Clock)
        e2.clock.t += 1.0
        d = e2.assign(unit)
        assert e2.names.index(d.variant) == codes[i]  # same salt: same assignment
        if y[i] != 0.0:
            router2.record_unit(unit, "y", y[i])
    for i, unit in enumerate(ids):
        if unit in late:
            e2.clock.t += 1.0
            router2.record_covariate(unit, "pre", y[i] * 100.0)  # after exposure
    r = router2.analysis().compare("y")
    assert r.adjusted
    assert any(f"{len(late):,} covariate values recorded after" in n for n in r.notes)
    xm = x.copy()
    xm[::3] = np.nan  # what the analysis must use: missing, not the late value
    miss = np.isnan(xm)
    design = np.column_stack([np.where(miss, np.nanmean(xm), xm), miss.astype(float)])
    _check(r, _reference(y, codes, design))


def test_only_late_covariates_leave_the_comparison_unadjusted() -> None:
    router = _router()
    codes, y, _x, _ = _drive(router, 300, seed=4, before=False)
    r = router.analysis().compare("y")
    assert not r.adjusted
    assert any("no usable value" in n for n in r.notes)
    assert any("300 covariate values recorded after" in n for n in r.notes)
    w = stats.ttest_ind(y[codes == 1], y[codes == 0], equal_var=False)
    assert r.pvalue == pytest.approx(float(w.pvalue), rel=TOL)


def test_missing_covariates_imputed_with_an_indicator() -> None:
    codes, y, x, ids = _drive(_router(), 1000, seed=5)  # the units, outcomes and "pre"
    rng = np.random.default_rng(9)
    other = np.full(len(ids), np.nan)
    for i in rng.choice(len(ids), 400, replace=False):
        other[i] = rng.normal()
    # a second router (same salt: same assignment) with "other" for 400 units only
    router2 = _router(covariates=("pre", "other"))
    e2 = router2.experiment
    assert isinstance(e2.clock, Clock)
    for i, unit in enumerate(ids):
        router2.record_covariate(unit, "pre", x[i])
        if not np.isnan(other[i]):
            router2.record_covariate(unit, "other", other[i])
        e2.clock.t += 1.0
        e2.assign(unit)
        if y[i] != 0.0:
            router2.record_unit(unit, "y", y[i])
    r = router2.analysis().compare("y")
    assert r.adjusted
    assert any("600 of 1,000 units lack a covariate value" in n for n in r.notes)
    miss = np.isnan(other)
    design = np.column_stack([x, np.where(miss, 0.0, other), miss.astype(float)])
    _check(r, _reference(y, codes, design))


def test_no_covariate_recorded_is_unadjusted_with_a_note() -> None:
    router = _router()
    e = router.experiment
    for i in range(50):
        e.assign(f"u{i}")
        router.record_unit(f"u{i}", "y", float(i % 7))
    r = router.analysis().compare("y")
    assert not r.adjusted and any("no usable value" in n for n in r.notes)
    assert "adjusted" not in r.summary().split("\n")[1]


def test_first_value_wins_and_pending_units_are_kept() -> None:
    router = _router()
    e = router.experiment
    router.record_covariate("early", "pre", 2.0)  # not exposed yet: pending
    router.record_covariate("early", "pre", 9.0)  # ignored: first value wins
    assert isinstance(e.clock, Clock)
    e.clock.t += 5.0
    e.assign("early")
    router.record_covariate("early", "pre", 7.0)  # ignored
    units = e.store.snapshot().units
    assert units is not None
    assert units.covariates["pre"].tolist() == [2.0]
    assert units.covariate_at["pre"][0] < units.first_seen[0]


def test_pending_map_is_bounded() -> None:
    table = CovariateTable(("pre",), max_pending=2)
    rows: dict[str, int] = {}
    table.record(rows, "u1", 0, 1.0, 0.0)
    table.record(rows, "u2", 0, 1.0, 0.0)
    table.record(rows, "u2", 0, 3.0, 0.0)  # known pending unit: no new entry
    with pytest.raises(FeedbackError, match="at most 2"):
        table.record(rows, "u3", 0, 1.0, 0.0)
    rows["u1"] = 0  # u1 exposed since: settled out of the map, room for u3
    table.record(rows, "u3", 0, 1.0, 0.0)
    assert set(table.pending) == {"u2", "u3"}
    values, _at = table.columns(1)
    assert values["pre"].tolist() == [1.0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "3", None, 1e101,
                                   1e-200, 10**400, [1.0], complex(1, 0)])
def test_hostile_values_refused(value: object) -> None:
    router = _router()
    with pytest.raises(InvalidValueError):
        router.record_covariate("u", "pre", value)
    units = router.experiment.store.snapshot().units
    assert units is not None and units.covariates["pre"].size == 0


def test_names_units_and_levels_refused() -> None:
    router = _router()
    with pytest.raises(UnknownMetricError, match="declared covariates are \\['pre'\\]"):
        router.record_covariate("u", "y", 1.0)  # a metric, not a covariate
    with pytest.raises(UnitIdError):
        router.record_covariate("", "pre", 1.0)
    with pytest.raises(UnitIdError):
        router.record_covariate("x" * 10_000, "pre", 1.0)
    req = _router(level="request")
    with pytest.raises(FeedbackError, match="unit-level"):
        req.record_covariate("u", "pre", 1.0)


@pytest.mark.parametrize("spec", [
    {"kind": "binary", "covariates": "pre"},  # a string, not a list
    {"kind": "binary", "covariates": ["pre", "pre"]},
    {"kind": "binary", "covariates": ["bad name"]},
    {"kind": "binary", "covariates": ["other"]},  # another metric's name
])
def test_covariate_declarations_validated(spec: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RouterConfig(metrics={"y": spec, "other": "continuous"})


def test_spec_round_trip_and_default() -> None:
    cfg = RouterConfig(metrics={"y": {"kind": "binary", "covariates": ["pre"]}, "z": "binary"})
    assert cfg.metrics["y"].covariates == ("pre",)
    assert cfg.metrics["y"].to_dict()["covariates"] == ["pre"]
    assert "covariates" not in cfg.metrics["z"].to_dict()


def test_snapshot_round_trip_keeps_covariates(tmp_path: Any) -> None:
    router = _router()
    _drive(router, 400, seed=6)
    router.record_covariate("never-exposed", "pre", 1.0)  # pending: not saved (no unit)
    before = router.analysis().compare("y")
    info = router.experiment.save(tmp_path / "s.snap")
    fresh = _router()
    fresh.experiment.restore(info.path)
    a, b = router.experiment.store.snapshot().units, fresh.experiment.store.snapshot().units
    assert a is not None and b is not None
    for name in ("pre",):
        np.testing.assert_array_equal(a.covariates[name], b.covariates[name])
        np.testing.assert_array_equal(a.covariate_at[name], b.covariate_at[name])
    after = fresh.analysis().compare("y")
    assert after.adjusted and after.difference == before.difference
    assert after.std_err == before.std_err


def test_file_without_covariates_restores_with_none(tmp_path: Any) -> None:
    old = ModelRouter(_app, {"a": 0, "b": 1},
                      RouterConfig(metrics={"y": "continuous"}, salt="cuped"), clock=Clock())
    for i in range(20):
        old.experiment.assign(f"u{i}")
        old.record_unit(f"u{i}", "y", float(i))
    info = old.experiment.save(tmp_path / "old.snap")
    new = _router()
    new.experiment.restore(info.path)
    units = new.experiment.store.snapshot().units
    assert units is not None and units.variant.size == 20
    assert np.isnan(units.covariates["pre"]).all() and np.isnan(units.covariate_at["pre"]).all()
    assert not new.analysis().compare("y").adjusted


def test_bandit_traffic_is_not_adjusted() -> None:
    router = _router(reward="y", mode="bandit")
    e = router.experiment
    rng = np.random.default_rng(7)
    for i in range(300):
        router.record_covariate(f"u{i}", "pre", rng.normal())
        d = e.assign(f"u{i}")
        router.record(d, "y", rng.normal())
    r = router.analysis().compare("y")
    assert not r.adjusted and any("not adjusted for covariates" in n for n in r.notes)
    assert math.isfinite(r.pvalue)


def test_relative_interval_overflow_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """An adjusted control mean near 0 overflows the log-scale interval of the relative lift
    (seen in the 1,000-run simulation): the comparison stands, the interval is NaN, a note says
    why."""
    from modelrouter.stats.adjusted_result import AdjustedResult

    def overflow(self: AdjustedResult, confidence_level: float | None = None) -> None:
        raise OverflowError("math range error")

    router = _router()
    _drive(router, 200, seed=8)
    monkeypatch.setattr(AdjustedResult, "relative_confidence_interval", overflow)
    r = router.analysis().compare("y")
    assert r.adjusted and math.isfinite(r.pvalue)
    assert math.isnan(r.relative_confidence_interval().low)
    assert any("relative lift's interval is not defined" in n for n in r.notes)


def test_analysis_document_with_covariates_is_valid_json_of_the_schema() -> None:
    """The whole analysis document (its verdict and comparisons call ``compare()``) builds with
    an adjusted primary metric, and validates against the schema with the new keys."""
    import json

    import jsonschema

    from modelrouter.analysis.document import analysis_document
    from modelrouter.analysis.jsondata import plain
    from modelrouter.analysis.schema import analysis_schema

    router = _router(primary="y")
    _drive(router, 500, seed=10)
    doc: Any = plain(analysis_document(router.analysis().data))
    json.dumps(doc, allow_nan=False)
    errors = list(jsonschema.Draft202012Validator(analysis_schema()).iter_errors(doc))
    assert not errors, [e.message[:200] for e in errors]
    cmp = doc["metrics"]["y"]["comparisons"]["b"]
    assert cmp["adjusted"] is True and 0 < cmp["variance_reduction"] < 1
    assert doc["metrics"]["latency_ms"]["comparisons"]["b"]["adjusted"] is False


def test_ratio_metric_adjusted_equals_cuped_ratio_on_the_unit_arrays() -> None:
    """``aggregate="mean"`` (per-event mean, randomised by user): the delta-method CUPED of
    ``cuped_ratio`` (checked against tea-tasting's RatioOfMeans in tests/stats) on the per-user
    sums and counts the router kept, with the user-level covariate."""
    from modelrouter.stats.cuped import cuped_ratio

    metrics = {"ms": {"kind": "continuous", "aggregate": "mean", "covariates": ["pre"]}}
    router = ModelRouter(_app, {"a": 0, "b": 1}, RouterConfig(metrics=metrics, salt="cuped"),
                         clock=Clock())
    e = router.experiment
    rng = np.random.default_rng(12)
    num, den, xs, codes = [], [], [], []
    for i in range(800):
        unit = f"u{i}"
        x = rng.gamma(2.0, 1.0)
        router.record_covariate(unit, "pre", x)
        d = e.assign(unit)
        k = int(rng.integers(1, 5))
        vals = 10.0 + 2.0 * x + rng.normal(size=k) + 0.5 * (d.variant == "b")
        for v in vals:
            router.record_unit(unit, "ms", float(v))
        num.append(float(vals.sum())), den.append(float(k)), xs.append(x)
        codes.append(int(d.variant == "b"))
    r = router.analysis().compare("ms")
    ref = cuped_ratio(np.array(num), np.array(den), np.array(codes), np.array(xs))
    assert r.adjusted and r.variance_reduction > 0.3
    assert r.difference == pytest.approx(ref.difference, rel=1e-10)
    assert r.std_err == pytest.approx(ref.std_err, rel=1e-10)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-8)


def test_segment_filter_adjusts_within_the_segment() -> None:
    """``compare(metric, segment=...)`` (what ``segments()`` and per-segment guardrails call)
    estimates theta on the segment's units only."""
    metrics = {"y": {"kind": "continuous", "covariates": ["pre"]}}
    router = ModelRouter(_app, {"a": 0, "b": 1}, RouterConfig(metrics=metrics, salt="cuped"),
                         clock=Clock(), segment_dims=("platform",))
    e = router.experiment
    rng = np.random.default_rng(13)
    rows = []
    for i in range(900):
        unit, platform = f"u{i}", ("ios", "web")[i % 2]
        x = rng.normal()
        router.record_covariate(unit, "pre", x)
        d = e.assign(unit, (platform,))
        y = (0.9 if platform == "ios" else 0.3) * x + rng.normal() + 0.2 * (d.variant == "b")
        router.record_unit(unit, "y", y)
        rows.append((platform, int(d.variant == "b"), y, x))
    a = router.analysis()
    for platform in ("ios", "web"):
        sub = [(t, y, x) for p, t, y, x in rows if p == platform]
        t, y, x = (np.array(c) for c in zip(*sub))
        _check(a.compare("y", segment={"platform": platform}), _reference(y, t, x))
