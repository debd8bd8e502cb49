"""Snapshot files: round trip through a new router, refusal of bad files, crash safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig, StoreError
from modelrouter.store.memory import MemoryStore
from modelrouter.store.persistence import MAGIC, read_info
from modelrouter.testing import ASGIClient
from tests.conftest import make_app

VARIANTS = {"a": lambda x: x, "b": lambda x: 2 * x}


def cfg(**kw: Any) -> RouterConfig:
    return RouterConfig(experiment="snap", metrics={"click": "binary", "revenue": "continuous"},
                        segments={"platform": "x-platform"}, **kw)


def fill(router: ModelRouter, n: int = 300) -> None:
    client = ASGIClient(router)
    for i in range(n):
        r = client.run("GET", "/predict", headers={"x-user-id": f"u{i % 120}",
                                                   "x-platform": ["ios", "web"][i % 2]})
        decision = r.json()["decision_id"]
        router.record(decision, "click", i % 3 == 0)
        if i % 4 == 0 and router.config.level == "request":
            router.record(decision, "revenue", (i % 9) * 1.25)
        if i % 4 == 0 and router.config.level != "request":
            router.record_unit(f"u{i % 120}", "revenue", (i % 9) * 1.25)


def canonical(router: ModelRouter) -> str:
    return json.dumps(router.analysis().to_dict(), sort_keys=True, default=str)


def columns(router: ModelRouter) -> dict[str, Any]:
    snap = router.experiment.store.snapshot()
    u = snap.units
    assert u is not None
    out = {name: getattr(u, name).tolist() for name in
           ("variant", "epoch", "propensity", "first_seen", "exposures", "segments")}
    out.update({f"x:{m}": a.tolist() for m, a in u.x.items()})
    out.update({f"y:{m}": a.tolist() for m, a in u.y.items()})
    out["requests"] = snap.requests.tolist()
    out["epochs"] = snap.epochs
    out["segment_values"] = snap.segment_values
    store = router.experiment.store
    assert isinstance(store, MemoryStore)
    _header, arrays = store.dump()  # the unit index: ids in row order
    out["ids"] = [arrays["unit_ids"].tobytes(), arrays["unit_len"].tolist(),
                  arrays["rows"].tolist()]
    return out


def test_round_trip_restores_every_column_and_the_analysis(tmp_path: Path) -> None:
    path = str(tmp_path / "exp.mrsnap")
    router = ModelRouter(make_app(), VARIANTS, cfg())
    router.configure(weights={"a": 0.3, "b": 0.7})
    fill(router)
    info = router.save(path)
    assert info.units == 120 and read_info(path).units == 120
    loaded = ModelRouter.load(path, make_app(), VARIANTS, cfg(weights={"a": 0.3, "b": 0.7}))
    assert columns(loaded) == columns(router)
    assert canonical(loaded) == canonical(router)
    # feedback by unit keeps working after the restart; the old decision ids do not
    loaded.record_unit("u5", "revenue", 1.0)
    router.record_unit("u5", "revenue", 1.0)
    assert canonical(loaded) == canonical(router)
    # routing continues in the restored epoch (same weights): no new epoch
    assert loaded.experiment.allocation.epoch == router.experiment.allocation.epoch == 1


def test_request_level_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "req.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg(level="request"))
    fill(router, 200)
    router.save(str(path))
    other = ModelRouter(make_app(), VARIANTS, cfg(level="request"))
    other.restore(str(path))
    assert canonical(other) == canonical(router)
    fill(other, 10)  # the restored store keeps working, with fresh decisions


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_corrupted_file_is_refused_and_nothing_changes(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 50)
    router.save(str(path))
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[:len(data) - 100]
    elif damage == "magic":
        data[:8] = b"PK\x03\x04\x00\x00\x00\x00"
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    victim = ModelRouter(make_app(), VARIANTS, cfg())
    fill(victim, 20)
    before = canonical(victim)
    with pytest.raises(StoreError, match="snapshot|not a modelrouter"):
        victim.restore(str(path))
    assert canonical(victim) == before


@pytest.mark.parametrize("change", [
    {"experiment": "other"},
    {"metrics": {"click": "binary"}},
    {"level": "session"},
])
def test_foreign_file_is_refused(tmp_path: Path, change: dict[str, Any]) -> None:
    path = str(tmp_path / "exp.mrsnap")
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 30)
    router.save(path)
    base = cfg().as_dict()
    kwargs = {"experiment": "snap", "metrics": {"click": "binary", "revenue": "continuous"},
              "segments": base["segments"], **change}
    other = ModelRouter(make_app(), VARIANTS, RouterConfig(**kwargs))
    with pytest.raises(StoreError, match="another experiment"):
        other.restore(path)
    three = ModelRouter(make_app(), {"a": 1, "c": 2}, cfg())
    with pytest.raises(StoreError, match="variants"):
        three.restore(path)


def test_crash_during_save_leaves_previous_snapshot(tmp_path: Path) -> None:
    from modelrouter.store.persistence import save_store

    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 40)
    router.save(str(path))
    good = path.read_bytes()
    fill(router, 40)
    calls = 0

    def dying_write(fh: Any, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            fh.write(data[: len(data) // 2])
            raise OSError("disk full")
        fh.write(data)

    with pytest.raises(StoreError, match="disk full"):
        save_store(router.experiment.store, path, experiment="snap", _write=dying_write)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["exp.mrsnap"]  # temp file removed


def test_killed_process_during_save_leaves_previous_snapshot(tmp_path: Path) -> None:
    """A child process is SIGKILLed in the middle of writing; the old file survives intact."""
    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 40)
    router.save(str(path))
    good = path.read_bytes()
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from modelrouter import ModelRouter
from modelrouter.store.persistence import save_store
from tests.conftest import make_app
from tests.store.test_persistence import VARIANTS, cfg, fill
router = ModelRouter(make_app(), VARIANTS, cfg())
fill(router, 60)
n = 0
def write(fh, data):
    global n
    n += 1
    fh.write(data[: len(data) // 2])
    fh.flush()
    if n == 2:
        os.kill(os.getpid(), signal.SIGKILL)
save_store(router.experiment.store, {str(path)!r}, experiment="snap", _write=write)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert path.read_bytes() == good
    restored = ModelRouter(make_app(), VARIANTS, cfg())
    restored.restore(str(path))
    assert canonical(restored) == canonical(router)
    leftovers = [p for p in os.listdir(tmp_path) if p != "exp.mrsnap"]
    assert all(p.endswith(".tmp") for p in leftovers)  # a killed writer may leave its temp


def test_format_is_versioned_and_never_pickled(tmp_path: Path) -> None:
    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 20)
    router.save(str(path))
    data = path.read_bytes()
    assert data.startswith(MAGIC) and int.from_bytes(data[8:12], "big") == 2
    assert b"pickle" not in data and b"\x80\x04\x95" not in data  # no pickle protocol-4 frame
    bumped = bytearray(data)
    bumped[8:12] = (3).to_bytes(4, "big")
    path.write_bytes(bytes(bumped))
    with pytest.raises(StoreError, match="format version 3; this modelrouter reads versions 1, 2"):
        read_info(path)


def test_save_refused_for_redis_store() -> None:
    pytest.importorskip("redis")
    router = ModelRouter(make_app(), VARIANTS, cfg(store="redis://127.0.0.1:1/0"))
    with pytest.raises(StoreError, match="in-memory store"):
        router.save("/tmp/never-written.mrsnap")


def test_restore_over_as_many_units_routes_each_by_its_own_hash(tmp_path: Path) -> None:
    from modelrouter.routing.assignment import Allocation, bucket

    path = str(tmp_path / "same-n.mrsnap")
    first = ModelRouter(make_app(), VARIANTS, cfg(salt="s"))
    for i in range(200):
        first.experiment.assign(f"saved{i}")
    first.save(path)
    second = ModelRouter(make_app(), VARIANTS, cfg(salt="s"))
    for i in range(200):  # as many rows, other units: their cached buckets must not survive
        second.experiment.assign(f"live{i}")
    second.restore(path)
    alloc = Allocation(("a", "b"), {"a": 0.5, "b": 0.5}, "a")
    for i in range(200):
        unit = f"saved{i}"
        assert second.experiment.assign(unit).variant == alloc.variants[
            alloc.choose(bucket("s", unit))]
