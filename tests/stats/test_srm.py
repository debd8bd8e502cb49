"""SRM chi-square test against scipy.stats.chisquare."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from modelrouter.stats import srm_test


@pytest.mark.parametrize("seed", range(8))
def test_matches_scipy_chisquare(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    w = rng.dirichlet(np.ones(k))
    obs = rng.multinomial(int(rng.integers(50, 100_000)), w)
    r = srm_test(obs, w / w.sum())
    ref = chisquare(obs, w * obs.sum())
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert r.df == k - 1


def test_expected_counts_from_bandit_epochs() -> None:
    # epoch 1: 1,000 units at 50/50; epoch 2: 2,000 units at 80/20
    expected = 1_000 * np.array([0.5, 0.5]) + 2_000 * np.array([0.8, 0.2])
    obs = np.array([2_080, 920])
    r = srm_test(obs, expected_counts=expected)
    ref = chisquare(obs, expected)
    assert r.statistic == pytest.approx(ref.statistic) and r.pvalue == pytest.approx(ref.pvalue)
    assert not r.alarm


def test_alarm_threshold_and_explain() -> None:
    r = srm_test([5_300, 4_700], [0.5, 0.5])
    assert r.pvalue < 0.001 and r.alarm and r.threshold == 0.001
    assert "SAMPLE RATIO MISMATCH" in r.explain()
    ok = srm_test([5_050, 4_950], [0.5, 0.5])
    assert not ok.alarm and "no evidence" in ok.explain()
    assert srm_test([5_050, 4_950], [0.5, 0.5], threshold=0.9).alarm
    assert ok.to_dict()["df"] == 1


def test_zero_weight_arm() -> None:
    r = srm_test([500, 500, 0], [0.5, 0.5, 0.0])
    assert r.df == 1 and r.pvalue == pytest.approx(1.0)
    bad = srm_test([500, 480, 3], [0.5, 0.5, 0.0])
    assert bad.alarm and bad.pvalue == 0.0


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (([10, -1], [0.5, 0.5]), {}, r"observed_counts must be finite and non-negative.*-1"),
    (([10, 10], [0.6, 0.6]), {}, r"expected_weights must sum to 1, got \[0.6, 0.6\]"),
    (([10, 10], [-0.5, 1.5]), {}, "expected_weights must be finite and non-negative"),
    (([10, 10, 5], [0.5, 0.5]), {}, "has 3 variants but the expectation has 2"),
    (([10],), {"expected_counts": [10]}, "at least 2 variants"),
    (([10, 10],), {"expected_counts": [5, 5]}, "must sum to the observed total 20"),
    (([10, 10],), {}, "exactly one of"),
    (([10, 10], [0.5, 0.5]), {"threshold": 2}, r"threshold \(2\) must be in"),
])
def test_bad_input(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        srm_test(*args, **kwargs)
