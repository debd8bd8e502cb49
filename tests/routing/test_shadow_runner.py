"""Shadow evaluation below ASGI: hash selection, the bounded executor, the log's statistics.

The log's statistics are checked against :func:`compare_shadow` on the same pairs, which the
test keeps itself (independent bookkeeping), and the paired tests against statsmodels' exact
McNemar and scipy's ``ttest_rel`` / ``wilcoxon`` on those pairs.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from modelrouter import RouterConfig
from modelrouter.config.shadow import ShadowConfig
from modelrouter.exceptions import AnalysisError, ConfigError
from modelrouter.routing.decision import Decision
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.shadows import ShadowedDecision, ShadowRunner
from modelrouter.stats.paired_comparison import ShadowPair, compare_shadow
from modelrouter.store.shadows import ShadowLog, scalar_output


def runner_for(shadows: dict[str, Any], *, unit_level: bool = True, kind: str = "label",
               **cfg: Any) -> ShadowRunner:
    config = ShadowConfig(shadow_kind=kind, **cfg)  # type: ignore[arg-type]
    log = ShadowLog(tuple(shadows), config.shadow_kind)
    return ShadowRunner(shadows, config, "salt", log, unit_level=unit_level)


def wait_idle(runner: ShadowRunner, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while runner.pending and time.monotonic() < end:
        time.sleep(0.002)
    assert runner.pending == 0


# -- selection -----------------------------------------------------------------------------
def test_unit_selection_is_consistent_per_user_and_near_the_share() -> None:
    """5,000 users at share 0.2: each user is shadowed on every request or never; the count
    is within a two-sided binomial test at 0.001 of 0.2 (the hash is deterministic, so this
    is one fixed draw; sd of the share 0.0057); and it is independent of the arm (the same
    check within each arm)."""
    exp = Experiment({"a": 1, "b": 2}, RouterConfig(salt="s1"))
    runner = runner_for({"c": lambda x: x}, shadow_share=0.2)
    chosen: dict[str, bool] = {}
    per_arm = {"a": [0, 0], "b": [0, 0]}
    for i in range(5000):
        picks = {runner.selected(exp.assign(f"user-{i}")) for _ in range(3)}
        assert len(picks) == 1
        chosen[f"user-{i}"] = picks.pop()
        arm = exp.assign(f"user-{i}").variant
        per_arm[arm][0] += chosen[f"user-{i}"]
        per_arm[arm][1] += 1
    k = sum(chosen.values())
    assert stats.binomtest(k, 5000, 0.2).pvalue > 0.001
    for hits, n in per_arm.values():
        assert stats.binomtest(hits, n, 0.2).pvalue > 0.001


def test_request_level_selects_by_decision() -> None:
    exp = Experiment({"a": 1, "b": 2}, RouterConfig(level="request"))
    runner = runner_for({"c": lambda x: x}, unit_level=False, shadow_share=0.3)
    k = sum(runner.selected(exp.assign(None)) for _ in range(4000))
    assert stats.binomtest(k, 4000, 0.3).pvalue > 0.001


def test_share_bounds_and_uncounted_decisions() -> None:
    d = Decision("ab-1", "a", lambda x: x, "u", 1.0, 0, "ab", 0.0)
    assert not runner_for({"c": abs}, shadow_share=0.0).selected(d)
    full = runner_for({"c": abs}, shadow_share=1.0)
    assert full.selected(d)
    assert not full.selected(d._replace(counted=False))
    shadowed = full.select(d)
    assert isinstance(shadowed, ShadowedDecision) and isinstance(shadowed, Decision)
    assert tuple(shadowed) == tuple(d) and shadowed.to_dict() == d.to_dict()


def test_config_validation() -> None:
    for bad in ({"shadow_share": 1.5}, {"shadow_share": -0.1}, {"shadow_timeout": 0},
                {"shadow_queue": 0}, {"shadow_workers": 0}, {"shadow_kind": "prob"},
                {"shadow_max_decisions": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            RouterConfig(**bad)
    assert RouterConfig().shadow_config.shadow_share == 1.0


# -- the executor -------------------------------------------------------------------------
def test_served_output_returned_at_once_and_shadow_errors_counted() -> None:
    def slow(x: float) -> float:
        time.sleep(0.2)
        return x

    def boom(x: float) -> float:
        raise RuntimeError("shadow failed")

    runner = runner_for({"slow": slow, "boom": boom})
    d = runner.select(Decision("ab-1", "a", lambda x: x + 1, "u", 1.0, 0, "ab", 0.0))
    t0 = time.perf_counter()
    assert d.predict(1.0) == 2.0
    assert time.perf_counter() - t0 < 0.05
    wait_idle(runner)
    snap = runner.log.snapshot()
    assert snap.stats["boom"].errors == {"exception": 1}
    assert snap.stats["slow"].errors == {} and snap.stats["slow"].completed == 1
    runner.shutdown()


def test_full_queue_drops_and_counts() -> None:
    gate = threading.Event()

    def blocked(x: float) -> float:
        gate.wait(5)
        return x

    runner = runner_for({"c": blocked}, shadow_queue=3, shadow_workers=1)
    for i in range(10):
        runner.select(Decision(f"ab-{i + 1:x}", "a", abs, f"u{i}", 1.0, 0, "ab", 0.0)
                      ).predict(-1.0)
    assert runner.pending == 3
    assert runner.log.snapshot().stats["c"].dropped == {"queue_full": 7}
    gate.set()
    wait_idle(runner)
    assert runner.log.snapshot().stats["c"].completed == 3
    runner.shutdown()
    runner.select(Decision("ab-99", "a", abs, "u", 1.0, 0, "ab", 0.0)).predict(1.0)
    assert runner.log.snapshot().stats["c"].dropped == {"queue_full": 7, "shut_down": 1}


def test_sync_timeout_and_async_shadow_without_a_loop() -> None:
    def slow(x: float) -> float:
        time.sleep(0.08)
        return x

    async def quick(x: float) -> float:
        return x * 2

    runner = runner_for({"slow": slow, "quick": quick}, shadow_timeout=0.04, kind="score")
    runner.select(Decision("ab-1", "a", lambda x: x, "u", 1.0, 0, "ab", 0.0)).predict(3.0)
    wait_idle(runner)
    snap = runner.log.snapshot()
    assert snap.stats["slow"].errors == {"timeout": 1}
    assert snap.stats["quick"].errors == {} and snap.stats["quick"].scores.mean_shadow == 6.0
    runner.shutdown()


def test_served_failure_is_a_served_error_and_reraised() -> None:
    def bad(x: float) -> float:
        raise ValueError("served model failed")

    runner = runner_for({"c": abs})
    with pytest.raises(ValueError, match="served model failed"):
        runner.select(Decision("ab-1", "a", bad, "u", 1.0, 0, "ab", 0.0)).predict(-2.0)
    wait_idle(runner)
    table = runner.log.snapshot().stats["c"].error_table
    assert (table.served_only, table.n) == (1, 1)
    runner.shutdown()


def test_scalar_output() -> None:
    assert scalar_output(np.array([3])) == 3 and scalar_output([1.5]) == 1.5
    assert scalar_output("x") == "x" and scalar_output([1, 2]) == [1, 2]


# -- the log vs compare_shadow on the same pairs ------------------------------------------
def feed(log: ShadowLog, pairs: list[ShadowPair]) -> None:
    for i, p in enumerate(pairs):
        did = f"00000000-{i + 1:x}"
        log.open(did, p.served)
        if i % 3 == 0 and p.label is not None:  # some labels arrive before the shadow ends
            log.label(did, p.label)
        log.done(did, "c", p.served, p.served_latency_ms, p.shadow, p.shadow_latency_ms,
                 "exception" if p.shadow is None else None)
        if i % 3 != 0 and p.label is not None:
            log.label(did, p.label)


def score_pairs(rng: np.random.Generator, n: int) -> list[ShadowPair]:
    out = []
    for i in range(n):
        y = float(rng.normal())
        served = None if i % 37 == 5 else y + float(rng.normal(0, 0.5))
        shadow = None if i % 23 == 7 else y + float(rng.normal(0.1, 0.4))
        out.append(ShadowPair(served, shadow, float(rng.gamma(2, 5)), float(rng.gamma(2, 6)),
                              y if i % 4 else None))
    return out


def test_score_statistics_equal_compare_shadow_and_scipy() -> None:
    pairs = score_pairs(np.random.default_rng(7), 400)
    log = ShadowLog(("c",), "score")
    feed(log, pairs)
    got = log.snapshot().comparison("c")
    ref = compare_shadow(pairs, shadow="c", kind="score")
    assert got.n_pairs == ref.n_pairs == 400
    assert got.errors == ref.errors
    assert got.score_quantiles == ref.score_quantiles
    assert got.latency == ref.latency
    assert got.score_difference is not None and ref.score_difference is not None
    for f in ("difference", "std_error", "pvalue", "mean_served", "mean_shadow"):
        assert getattr(got.score_difference, f) == pytest.approx(
            getattr(ref.score_difference, f), rel=1e-9)
    assert got.loss is not None and ref.loss is not None
    assert got.loss.t.pvalue == pytest.approx(ref.loss.t.pvalue, rel=1e-9)
    assert got.loss.wilcoxon_pvalue == ref.loss.wilcoxon_pvalue
    both = [p for p in pairs if p.label is not None and p.served is not None
            and p.shadow is not None]
    ls = [(p.served - p.label) ** 2 for p in both]
    lh = [(p.shadow - p.label) ** 2 for p in both]
    assert got.loss.t.pvalue == pytest.approx(stats.ttest_rel(lh, ls).pvalue, rel=1e-9)
    assert got.loss.wilcoxon_pvalue == pytest.approx(
        stats.wilcoxon(np.subtract(lh, ls)).pvalue, rel=1e-12)


def test_label_statistics_equal_compare_shadow_and_statsmodels() -> None:
    rng = np.random.default_rng(11)
    pairs = []
    for i in range(300):
        y = int(rng.integers(3))
        served = None if i % 41 == 3 else (y if rng.random() < 0.8 else int(rng.integers(3)))
        shadow = None if i % 29 == 2 else (y if rng.random() < 0.7 else int(rng.integers(3)))
        pairs.append(ShadowPair(served, shadow, 5.0 + i % 7, 6.0 + i % 5,
                                y if i % 5 else None))
    log = ShadowLog(("c",), "label")
    feed(log, pairs)
    got = log.snapshot().comparison("c")
    ref = compare_shadow(pairs, shadow="c", kind="label")
    assert (got.errors, got.agreement, got.accuracy, got.latency) == (
        ref.errors, ref.agreement, ref.accuracy, ref.latency)
    labelled = [p for p in pairs if p.label is not None]
    s_ok = [p.served is not None and p.served == p.label for p in labelled]
    h_ok = [p.shadow is not None and p.shadow == p.label for p in labelled]
    table = [[sum(a and b for a, b in zip(s_ok, h_ok)), sum(a and not b for a, b in
                                                             zip(s_ok, h_ok))],
             [sum(b and not a for a, b in zip(s_ok, h_ok)),
              sum(not a and not b for a, b in zip(s_ok, h_ok))]]
    assert got.accuracy is not None
    assert got.accuracy.pvalue == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)


def test_reservoir_keeps_memory_bounded() -> None:
    """Past ``capacity`` pairs the samples stay at capacity; the counts stay exact."""
    log = ShadowLog(("c",), "score", max_decisions=50, capacity=64)
    pairs = score_pairs(np.random.default_rng(3), 500)
    feed(log, pairs)
    s = log.snapshot().stats["c"]
    assert len(s.score_sample) == 64 and len(s.latency_sample) == 64  # type: ignore[arg-type]
    assert s.error_table.n == 500
    ref = compare_shadow(pairs, shadow="c", kind="score")
    assert s.comparison().errors == ref.errors
    assert s.scores.result().difference == pytest.approx(ref.score_difference.difference)  # type: ignore[union-attr]


def test_labels_unknown_duplicate_and_eviction() -> None:
    log = ShadowLog(("c",), "label", max_decisions=2)
    for i in (1, 2, 3):
        log.open(f"00000000-{i}", 1)
    assert not log.label("00000000-1", 1)  # evicted
    assert log.label("00000000-3", 1) and not log.label("00000000-3", 0)
    assert not log.label("ffffffff-9", 1)
    assert log.snapshot().labels == {"unknown": 2, "attached": 1, "duplicate": 1}
    with pytest.raises(AnalysisError):
        log.label("00000000-2", None)
    score = ShadowLog(("c",), "score")
    with pytest.raises(AnalysisError, match="finite"):
        score.label("00000000-2", math.nan)


def test_unknown_shadow_names_the_known_ones() -> None:
    log = ShadowLog(("cand", "other"), "label")
    with pytest.raises(AnalysisError, match=r"\['cand', 'other'\]"):
        log.snapshot().comparison("nope")
