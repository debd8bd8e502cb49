"""MemoryStore on its own: counts against hand-computed numbers at both levels, the pending
ring's refusals, the bucket cache, dump/load, take_deltas, and exact totals under threads."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from modelrouter import RouterConfig
from modelrouter.exceptions import StoreError, UnknownDecisionError, UnknownUnitError
from modelrouter.store.histogram import N_SLOTS, slot_of
from modelrouter.store.memory import OTHER, MemoryStore

METRICS = RouterConfig(metrics={"click": "binary", "revenue": "continuous"}).metrics
_INDEX = {m: i for i, m in enumerate(METRICS)}  # a store's metric indices: config order
CLICK, REVENUE = _INDEX["click"], _INDEX["revenue"]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Split:
    """A two-way allocation (the Chooser protocol): bucket < 0.5 is variant 0."""

    propensities = (0.5, 0.5)
    epoch = 0

    def choose(self, u: float) -> int:
        return 0 if u < 0.5 else 1


def store(**kw: Any) -> MemoryStore:
    return MemoryStore(["a", "b"], METRICS, **kw)


def test_metric_layout() -> None:
    s = store()
    assert s.metric_names == tuple(METRICS) and s.metric_index == _INDEX
    assert s.any_flags == tuple(METRICS[m].aggregate == "any" for m in METRICS)


def test_unit_level_counts() -> None:
    clock = Clock()
    s = store(clock=clock, segment_dims=("platform",))
    ios, web = s.segment_codes(["ios"]), s.segment_codes(["web"])
    assert (ios, web) == ((0,), (1,))
    s.begin_epoch(0, "ab", [0.5, 0.5])
    first = s.expose("u1", 0, 0.5, 0, ios)
    second = s.expose("u2", 1, 0.5, 0, web, now=1005.0)
    third = s.expose("u1", 1, 0.5, 0, web)  # the unit keeps its first exposure's row
    assert (first, second, third) == (0, 1, 2)
    s.record_seq(first, CLICK, 1.0)
    s.record_seq(third, CLICK, 1.0)  # "any": the flag stays 1
    s.record_seq(second, REVENUE, 3.0)
    s.record_unit("u2", REVENUE, 4.0)
    s.record_auto(first, 12.5, 0.0)
    s.record_auto(second, 7.5, 1.0)
    s.uncounted()
    snap = s.snapshot()
    u = snap.units
    assert u is not None
    assert u.variant.tolist() == [0, 1] and u.exposures.tolist() == [2, 1]
    assert u.first_seen.tolist() == [1000.0, 1005.0] and u.propensity.tolist() == [0.5, 0.5]
    assert u.segments.tolist() == [[0], [1]]
    assert u.x["click"].tolist() == [1.0, 0.0] and u.y["click"].tolist() == [2.0, 0.0]
    assert u.x["revenue"].tolist() == [0.0, 7.0] and u.y["revenue"].tolist() == [0.0, 2.0]
    assert u.x["latency_ms"].tolist() == [12.5, 7.5] and u.y["latency_ms"].tolist() == [1, 1]
    assert u.x["error"].tolist() == [0.0, 1.0]
    assert snap.requests.tolist() == [1, 2]  # requests count the variant each was routed to
    assert snap.uncounted_requests == 1
    assert snap.segment_values == {"platform": ("ios", "web")}
    assert [e.epoch for e in snap.epochs] == [0] and snap.n_units == 2
    assert snap.latency is not None
    assert snap.latency.counts[0, slot_of(12.5)] == 1 and snap.latency.counts[1].sum() == 1
    assert snap.latency.sum_ms.tolist() == [12.5, 7.5]
    assert s.has_unit("u1") and not s.has_unit("u3") and len(s) == 2
    with pytest.raises(UnknownUnitError, match="'u3'"):
        s.record_unit("u3", REVENUE, 1.0)
    assert s.stats() == {"decisions": 3, "pending_slots": 3, "units": 2, "groups": 0}


def test_request_level_group_sums() -> None:
    s = store(level="request")
    seqs = [s.expose(None, v, 0.5, 0) for v in (0, 0, 1)]
    s.record_seq(seqs[0], REVENUE, 2.0)
    s.record_seq(seqs[0], REVENUE, 4.0)  # one request, two values: x = 6, y = 2
    s.record_seq(seqs[1], REVENUE, 1.0)
    s.record_seq(seqs[2], CLICK, 1.0)
    s.record_auto(seqs[2], 10.0, 0.0)
    snap = s.snapshot()
    assert snap.units is None and snap.n_units == 3 and len(s) == 3
    n, m = snap.groups[(0, 0, ())]
    assert n == 2
    assert m["revenue"].n == 2 and m["revenue"].mean_x == 3.5 and m["revenue"].mean_y == 1.5
    assert m["revenue"].m2_x == pytest.approx(12.5)  # x = (6, 1): sum of squared deviations
    n, m = snap.groups[(1, 0, ())]
    assert n == 1 and m["click"].mean_x == 1.0 and m["latency_ms"].mean_x == 10.0
    assert not s.has_unit("anything")
    with pytest.raises(UnknownUnitError):
        s.record_unit("u1", REVENUE, 1.0)
    assert s.stats()["groups"] == 2


def test_ring_overwrite_refuses_old_decisions() -> None:
    s = store(max_pending=3)
    seqs = [s.expose(f"u{i}", 0, 0.5, 0) for i in range(5)]
    for old in seqs[:2]:
        with pytest.raises(UnknownDecisionError) as info:
            s.record_seq(old, CLICK, 1.0)
        assert info.value.args[0] == (
            f"decision {old} is unknown or no longer pending (the store keeps the last 3)")
    s.record_auto(seqs[0], 5.0, 0.0)  # evicted: silently nothing to attribute to
    s.record_seq(seqs[4], CLICK, 1.0)
    for never in (-1, 5, 99):
        with pytest.raises(UnknownDecisionError, match="unknown or no longer pending"):
            s.record_seq(never, CLICK, 1.0)
    u = s.snapshot().units
    assert u is not None and u.x["click"].tolist() == [0, 0, 0, 0, 1]
    assert u.y["latency_ms"].sum() == 0
    assert s.stats()["pending_slots"] == 3


def test_attribution_window() -> None:
    clock = Clock()
    s = store(clock=clock, attribution_window=60.0)
    seq = s.expose("u1", 0, 0.5, 0)
    clock.now += 61.0
    with pytest.raises(UnknownDecisionError) as info:
        s.record_seq(seq, REVENUE, 1.0)
    assert info.value.args[0] == f"decision {seq} is past the attribution window (60 s)"
    s.record_seq(seq, REVENUE, 1.0, window=False)  # a signed token: no window check
    s.record_unit("u1", REVENUE, 2.0)  # by unit: no window either
    u = s.snapshot().units
    assert u is not None and u.x["revenue"].tolist() == [3.0]


def test_expose_unit_caches_the_bucket() -> None:
    calls: list[str] = []

    def bucket(unit: str) -> float:
        calls.append(unit)
        return 0.25 if unit == "low" else 0.75

    s = store()
    assert s.expose_unit("low", bucket, Split(), (), 1.0) == (0, 0)
    assert s.expose_unit("high", bucket, Split(), (), 1.0) == (1, 1)
    assert s.expose_unit("low", bucket, Split(), (), 2.0) == (2, 0)
    assert calls == ["low", "high"]  # the repeat used the cached bucket
    u = s.snapshot().units
    assert u is not None and u.exposures.tolist() == [2, 1] and u.first_seen.tolist() == [1, 1]
    r = store(level="request")  # request level: every call is its own unit, never cached
    assert r.expose_unit("low", bucket, Split(), (), 1.0) == (0, 0)
    assert r.expose_unit("low", bucket, Split(), (), 1.0) == (1, 0)
    assert r.snapshot().n_units == 2 and not r.has_unit("low")


def test_segment_cap_folds_new_values_into_other() -> None:
    s = store(segment_dims=("country",), segment_cap=3)
    codes = [s.segment_codes([c])[0] for c in ("fr", "de", "it", "es", "fr")]
    assert codes == [0, 1, 2, 2, 0]
    assert s.segment_values() == (("fr", "de", OTHER),)
    assert s.snapshot().segment_overflow == 2
    with pytest.raises(ValueError, match="one value per declared dimension"):
        s.segment_codes([])


def filled(level: str = "user") -> MemoryStore:
    clock = Clock()
    s = store(level=level, clock=clock, segment_dims=("platform",))
    s.begin_epoch(0, "ab", [0.5, 0.5])
    for i in range(30):
        codes = s.segment_codes(["ios" if i % 3 else "web"])
        seq = s.expose(f"u{i % 11}" if level != "request" else None, i % 2, 0.5, 0, codes)
        s.record_seq(seq, REVENUE, float(i))
        s.record_auto(seq, 1.0 + i, float(i % 5 == 0))
        clock.now += 1.0
    s.begin_epoch(1, "ab", [0.3, 0.7])
    s.uncounted()
    return s


def same_statistics(one: MemoryStore, two: MemoryStore) -> None:
    a, b = one.snapshot(), two.snapshot()
    assert a.requests.tolist() == b.requests.tolist() and a.epochs == b.epochs
    assert a.segment_values == b.segment_values and a.uncounted_requests == b.uncounted_requests
    assert a.groups == b.groups and a.looks == b.looks
    assert a.latency is not None and b.latency is not None
    assert np.array_equal(a.latency.counts, b.latency.counts)
    if a.units is not None:
        assert b.units is not None
        for name in ("variant", "epoch", "propensity", "first_seen", "exposures", "segments"):
            assert np.array_equal(getattr(a.units, name), getattr(b.units, name)), name
        for m in a.units.x:
            assert np.array_equal(a.units.x[m], b.units.x[m])
            assert np.array_equal(a.units.y[m], b.units.y[m])


@pytest.mark.parametrize("level", ["user", "request"])
def test_dump_load_round_trip(level: str) -> None:
    source = filled(level)
    target = store(level=level, segment_dims=("platform",))
    old = target.expose("old" if level != "request" else None, 0, 0.5, 0)
    header, arrays = source.dump()
    target.load(header, arrays)
    same_statistics(source, target)
    with pytest.raises(UnknownDecisionError):  # ids issued before the load are gone ...
        target.record_seq(old, REVENUE, 1.0)
    assert target.expose("new" if level != "request" else None, 1, 0.5, 1) == old + 1  # ... and
    assert target.stats()["pending_slots"] == 2  # numbering continues past them
    if level != "request":
        target.record_unit("u3", REVENUE, 1.0)  # loaded units take feedback by id
        assert not target.has_unit("old")
    assert source.dump()[0]["requests"] == header["requests"]  # dump copied, changed nothing


@pytest.mark.parametrize("damage, message", [
    (lambda h, a: h.update(requests=[1, 2, 3]), "3 request counters for 2 variants"),
    (lambda h, a: a.update(variant=a["variant"] + 5), "variant code is out of range"),
    (lambda h, a: a.update(rows=a["rows"][::-1].copy() * 0), "unit index is inconsistent"),
    (lambda h, a: a.pop("x:revenue"), "malformed state: KeyError"),
    (lambda h, a: h.update(latency_layout="log10:0:1:2"), "latency histogram has layout"),
    (lambda h, a: a.update(seg0=a["seg0"][:3]), "column 'seg0' has shape"),
])
def test_load_is_all_or_nothing(damage: Any, message: str) -> None:
    header, arrays = filled().dump()
    damage(header, arrays)
    target = filled()
    target.record_unit("u1", REVENUE, 100.0)
    before = target.dump()
    with pytest.raises(StoreError, match=message):
        target.load(header, arrays)
    after = target.dump()
    assert after[0] == before[0]
    assert all(np.array_equal(after[1][k], before[1][k]) for k in before[1])


def test_take_deltas_zeroes_what_it_returns() -> None:
    s = store(level="request", segment_dims=("platform",))
    codes = s.segment_codes(["ios"])
    seq = s.expose(None, 1, 0.5, 0, codes)
    s.record_seq(seq, REVENUE, 2.0)
    s.record_auto(seq, 3.0, 0.0)
    s.uncounted()
    d = s.take_deltas()
    assert d.requests == [0, 1] and d.uncounted == 1 and d.segment_tables == (("ios",),)
    [(key, row)] = d.groups
    assert key == (1, 0, (0,)) and row[0] == 1.0 and row[1 + 5 * REVENUE] == 2.0
    assert sum(d.hist) == 1 and d.hist[N_SLOTS + slot_of(3.0)] == 1 and d.hist_sum == [0, 3]
    s.record_seq(seq, REVENUE, 1.0)  # later feedback on the same request: only the increment
    d = s.take_deltas()
    assert d.requests == [0, 0] and d.uncounted == 0 and sum(d.hist) == 0
    assert d.groups[0][1][0] == 0.0 and d.groups[0][1][1 + 5 * REVENUE] == 1.0


def test_threads_give_exact_totals() -> None:
    s = store(max_pending=1_000_000)
    n_threads, per_thread = 8, 2_000
    split = Split()

    def work(k: int) -> None:
        for i in range(per_thread):
            unit = f"u{(k * per_thread + i) % 500}"  # units shared between threads
            seq, _variant = s.expose_unit(unit, lambda u: (hash(u) % 100) / 100, split, (),
                                          1.0)
            s.record_seq(seq, REVENUE, 1.0, window=False)
            s.record_unit(unit, CLICK, 1.0)
            s.record_auto(seq, 2.0, 0.0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = n_threads * per_thread
    snap = s.snapshot()
    u = snap.units
    assert u is not None and u.variant.size == 500
    assert int(u.exposures.sum()) == total and int(snap.requests.sum()) == total
    assert u.x["revenue"].sum() == total and u.y["revenue"].sum() == total
    assert u.y["click"].sum() == total and u.x["click"].sum() == 500
    assert u.y["latency_ms"].sum() == total and u.x["latency_ms"].sum() == 2.0 * total
    assert snap.latency is not None and int(snap.latency.n.sum()) == total
    assert s.stats()["decisions"] == total


def test_load_refuses_duplicate_groups_and_negative_variants() -> None:
    header, arrays = filled("request").dump()
    header["group_keys"] = [header["group_keys"][0]] * len(header["group_keys"])
    target = store(level="request", segment_dims=("platform",))
    with pytest.raises(StoreError, match="duplicate group key"):
        target.load(header, arrays)
    header, arrays = filled().dump()
    arrays["variant"] = arrays["variant"] - 1
    with pytest.raises(StoreError, match="variant code is out of range"):
        store(segment_dims=("platform",)).load(header, arrays)


def test_unit_columns_grow_in_chunks_past_their_capacity() -> None:
    """Metric columns grow in chunks of zeros (UnitTable._grow): whatever the spare capacity,
    snapshots and dumps hold exactly one row per unit, with every value in its own row, also
    for units added after a load (whose columns start at the loaded length)."""
    n = 9_000  # past two chunk boundaries (4,096 and 8,192 rows)
    s = store()
    for i in range(n):
        seq = s.expose(f"u{i}", i % 2, 0.5, 0)
        s.record_seq(seq, REVENUE, float(i))
    units = s.snapshot().units
    assert units is not None and units.variant.shape == (n,)
    assert units.x["revenue"].tolist() == [float(i) for i in range(n)]
    assert units.y["revenue"].tolist() == [1.0] * n
    assert units.x["click"].shape == (n,) and not units.x["click"].any()
    header, arrays = s.dump()
    assert arrays["x:revenue"].shape == (n,) and arrays["y:click"].shape == (n,)
    target = store()
    target.load(header, arrays)
    for i in range(n, n + 5_000):  # grows again from the loaded length
        seq = target.expose(f"u{i}", 0, 0.5, 0)
        target.record_seq(seq, REVENUE, float(i))
    target.record_unit("u3", REVENUE, 10.0)
    after = target.snapshot().units
    assert after is not None and after.variant.shape == (n + 5_000,)
    expected = [float(i) for i in range(n + 5_000)]
    expected[3] += 10.0
    assert after.x["revenue"].tolist() == expected
    assert after.y["revenue"].tolist() == [1.0] * 3 + [2.0] + [1.0] * (n + 4_996)


def test_journal_folds_in_batches_and_before_every_read() -> None:
    """Automatic metrics at unit level go through the journal (store/journal.py): snapshot,
    take_deltas and dump see every finished request, whether or not a batch was folded."""
    s = store(max_pending=64)  # fold threshold: 64 // 8 = 8 entries
    seqs = [s.expose(f"u{i}", i % 2, 0.5, 0) for i in range(20)]
    for i, seq in enumerate(seqs):  # 2 folds of 8 during the loop, 4 entries left over
        s.record_auto(seq, float(i + 1), 1.0 if i % 5 == 0 else 0.0)
    u = s.snapshot().units
    assert u is not None
    assert u.x["latency_ms"].tolist() == [float(i + 1) for i in range(20)]
    assert u.y["latency_ms"].tolist() == [1.0] * 20 and u.y["error"].tolist() == [1.0] * 20
    assert u.x["error"].tolist() == [1.0 if i % 5 == 0 else 0.0 for i in range(20)]
    s.record_auto(seqs[0], 100.0, 0.0)  # one entry waiting: take_deltas folds it first
    deltas = s.take_deltas()
    assert sum(deltas.hist) == 21 and sum(deltas.hist_sum) == sum(range(1, 21)) + 100.0
    s.record_auto(seqs[1], 50.0, 0.0)  # and dump
    _header, arrays = s.dump()
    assert arrays["x:latency_ms"][:2].tolist() == [101.0, 52.0]


def test_journal_skips_a_decision_evicted_before_its_fold() -> None:
    """An entry whose decision left the pending ring before the fold is skipped, as
    record_auto skips a decision evicted before it is called (the ring keeps the last
    max_pending decisions; the threshold, max_pending // 8, keeps this to floods)."""
    s = store(max_pending=16)  # threshold 2
    first = s.expose("a", 0, 0.5, 0)
    s.record_auto(first, 5.0, 0.0)  # waits in the journal
    for i in range(16):  # a flood of decisions that never finish evicts it
        s.expose(f"flood{i}", 1, 0.5, 0)
    u = s.snapshot().units
    assert u is not None and u.y["latency_ms"].sum() == 0.0


def test_journal_exact_under_threads_with_concurrent_reads() -> None:
    """8 threads finish 40,000 requests through the journal while a reader takes snapshots,
    with the interpreter switching threads every 10 us: every latency and error is counted
    once (integer values: the float sums are exact in any order)."""
    import sys

    s = store(max_pending=1_000_000)
    seqs = [s.expose(f"u{i}", i % 2, 0.5, 0) for i in range(1_000)]
    per_thread, n_threads = 5_000, 8
    stop = threading.Event()

    def work(k: int) -> None:
        for i in range(per_thread):
            s.record_auto(seqs[(k * 7 + i) % 1_000], float(k + 1), float(i % 2))

    def read() -> None:
        while not stop.is_set():
            s.snapshot()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        reader = threading.Thread(target=read)
        reader.start()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        reader.join()
    finally:
        sys.setswitchinterval(old)
    snap = s.snapshot()
    u = snap.units
    assert u is not None and snap.latency is not None
    total = per_thread * n_threads
    assert u.y["latency_ms"].sum() == total and u.y["error"].sum() == total
    assert u.x["latency_ms"].sum() == per_thread * sum(range(1, n_threads + 1))
    assert u.x["error"].sum() == total // 2
    assert int(snap.latency.n.sum()) == total
    assert float(snap.latency.sum_ms.sum()) == per_thread * sum(range(1, n_threads + 1))
