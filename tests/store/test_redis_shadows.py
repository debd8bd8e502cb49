"""Shadows across workers (issue 15 part 3): every worker's shadow statistics add up, and a
label reaches the worker that made the decision.

References: statsmodels ``mcnemar(exact=True)`` and scipy ``ttest_rel`` on the union of the
pairs the test logged itself, never the code under test. Cells covered: memory store (merge
of published states) and Redis store; 1 and 2-3 workers (in-process routers on one Redis);
A/B; 2 variants; user level; fresh and a worker stopped (its published state still counts);
valid and hostile input (malformed published state, labels of other kinds, NaN/None labels,
a flood of forwarded labels, Redis away).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from modelrouter import ModelRouter, RouterConfig
from modelrouter.exceptions import InvalidValueError, StoreError
from modelrouter.routing import shadow_sharing
from modelrouter.store.shadow_state import (
    log_state,
    merge_snapshots,
    merge_stats,
    stats_from_dict,
    stats_to_dict,
)
from modelrouter.store.shadows import ShadowLog
from tests.store.conftest import RedisServer


def _feed_label_log(log: ShadowLog, rng: np.random.Generator, n: int, tag: str,
                    pairs: list[tuple[int, int, int]]) -> None:
    """n labelled decisions into ``log``; ``pairs`` gets (served, shadow, label) of each."""
    for i in range(n):
        did = f"{tag}-{i:x}"
        label = int(rng.integers(2))
        served = label if rng.random() < 0.8 else 1 - label
        shadow = label if rng.random() < 0.75 else 1 - label
        log.open(did, served)
        log.done(did, "cand", served, float(rng.uniform(1, 5)), shadow,
                 float(rng.uniform(1, 9)))
        log.label(did, label)
        pairs.append((served, shadow, label))


def test_merged_label_statistics_equal_statsmodels_on_the_union() -> None:
    """Two workers' logs, published as JSON and merged: the error/accuracy tables, agreement
    and McNemar's exact p equal statsmodels on all pairs together (memory cell)."""
    rng = np.random.default_rng(11)
    pairs: list[tuple[int, int, int]] = []
    a, b = ShadowLog(["cand"], "label"), ShadowLog(["cand"], "label")
    _feed_label_log(a, rng, 700, "aaaaaaaa", pairs)
    _feed_label_log(b, rng, 450, "bbbbbbbb", pairs)
    merged = merge_snapshots(a.snapshot(), [json.loads(json.dumps(log_state(b.snapshot())))])
    r = merged.comparison("cand")
    s = np.array([p[0] for p in pairs])
    h = np.array([p[1] for p in pairs])
    y = np.array([p[2] for p in pairs])
    cs, ch = s == y, h == y
    table = [[int(np.sum(cs & ch)), int(np.sum(cs & ~ch))],
             [int(np.sum(~cs & ch)), int(np.sum(~cs & ~ch))]]
    assert r.n_pairs == len(pairs) == 1150
    assert r.accuracy is not None and r.agreement is not None
    assert r.accuracy.pvalue == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert r.accuracy.p_served == pytest.approx(cs.mean()) and r.accuracy.p_shadow == \
        pytest.approx(ch.mean())
    assert (r.agreement.successes, r.agreement.n) == (int(np.sum(s == h)), 1150)
    assert merged.labels["attached"] == 1150
    assert len(merged.stats["cand"].latency_sample) == 1150  # type: ignore[arg-type]


