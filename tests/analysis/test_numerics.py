"""Regressions of the measured numerical failures (issue 12, part 4), end to end through the
public API: each case used to raise from ``compare()``, ``to_dict()``, ``report()`` or to answer
``GET /stats`` with a 500, or to give a NaN p-value."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest
from scipy import stats

from modelrouter import InvalidValueError, ModelRouter, RouterConfig
from modelrouter.analysis.segments import cochran_q
from modelrouter.asgi.types import Receive, Scope, Send
from modelrouter.routing.values import MAX_ABS_VALUE
from modelrouter.testing import ASGIClient

ADMIN = "admin-token-0123456789abcdef"


async def _app(scope: Scope, receive: Receive, send: Send) -> None:  # never reached
    raise AssertionError("only the HTTP surface is called")


def router(level: str = "user") -> ModelRouter:
    return ModelRouter(_app, {"control": 0, "treatment": 1},
                       RouterConfig(metrics={"revenue": "continuous"}, level=level,
                                    admin_token=ADMIN, salt="numerics"))


def get_stats(r: ModelRouter) -> tuple[int, dict]:
    response = asyncio.run(ASGIClient(r).request(
        "GET", "/_modelrouter/stats", headers={"authorization": f"Bearer {ADMIN}"}))
    return response.status, json.loads(response.body)


def split(r: ModelRouter, n: int) -> dict[str, list]:
    out: dict[str, list] = {"control": [], "treatment": []}
    for i in range(n):
        d = r.experiment.assign(f"u{i}" if r.config.level != "request" else None)
        out[d.variant].append(d)
    return out


def test_plus_minus_ten_revenue_with_a_control_mean_of_1e_4() -> None:
    r = router()
    groups = split(r, 400)
    control = groups["control"]
    values = [10.0 if j % 2 == 0 else -10.0 for j in range(len(control) - 1)]
    values.append(1e-4 * len(control) - sum(values))  # the control mean is +1e-4
    for d, v in zip(control, values):
        r.record(d, "revenue", v)
    for j, d in enumerate(groups["treatment"]):
        r.record(d, "revenue", 10.0 if j % 3 else -10.0)
    analysis = r.analysis()
    res = analysis.compare("revenue")
    assert res.control.mean == pytest.approx(1e-4, rel=1e-6)
    assert math.isnan(res.relative_lift)
    rci = res.relative_confidence_interval()
    assert math.isnan(rci.low) and math.isnan(rci.high)
    assert any(n.startswith("relative lift n/a: the control mean (0.0001)") for n in res.notes)
    assert "relative lift n/a (see the notes)" in res.summary()
    assert math.isfinite(res.pvalue)  # the test of the difference is unaffected
    c, t = np.array(values), np.array([10.0 if j % 3 else -10.0
                                       for j in range(len(groups["treatment"]))])
    assert res.pvalue == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-9)
    entry = analysis.to_dict()["metrics"]["revenue"]["comparisons"]["treatment"]
    assert entry["relative_lift"] is None and entry["notes"]  # NaN is JSON null
    assert "revenue" in analysis.report()
    status, body = get_stats(r)
    assert status == 200
    assert body["metrics"]["revenue"]["comparisons"]["treatment"]["relative_lift"] is None


def test_values_of_1e100_give_the_welch_test_of_the_rescaled_data() -> None:
    r = router()
    rng = np.random.default_rng(11)
    kept: dict[str, list[float]] = {"control": [], "treatment": []}
    for variant, decisions in split(r, 300).items():
        for d in decisions:
            v = float(rng.uniform(-1.0, 1.0)) * 1e100
            r.record(d, "revenue", v)
            kept[variant].append(v / 1e100)
    res = r.analysis().compare("revenue")
    ref = stats.ttest_ind(kept["treatment"], kept["control"], equal_var=False)
    assert res.df == pytest.approx(ref.df, rel=1e-9)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert get_stats(r)[0] == 200


def test_request_level_values_beyond_the_bound_are_refused_and_the_sums_stay_finite() -> None:
    """One value of 1e200 used to make a request-level sum of squares inf, and the p-value
    stayed NaN after the value was compensated: now it is refused before anything changes,
    and a value at the bound, compensated, leaves a finite p-value."""
    r = router("request")
    groups = split(r, 200)
    rng = np.random.default_rng(2)
    for decisions in groups.values():
        for d in decisions:
            r.record(d, "revenue", float(rng.normal(5.0, 1.0)))
    before = r.analysis().compare("revenue")
    with pytest.raises(InvalidValueError, match=r"at most 1e\+100 in magnitude.*1e\+200"):
        r.record(groups["control"][0], "revenue", 1e200)
    after = r.analysis().compare("revenue")
    assert after.pvalue == before.pvalue and after.difference == before.difference
    r.record(groups["control"][0], "revenue", MAX_ABS_VALUE)
    r.record(groups["control"][0], "revenue", -MAX_ABS_VALUE)
    res = r.analysis().compare("revenue")
    assert math.isfinite(res.pvalue) and math.isfinite(res.statistic)
    assert get_stats(r)[0] == 200


@pytest.mark.parametrize("scale", [1e-99, 1e99])
def test_the_analysis_is_scale_free_at_both_bounds(scale: float) -> None:
    """Revenue in units of 1e-99 or 1e99 (near MIN_ABS_VALUE and MAX_ABS_VALUE) gets the same
    p-values, lifts, guardrail and segment answers as the same revenue in units of 1: no square
    or ratio of a mean underflows to 0 or overflows on the way."""
    def run(factor: float) -> dict:
        r = ModelRouter(_app, {"control": 0, "treatment": 1},
                        RouterConfig(metrics={"revenue": "continuous"}, admin_token=ADMIN,
                                     salt="numerics", segments={"platform": "x-platform"},
                                     min_segment_units=5,
                                     guardrails={"revenue": {"max_decrease": 0.5,
                                                             "relative": True}}))
        rng = np.random.default_rng(4)
        for i in range(300):
            d = r.experiment.assign(f"u{i}", (("web", "ios")[i % 2],))
            lift = 1.0 if d.variant == "control" else 1.1
            r.record(d, "revenue", float(rng.uniform(1.0, 2.0)) * lift * factor)
        analysis = r.analysis()
        res = analysis.compare("revenue")
        (guard,) = [g for g in analysis.guardrails() if g.metric == "revenue"]
        seg = analysis.segments("revenue", "platform")
        assert analysis.report() and get_stats(r)[0] == 200
        rci = res.relative_confidence_interval()
        assert guard.status == "pass"
        return {"p": res.pvalue, "t": res.statistic, "df": res.df, "lift": res.relative_lift,
                "rci low": rci.low, "rci high": rci.high, "d": res.effect_size,
                "guard estimate": guard.estimate, "guard low": guard.low,
                "guard high": guard.high, "q": seg.heterogeneity.statistic,
                "segment p": [s.pvalue for s in seg]}
    ref, got = run(1.0), run(scale)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_cochran_q_is_scale_free_and_nan_without_positive_standard_errors() -> None:
    d, se = np.array([0.1, 0.3, -0.2]), np.array([0.1, 0.2, 0.15])
    w = 1.0 / se**2
    pooled = np.sum(w * d) / np.sum(w)
    q_ref = float(np.sum(w * (d - pooled) ** 2))
    for scale in (1e-100, 1.0, 1e100):
        h = cochran_q(d * scale, se * scale)
        assert h.statistic == pytest.approx(q_ref, rel=1e-12) and h.df == 2
        assert h.pvalue == pytest.approx(stats.chi2.sf(q_ref, 2), rel=1e-9)
        assert h.i2 == pytest.approx(max(0.0, (q_ref - 2) / q_ref), rel=1e-12)
    for bad in ([0.1, 0.0, 0.2], [0.1, math.inf, 0.2], [0.1, math.nan, 0.2]):
        h = cochran_q(d, bad)
        assert math.isnan(h.statistic) and math.isnan(h.pvalue) and h.df == 2
    h = cochran_q([1e100, -1e100], [1e-100, 1e-100])  # Q beyond the float range
    assert h.statistic == math.inf and h.pvalue == 0.0 and h.i2 == 1.0


def test_a_p_value_that_is_not_defined_is_nan_with_a_note() -> None:
    """A per-event (ratio) metric without events in the control: NaN p-value and lift, and a
    note naming the arm (one note: it also explains the lift)."""
    r = ModelRouter(_app, {"control": 0, "treatment": 1},
                    RouterConfig(metrics={"rate": {"kind": "continuous", "aggregate": "mean"}},
                                 admin_token=ADMIN, salt="numerics"))
    for variant, decisions in split(r, 40).items():
        for d in decisions:
            if variant == "treatment":
                r.record(d, "rate", 2.0)
    res = r.analysis().compare("rate")
    assert math.isnan(res.pvalue) and math.isnan(res.relative_lift)
    assert res.notes == ("no 'rate' events recorded in 'control' yet: the per-event mean, the "
                         "test and the relative lift are not defined (p-value NaN)",)
    status, body = get_stats(r)
    assert status == 200 and body["metrics"]["rate"]["comparisons"]["treatment"]["pvalue"] is None
