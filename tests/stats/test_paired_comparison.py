"""``compare_shadow`` on logged pairs: each part equals the reference computed on the same pairs
(statsmodels ``mcnemar(exact=True)``, ``proportion_confint``; scipy ``ttest_rel``, ``wilcoxon``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.paired_comparison import ShadowPair, compare_shadow


def _label_pairs(n: int, seed: int) -> list[ShadowPair]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = int(rng.integers(3))
        served = y if rng.random() < 0.7 else int(rng.integers(3))
        shadow: int | None = y if rng.random() < 0.75 else int(rng.integers(3))
        if rng.random() < 0.03:
            shadow = None  # the shadow call failed
        out.append(ShadowPair(served, shadow, float(rng.lognormal(3, 0.4)),
                              float(rng.lognormal(3.1, 0.4)),
                              label=y if rng.random() < 0.6 else None))
    return out


def test_label_comparison_equals_references_on_the_logged_pairs() -> None:
    pairs = _label_pairs(800, 1)
    r = compare_shadow(pairs, shadow="candidate", kind="label")
    # errors: served never fails here; shadow errors vs served errors
    s_err = np.array([p.served is None for p in pairs])
    h_err = np.array([p.shadow is None for p in pairs])
    tab = [[int(np.sum(s_err & h_err)), int(np.sum(s_err & ~h_err))],
           [int(np.sum(~s_err & h_err)), int(np.sum(~s_err & ~h_err))]]
    assert r.errors is not None
    assert r.errors.pvalue == pytest.approx(mcnemar(tab, exact=True).pvalue)
    assert r.errors.p_shadow == pytest.approx(h_err.mean())
    # agreement on pairs where both answered
    both = [p for p in pairs if p.shadow is not None]
    same = sum(p.served == p.shadow for p in both)
    lo, hi = proportion_confint(same, len(both), method="wilson")
    assert r.agreement is not None and r.agreement.n == len(both)
    assert (r.agreement.ci.low, r.agreement.ci.high) == pytest.approx((lo, hi))
    # accuracy on labelled pairs; a failed call is wrong
    lab = [p for p in pairs if p.label is not None]
    sc = np.array([p.served == p.label for p in lab])
    hc = np.array([p.shadow is not None and p.shadow == p.label for p in lab])
    tab = [[int(np.sum(sc & hc)), int(np.sum(sc & ~hc))], [int(np.sum(~sc & hc)),
                                                           int(np.sum(~sc & ~hc))]]
    assert r.accuracy is not None
    assert r.accuracy.pvalue == pytest.approx(mcnemar(tab, exact=True).pvalue)
    assert r.accuracy.difference == pytest.approx(hc.mean() - sc.mean())
    # latency: ratios of quantiles over all pairs
    sl = np.array([p.served_latency_ms for p in pairs])
    hl = np.array([p.shadow_latency_ms for p in pairs])
    assert [x.q for x in r.latency] == [0.5, 0.95]
    assert r.latency[1].ratio == pytest.approx(np.quantile(hl, 0.95) / np.quantile(sl, 0.95))
    assert r.score_difference is None and r.loss is None
    assert set(r.missing) == {"score_difference", "loss", "loss_always_valid"}
    d = r.to_dict()
    assert d["agreement"]["n"] == len(both) and d["loss"] is None
    assert "candidate" in repr(r)


def test_score_comparison_equals_ttest_rel_and_wilcoxon() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=300)
    served = y + rng.normal(0, 0.5, 300)
    shadow = y + rng.normal(0, 0.4, 300)
    pairs = [ShadowPair(float(a), float(b), label=float(t) if i % 2 else None)
             for i, (a, b, t) in enumerate(zip(served, shadow, y, strict=True))]
    r = compare_shadow(pairs, kind="score")
    assert r.score_difference is not None
    assert r.score_difference.pvalue == pytest.approx(stats.ttest_rel(shadow, served).pvalue)
    assert r.score_quantiles[0].estimate == pytest.approx(np.median(shadow - served))
    lab = slice(1, None, 2)
    ls, lh = (served[lab] - y[lab]) ** 2, (shadow[lab] - y[lab]) ** 2
    assert r.loss is not None
    assert r.loss.pvalue == pytest.approx(stats.ttest_rel(lh, ls).pvalue)
    assert r.loss.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(lh, ls).pvalue)
    assert r.latency == () and "latency" in r.missing
    absolute = compare_shadow(pairs, kind="score", loss=lambda a, b: abs(a - b))
    assert absolute.loss is not None
    ref = stats.ttest_rel(np.abs(shadow[lab] - y[lab]), np.abs(served[lab] - y[lab]))
    assert absolute.loss.pvalue == pytest.approx(ref.pvalue)


def test_parts_without_data_say_why() -> None:
    r = compare_shadow([])
    assert r.n_pairs == 0 and r.errors is None
    assert set(r.missing) == {"errors", "agreement", "score_difference", "latency",
                              "accuracy", "loss", "accuracy_always_valid", "loss_always_valid"}
    one = compare_shadow([ShadowPair(1.0, None, label=1.0)], kind="score")
    assert one.errors is not None and one.errors.p_shadow == 1.0
    assert "need 2" in one.missing["score_difference"]


def test_bad_inputs_raise_analysis_error() -> None:
    with pytest.raises(AnalysisError, match="kind"):
        compare_shadow([], kind="scores")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="must be a number"):
        compare_shadow([ShadowPair("cat", 1.0), ShadowPair(1.0, 2.0)], kind="score")

    def broken(a: float, b: float) -> float:
        raise ZeroDivisionError("boom")

    pairs = [ShadowPair(1.0, 2.0, label=1.0), ShadowPair(2.0, 2.5, label=2.0)]
    with pytest.raises(AnalysisError, match="boom"):
        compare_shadow(pairs, kind="score", loss=broken)
    arrays = [ShadowPair(np.ones(2), np.ones(2))]
    with pytest.raises(AnalysisError, match="cannot be compared"):
        compare_shadow(arrays, kind="label")


_values = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.text(max_size=2), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_values, _values, st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(allow_nan=True, allow_infinity=True), _values),
                max_size=12),
       st.sampled_from(["label", "score"]))
def test_random_pairs_only_raise_analysis_error(rows: list[tuple[Any, ...]], kind: str) -> None:
    pairs = [ShadowPair(a, b, c, d, e) for a, b, c, d, e in rows]
    try:
        r = compare_shadow(pairs, kind=kind)  # type: ignore[arg-type]
    except AnalysisError:
        return
    d = r.to_dict()
    assert d["n_pairs"] == len(pairs)
    for part in ("errors", "agreement"):
        if d[part] is not None:
            assert all(v is None or not (isinstance(v, float) and math.isnan(v))
                       for v in d[part].values())