def test_merged_score_losses_equal_ttest_rel_on_the_union() -> None:
    rng = np.random.default_rng(12)
    logs = [ShadowLog(["cand"], "score") for _ in range(3)]
    ls: list[float] = []
    lh: list[float] = []
    diffs: list[float] = []
    for k, log in enumerate(logs):
        for i in range(200 + 100 * k):
            did = f"{k:08x}-{i:x}"
            y = float(rng.normal())
            served, shadow = y + float(rng.normal(0, 1)), y + float(rng.normal(0.1, 0.9))
            log.open(did, served)
            log.done(did, "cand", served, 1.0, shadow, 2.0)
            log.label(did, y)
            ls.append((served - y) ** 2)
            lh.append((shadow - y) ** 2)
            diffs.append(shadow - served)
    states = [json.loads(json.dumps(log_state(g.snapshot()))) for g in logs[1:]]
    r = merge_snapshots(logs[0].snapshot(), states).comparison("cand")
    ref = stats.ttest_rel(lh, ls)
    assert r.loss is not None and r.score_difference is not None
    assert r.loss.t.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert r.loss.t.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.score_difference.difference == pytest.approx(np.mean(diffs), rel=1e-12)
    assert r.n_pairs == 900


def test_state_round_trip_and_hostile_states() -> None:
    log = ShadowLog(["cand"], "score")
    for i in range(5000):  # beyond the reservoir's capacity: it holds a sample
        log.open(f"00000000-{i:x}", float(i))
        log.done(f"00000000-{i:x}", "cand", float(i), 1.0, float(i) + 1, 2.0,
                 error="timeout" if i % 97 == 0 else None)
    log.drop("cand", "queue_full")
    s = log.snapshot().stats["cand"]
    back = stats_from_dict(json.loads(json.dumps(stats_to_dict(s))))
    assert stats_to_dict(back) == stats_to_dict(s)
    twice = merge_stats(s, back)
    assert twice.completed == 2 * s.completed and twice.errors["timeout"] == 2 * 52
    assert twice.scores.n == 2 * s.scores.n and twice.dropped["queue_full"] == 2
    assert len(twice.score_sample) == s.capacity  # type: ignore[arg-type]
    good = stats_to_dict(s)
    for bad in ({**good, "completed": -1}, {**good, "completed": True},
                {**good, "errors": [1]}, {k: v for k, v in good.items() if k != "scores"},
                {**good, "scores": {**good["scores"], "m2_d": "nan"}},
                {**good, "score_sample": {**good["score_sample"], "seen": 3}}):
        with pytest.raises(StoreError, match="malformed"):
            stats_from_dict(bad)
    with pytest.raises(StoreError, match="different kind"):
        merge_stats(s, ShadowLog(["cand"], "label").snapshot().stats["cand"])
    local = ShadowLog(["cand"], "score").snapshot()
    with pytest.raises(StoreError, match="another format"):
        merge_snapshots(local, [{"format": 99}])
    with pytest.raises(StoreError, match="malformed"):
        merge_snapshots(local, [{"format": 1, "labels": {"x": -2}, "stats": {}}])
    # another deployment's shadow (a name this worker has not) is left out
    other = merge_snapshots(local, [{"format": 1, "labels": {}, "stats": {"old": good}}])
    assert set(other.stats) == {"cand"}


# -- through routers on one Redis -----------------------------------------------------------
class Threshold:
    def __init__(self, cut: float) -> None:
        self.cut = cut

    def predict(self, rows: list[list[float]]) -> list[int]:
        return [int(r[0] > self.cut) for r in rows]


async def unrouted_app(scope: Any, receive: Any, send: Any) -> None:  # routed by hand
    raise AssertionError


def _worker(url: str) -> ModelRouter:
    config = RouterConfig(experiment="shadowed", salt="s", store=url, flush_seconds=0.05)
    return ModelRouter(unrouted_app, {"control": Threshold(0.5), "treatment": Threshold(0.6)},
                       config, shadows={"cand": Threshold(0.55)})


def serve(router: ModelRouter, unit: str, x: float) -> str:
    decision, _ = router.experiment.route(unit)
    assert router.shadows is not None
    decision = router.shadows.select(decision)
    decision.predict([[x]])
    return decision.decision_id


def _close(router: ModelRouter) -> None:
    """The lifespan's shutdown: shadows stopped, their state published, the final flush."""
    asyncio.run(router.lifecycle.stop())


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    assert cond()


