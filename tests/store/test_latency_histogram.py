"""The store's latency histogram: bucket layout, exact counts per variant in every store, and
snapshot files (round trip, version 1 files, foreign layouts)."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelrouter import Experiment, ModelRouter, RouterConfig, StoreError
from modelrouter.store.histogram import (
    EDGES_MS,
    N_BUCKETS,
    N_SLOTS,
    PER_DECADE,
    LatencyHistogram,
    slot_of,
)
from modelrouter.store.persistence import FORMAT_VERSION, MAGIC, read_info
from tests.conftest import make_app
from tests.store.conftest import RedisServer

VARIANTS = {"a": 1, "b": 2}


def reference_slot(ms: float) -> int:
    """Slot by definition: 0 for <= edge[0] (and NaN), i for (edge[i-1], edge[i]], last above."""
    if math.isnan(ms) or ms <= EDGES_MS[0]:
        return 0
    for i in range(1, N_BUCKETS + 1):
        if ms <= EDGES_MS[i]:
            return i
    return N_SLOTS - 1


def test_layout_fixed_relative_width_and_exact_decades() -> None:
    e = np.array(EDGES_MS)
    assert e[0] == 0.01 and e[-1] > 120_000.0 and e[-2] < 120_000.0 * 1.03
    np.testing.assert_allclose(e[1:] / e[:-1] - 1, 10 ** (1 / PER_DECADE) - 1, rtol=1e-9)
    assert 0.0201 < 10 ** (1 / PER_DECADE) - 1 < 0.0203
    for k in range(-2, 6):  # every power of ten is an edge, exactly as the literal
        assert EDGES_MS[(k + 2) * PER_DECADE] == float(f"1e{k}")


def test_slot_of_agrees_with_the_definition_at_and_around_every_edge() -> None:
    rng = np.random.default_rng(3)
    values = [0.0, -1.0, math.nan, math.inf, 1e12, 0.005, *(10 ** rng.uniform(-3, 6, 3000))]
    for edge in EDGES_MS:
        values += [edge, math.nextafter(edge, math.inf), math.nextafter(edge, 0.0)]
    got = [slot_of(v) for v in values]
    assert got == [reference_slot(v) for v in values]
    # the vectorised form (numpy searchsorted) agrees too
    hist = LatencyHistogram.from_values(np.zeros(len(values), dtype=np.int64),
                                        np.array(values), 1)
    assert hist.counts[0].tolist() == np.bincount(got, minlength=N_SLOTS).tolist()


@pytest.mark.parametrize("level", ["user", "request"])
def test_memory_store_counts_every_request_per_variant(level: str) -> None:
    exp = Experiment(VARIANTS, RouterConfig(level=level))
    rng = np.random.default_rng(1)
    sent: list[tuple[int, float]] = []
    for i in range(3000):
        d = exp.assign(f"u{i % 500}" if level == "user" else None)
        ms = float(rng.lognormal(3, 1.5))
        exp.store.record_auto(int(d.decision_id.split("-")[1], 16), ms, 0.0)
        sent.append((exp.names.index(d.variant), ms))
    snap = exp.store.snapshot()
    assert snap.latency is not None
    codes, ms = np.array([v for v, _ in sent]), np.array([m for _, m in sent])
    expected = np.array([np.bincount([reference_slot(m) for m in ms[codes == v]],
                                     minlength=N_SLOTS) for v in range(2)])
    assert snap.latency.counts.tolist() == expected.tolist()
    np.testing.assert_allclose(snap.latency.sum_ms, [ms[codes == v].sum() for v in range(2)],
                               rtol=1e-12)
    # the histogram and the per-unit latency columns count the same requests
    events = (np.bincount(snap.units.variant, weights=snap.units.y["latency_ms"], minlength=2)
              if snap.units is not None else
              [sum(m["latency_ms"].mean_y * n for (v, _e, _s), (n, m) in snap.groups.items()
                   if v == k) for k in range(2)])
    assert snap.latency.n.tolist() == pytest.approx(list(events))


def _router(**kw: Any) -> ModelRouter:
    return ModelRouter(make_app(), {"a": lambda x: x, "b": lambda x: 2 * x},
                       RouterConfig(experiment="hist", **kw))


def _fill(router: ModelRouter, n: int = 400) -> None:
    rng = np.random.default_rng(5)
    for i in range(n):
        d, seq = router.experiment.route(f"u{i % 90}", ())
        router.experiment.store.record_auto(seq, float(rng.lognormal(2, 1)), 0.0)


def _rewrite(path: Path, change: Any, version: int | None = None) -> None:
    """Edit a snapshot's header (and version) and re-seal it with a valid checksum."""
    data = path.read_bytes()
    magic, ver, head_len = struct.unpack_from(">8sIQ", data)
    start = struct.calcsize(">8sIQ")
    header = json.loads(data[start:start + head_len])
    change(header)
    head = json.dumps(header).encode()
    body = struct.pack(">8sIQ", magic, ver if version is None else version, len(head)) + head + \
        data[start + head_len:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_snapshot_round_trip_and_version_1_files(tmp_path: Path) -> None:
    path = tmp_path / "h.mrsnap"
    router = _router()
    _fill(router)
    router.save(str(path))
    assert path.read_bytes().startswith(MAGIC) and read_info(path).version == FORMAT_VERSION
    loaded = ModelRouter.load(str(path), make_app(), {"a": 1, "b": 2},
                              RouterConfig(experiment="hist"))
    before, after = router.experiment.store.snapshot(), loaded.experiment.store.snapshot()
    assert after.latency.counts.tolist() == before.latency.counts.tolist()
    assert after.latency.sum_ms.tolist() == before.latency.sum_ms.tolist()
    assert int(after.latency.n.sum()) == 400
    # recording continues on top of the restored histogram
    _fill(loaded, 10)
    assert int(loaded.experiment.store.snapshot().latency.n.sum()) == 410

    # a version 1 file (no histogram) still loads: the histogram starts empty
    def strip(h: dict) -> None:
        h["arrays"] = [a for a in h["arrays"] if not a[0].startswith("latency_")]
        del h["latency_layout"], h["salt_sha256"], h["control"]
    _rewrite(path, strip, version=1)
    assert read_info(path).version == 1
    old = ModelRouter.load(str(path), make_app(), {"a": 1, "b": 2},
                           RouterConfig(experiment="hist"))
    snap = old.experiment.store.snapshot()
    assert snap.latency.counts.sum() == 0 and snap.n_units == before.n_units


def test_snapshot_with_another_histogram_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.mrsnap"
    router = _router()
    _fill(router, 50)
    router.save(str(path))
    _rewrite(path, lambda h: h.update(latency_layout="log10:-2:100:700"))
    target = _router()
    with pytest.raises(StoreError, match="latency histogram has layout 'log10:-2:100:700'"):
        target.restore(str(path))
    assert target.experiment.store.snapshot().n_units == 0  # nothing changed


@pytest.mark.parametrize("level", ["user", "request"])
def test_redis_workers_merge_to_the_memory_histogram(redis_server: RedisServer,
                                                     level: str) -> None:
    pytest.importorskip("redis")
    cfg = {"experiment": f"hist-{level}", "level": level}
    workers = [Experiment(VARIANTS, RouterConfig(store=redis_server.url, **cfg))
               for _ in range(2)]
    reference = Experiment(VARIANTS, RouterConfig(**cfg))
    rng = np.random.default_rng(2)
    for i in range(1500):
        ms = float(rng.lognormal(3, 1))
        unit = f"u{i % 300}" if level == "user" else None
        for exp in (workers[i % 2], reference):
            d = exp.assign(unit)
            exp.store.record_auto(int(d.decision_id.split("-")[1], 16), ms, 0.0)
    for w in workers:
        w.flush()
    merged = workers[0].store.snapshot().latency
    ref = reference.store.snapshot().latency
    assert merged is not None and ref is not None
    if level == "user":  # units hash to the same variant in every process: identical split
        assert merged.counts.tolist() == ref.counts.tolist()
        np.testing.assert_allclose(merged.sum_ms, ref.sum_ms, rtol=1e-12)
    else:  # request level draws variants at random: the totals agree
        assert merged.counts.sum(axis=0).tolist() == ref.counts.sum(axis=0).tolist()
        assert merged.sum_ms.sum() == pytest.approx(ref.sum_ms.sum(), rel=1e-12)
    assert workers[1].store.snapshot().latency.counts.tolist() == merged.counts.tolist()
    for w in workers:
        w.close()