def _settle(routers: list[ModelRouter]) -> None:
    """What the flushers do: flush, then the watchers (labels handed over, states published)."""
    for _ in range(2):
        for r in routers:
            assert r.shadows is not None
            _wait(lambda r=r: r.shadows.pending == 0)  # type: ignore[union-attr]
            r.experiment.flush()
            r.experiment.store.poll()  # type: ignore[attr-defined]
            r._shadow_sharing.sync(force=True)  # type: ignore[union-attr]


def test_two_workers_one_statistic_and_labels_from_anywhere(redis_server: RedisServer) -> None:
    """Worker A serves 300 requests, B 200; labels for all 500 are posted to the OTHER worker.
    Every worker's analysis shows the 500 pairs, 500 labels, and McNemar on the union."""
    a, b = _worker(redis_server.url), _worker(redis_server.url)
    try:
        rng = np.random.default_rng(5)
        xs = rng.uniform(0, 1, 500)
        ids = [serve(a if i < 300 else b, f"u{i}", float(x)) for i, x in enumerate(xs)]
        labels = (xs > 0.52).astype(int)
        for i, (did, y) in enumerate(zip(ids, labels, strict=True)):
            assert (b if i < 300 else a).record_label(did, int(y)) is True  # forwarded
        _settle([a, b])
        ra, rb = a.analysis().shadow("cand"), b.analysis().shadow("cand")
        for r in (ra, rb):
            assert r.n_pairs == 500
        da = a.analysis().shadow_data
        assert da is not None
        assert da.labels["attached"] == 500 and da.labels["forwarded"] == 500
        assert da.labels.get("unknown", 0) == 0
        table = da.stats["cand"].accuracy
        assert table.n == 500
        ref = mcnemar([[table.both, table.served_only], [table.shadow_only, table.neither]],
                      exact=True).pvalue
        assert ra.accuracy is not None and ra.accuracy.pvalue == pytest.approx(ref)
        assert rb.accuracy is not None and rb.accuracy.pvalue == pytest.approx(ref)
        # labels are right: the shadow (cut 0.55) vs the truth (cut 0.52), counted by hand
        truth = labels.astype(bool)
        shadow_right = (xs > 0.55) == truth
        assert table.both + table.shadow_only == int(shadow_right.sum())
    finally:
        _close(a)
        _close(b)


def test_a_stopped_workers_pairs_still_count_and_repeats_do_not(
        redis_server: RedisServer) -> None:
    a, b = _worker(redis_server.url), _worker(redis_server.url)
    try:
        for i in range(120):
            serve(a, f"a{i}", i / 120)
        for i in range(80):
            serve(b, f"b{i}", i / 80)
        _settle([a, b])
        _settle([a, b])  # publishing again replaces, never adds
        _close(a)  # stops; its published state stays
        c = _worker(redis_server.url)
        try:
            serve(c, "c0", 0.3)
            _settle([b, c])
            for r in (b, c):
                assert r.analysis().shadow("cand").n_pairs == 201
        finally:
            _close(c)
    finally:
        _close(b)


def test_hostile_labels_and_flooded_outbox(redis_server: RedisServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a = _worker(redis_server.url)
    try:
        for bad in (None, [1], {"x": 1}, float("nan")):
            with pytest.raises(InvalidValueError):
                a.record_label("0123abcd-1f", bad)
        monkeypatch.setattr(shadow_sharing, "MAX_OUTBOX", 3)
        for i in range(3):
            assert a.record_label(f"0123abcd-{i:x}", 1)
        with pytest.raises(InvalidValueError, match="waiting"):
            a.record_label("0123abcd-9", 1)
        _settle([a])  # pushed to worker 0123abcd-'s list; nobody takes it: no error here
        assert a.analysis().shadow_data.labels["forwarded"] == 3  # type: ignore[union-attr]
        # a malformed published state from "another worker" is refused by the reader
        a.experiment.store.publish_shadows("deadbeef-", "{not json")
        with pytest.raises(StoreError, match="not JSON"):
            a.analysis()
    finally:
        _close(a)


def test_redis_away_keeps_outgoing_labels(redis_server: RedisServer) -> None:
    a, b = _worker(redis_server.url), _worker(redis_server.url)
    try:
        did = serve(b, "u1", 0.9)
        assert a.record_label(did, 1)
        sharing = a._shadow_sharing
        assert sharing is not None
        redis_server.kill()
        with pytest.raises(StoreError):
            sharing.sync(force=True)
        assert len(sharing._outbox) == 1  # kept for the next try
        redis_server.start()
        a.experiment.store.flush()
        sharing.sync(force=True)
        b.experiment.store.poll()  # type: ignore[attr-defined]
        _wait(lambda: b.shadows.pending == 0)  # type: ignore[union-attr]
        b._shadow_sharing.sync(force=True)  # type: ignore[union-attr]
        assert b.shadows.log.snapshot().labels["attached"] == 1  # type: ignore[union-attr]
    finally:
        for r in (a, b):
            _close(r)


def test_merged_always_valid_watches_are_the_union_test_now() -> None:
    """The merged watches' p-values are the union's mixture likelihood ratios at the merged
    counts, computed here from their closed forms (Beta-binomial mixture for the discordant
    pairs; the normal-mixture mSPRT for the loss differences); merging with an empty worker
    keeps the whole history (memory cell, label and score kinds)."""
    from scipy.special import betaln

    rng = np.random.default_rng(21)
    a, b = ShadowLog(["cand"], "label"), ShadowLog(["cand"], "label")
    pairs: list[tuple[int, int, int]] = []
    _feed_label_log(a, rng, 400, "aaaaaaaa", pairs)
    _feed_label_log(b, rng, 300, "bbbbbbbb", pairs)
    sa, sb = a.snapshot().stats["cand"], b.snapshot().stats["cand"]
    merged = merge_stats(sa, sb).accuracy_watch
    bb = sum(1 for s, h, y in pairs if s == y and h != y)
    cc = sum(1 for s, h, y in pairs if s != y and h == y)
    prior = merged.prior
    llr = betaln(cc + prior, bb + prior) - betaln(prior, prior) - (bb + cc) * np.log(0.5)
    got = merged.result()
    assert (got.served_only, got.shadow_only) == (bb, cc)
    assert got.pvalue == pytest.approx(min(1.0, float(np.exp(-llr))), rel=1e-9)
    empty = ShadowLog(["cand"], "label").snapshot().stats["cand"]
    alone = merge_stats(sa, empty).accuracy_watch
    assert alone == sa.accuracy_watch  # the running maximum and intersection kept

    logs = [ShadowLog(["cand"], "score") for _ in range(2)]
    d: list[float] = []
    for k, log in enumerate(logs):
        for i in range(300):
            did = f"{k:08x}-{i:x}"
            y = float(rng.normal())
            served, shadow = y + float(rng.normal(0, 1)), y + float(rng.normal(0.2, 1))
            log.open(did, served)
            log.done(did, "cand", served, 1.0, shadow, 1.0)
            log.label(did, y)
            d.append((shadow - y) ** 2 - (served - y) ** 2)
    w0 = logs[0].snapshot().stats["cand"].loss_watch
    mw = merge_stats(logs[0].snapshot().stats["cand"],
                     logs[1].snapshot().stats["cand"]).loss_watch
    r = mw.result()
    assert r is not None and mw.tau2 == w0.tau2
    v = float(np.var(d, ddof=1)) / len(d)
    mean = float(np.mean(d))
    tau2 = float(w0.tau2)  # type: ignore[arg-type]
    ref = 0.5 * np.log(v / (v + tau2)) + tau2 * mean ** 2 / (2 * v * (v + tau2))
    assert r.statistic == pytest.approx(ref, rel=1e-9)
    assert r.pvalue == pytest.approx(min(1.0, float(np.exp(-ref))), rel=1e-9)
    assert merge_stats(logs[0].snapshot().stats["cand"],
                       ShadowLog(["cand"], "score").snapshot().stats["cand"]
                       ).loss_watch.result().pvalue == w0.result().pvalue  # type: ignore[union-attr]
