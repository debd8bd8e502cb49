"""Snapshot files: round trip through a new router, refusal of bad files, crash safety."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig, StoreError
from modelrouter.store.memory import MemoryStore
from modelrouter.store.persistence import FORMAT_VERSION, MAGIC, read_info
from modelrouter.testing import ASGIClient
from tests.conftest import make_app

VARIANTS = {"a": lambda x: x, "b": lambda x: 2 * x}


def cfg(**kw: Any) -> RouterConfig:
    kw.setdefault("segments", {"platform": "x-platform"})
    return RouterConfig(experiment="snap", metrics={"click": "binary", "revenue": "continuous"},
                        **kw)


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
        save_store(router.experiment.store, path, experiment="snap", salt="snap", control="a",
                   _write=dying_write)
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
save_store(router.experiment.store, {str(path)!r}, experiment="snap", salt="snap", control="a",
           _write=write)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert path.read_bytes() == good
    leftovers = [p for p in os.listdir(tmp_path) if p != "exp.mrsnap"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the killed writer's temp
    restored = ModelRouter(make_app(), VARIANTS, cfg())
    restored.restore(str(path))  # the restart removes it (its writer is dead) and restores
    assert canonical(restored) == canonical(router)
    assert os.listdir(tmp_path) == ["exp.mrsnap"]


def test_format_is_versioned_and_never_pickled(tmp_path: Path) -> None:
    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 20)
    router.save(str(path))
    data = path.read_bytes()
    assert data.startswith(MAGIC) and int.from_bytes(data[8:12], "big") == FORMAT_VERSION
    assert b"pickle" not in data and b"\x80\x04\x95" not in data  # no pickle protocol-4 frame
    bumped = bytearray(data)
    bumped[8:12] = (5).to_bytes(4, "big")
    path.write_bytes(bytes(bumped))
    with pytest.raises(StoreError, match="format version 5; this modelrouter reads versions 1, "
                                         "2, 3, 4"):
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


# -- temp files of interrupted saves ------------------------------------------------------------
WRITER = """
import os, sys
sys.path.insert(0, {root!r})
from modelrouter import Experiment, RouterConfig
from modelrouter.store.persistence import save_store
exp = Experiment({{"a": 1, "b": 2}}, RouterConfig(experiment="snap",
                 metrics={{"click": "binary", "revenue": "continuous"}}))
for i in range(150_000):
    exp.assign(f"user-{{i}}")

def write(fh, data):  # a real writer, in 64 KiB pieces, so the temp file grows as it goes
    for i in range(0, len(data), 65536):
        fh.write(data[i:i + 65536])
        fh.flush()

print("ready", flush=True)
while True:
    save_store(exp.store, {path!r}, experiment="snap", salt="snap", control="a", _write=write)
"""


def test_kill_9_during_saves_leaves_no_temp_file_after_the_next_save(tmp_path: Path) -> None:
    """Writers saving a large snapshot in a loop are SIGKILLed while a temp file is being
    written. Each kill leaves its temp file (megabytes), but they no longer pile up (measured
    before: 47 MB after 6 kills): every save first removes those of dead writers, so after
    any number of kills one is left at most, and the next save removes it."""
    import signal
    import time

    path = tmp_path / "exp.mrsnap"
    root = str(Path(__file__).resolve().parents[2])
    killed = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, path=str(path))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            mine = f"-{proc.pid}-"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until it is in the middle of a write
                temps = [p for p in tmp_path.iterdir() if mine in p.name]
                if temps and temps[0].stat().st_size > 1 << 20:
                    break
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate(timeout=30)  # reaps it and closes the pipes
        assert proc.returncode == -signal.SIGKILL
        killed += 1
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert [p.name for p in leftovers] == [temps[0].name]  # only this writer's
        assert leftovers[0].stat().st_size > 1 << 20
    assert killed == 3
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 30)
    router.save(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.mrsnap"]
    again = ModelRouter(make_app(), VARIANTS, cfg())
    again.restore(str(path))
    assert canonical(again) == canonical(router)


def test_only_stale_temp_files_are_removed(tmp_path: Path) -> None:
    import time

    from modelrouter.store.persistence import STALE_TEMP_SECONDS, remove_stale_temp_files

    path = tmp_path / "exp.mrsnap"
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True)
    dead = int(done.stdout)  # exited and reaped: no such process any more
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".exp.mrsnap.{host}-{dead}-abcd1234.tmp",
            "live": f".exp.mrsnap.{host}-{live.pid}-abcd1234.tmp",
            "self": f".exp.mrsnap.{host}-{os.getpid()}-abcd1234.tmp",  # another thread's save
            "other_host": f".exp.mrsnap.00000000-{dead}-abcd1234.tmp",
            "old_style": ".exp.mrsnap.k2j4h5g6.tmp",  # tempfile.mkstemp, older releases
            "old_other_host": f".exp.mrsnap.00000000-{live.pid}-zzzz.tmp",
            "other_snapshot": f".other.mrsnap.{host}-{dead}-abcd1234.tmp",
            "lock": "exp.mrsnap.lock",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x" * 100)
        past = time.time() - STALE_TEMP_SECONDS - 60
        os.utime(tmp_path / names["old_other_host"], (past, past))
        removed = remove_stale_temp_files(path)
        assert sorted(removed) == sorted([names["dead"], names["old_other_host"]])
        os.utime(tmp_path / names["old_style"], (past, past))  # untouched for an hour
        assert sorted(remove_stale_temp_files(path)) == sorted([names["old_style"]])
        left = sorted(p.name for p in tmp_path.iterdir())  # young, or a live writer's
        assert left == sorted(names[k] for k in ("live", "self", "other_host", "other_snapshot",
                                                 "lock"))
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temp_files(path) == [names["live"]]  # its writer is gone now


# -- identity: a snapshot is refused by a router that would read it differently -----------------
def test_a_snapshot_records_the_identity_but_not_the_salt_itself(tmp_path: Path) -> None:
    from modelrouter.store.persistence import IDENTITY, salt_digest

    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg(salt="pepper-and-salt"))
    fill(router, 10)
    router.save(str(path))
    data = path.read_bytes()
    head_len = int.from_bytes(data[12:20], "big")
    header = json.loads(data[20:20 + head_len])
    assert {k: header[k] for k in IDENTITY} == {
        "experiment": "snap", "variants": ["a", "b"], "control": "a", "level": "user",
        "salt_sha256": salt_digest("pepper-and-salt"),
        "metrics": {"click": ["binary", "any"], "revenue": ["continuous", "sum"],
                    "latency_ms": ["continuous", "mean"], "error": ["binary", "mean"]},
        "segment_dims": ["platform"]}
    assert b"pepper-and-salt" not in data
    assert salt_digest("pepper-and-salt") != salt_digest("pepper-and-salT")


@pytest.mark.parametrize(("variants", "change", "message"), [
    (VARIANTS, {"salt": "another-salt"}, "its salt differs from this router's"),
    (VARIANTS, {"control": "b"}, "control is 'a' in the file, 'b' here"),
    ({"b": VARIANTS["b"], "a": VARIANTS["a"]}, {"control": "a"},
     "variants is ['a', 'b'] in the file, ['b', 'a'] here"),
    (VARIANTS, {"level": "session"}, "level is 'user' in the file, 'session' here"),
    (VARIANTS, {"segments": {"os": "x-os"}},
     "segment_dims is ['platform'] in the file, ['os'] here"),
])
def test_a_router_that_differs_is_refused_naming_the_field_and_nothing_changes(
        tmp_path: Path, variants: dict[str, Any], change: dict[str, Any], message: str) -> None:
    """The measured harm: restored into a router with another salt, 1,512 of 3,000 returning
    users were served a variant other than the one they are analysed under."""
    path = str(tmp_path / "exp.mrsnap")
    first = ModelRouter(make_app(), VARIANTS, cfg(salt="s1"))
    for i in range(3000):
        first.experiment.assign(f"user-{i}")
    first.save(path)
    kwargs: dict[str, Any] = {"salt": "s1", **change}
    other = ModelRouter(make_app(), variants, cfg(**kwargs))
    other.experiment.assign("someone")
    before = columns(other)
    with pytest.raises(StoreError, match=f"belongs to another experiment: {re.escape(message)}"):
        other.restore(path)
    assert columns(other) == before
    if "salt" in change:  # what the refusal prevents: half the returning users move
        moved = sum(first.experiment.assign(f"user-{i}").variant
                    != other.experiment.assign(f"user-{i}").variant for i in range(3000))
        assert 1300 < moved < 1700


def test_the_same_identity_restores(tmp_path: Path) -> None:
    path = str(tmp_path / "exp.mrsnap")
    first = ModelRouter(make_app(), VARIANTS, cfg(salt="s1", control="b"))
    fill(first, 40)
    info = first.save(path)
    assert info.version == FORMAT_VERSION and info.unchecked == ()
    second = ModelRouter(make_app(), VARIANTS, cfg(salt="s1", control="b"))
    restored = second.restore(path)
    assert restored.unchecked == () and canonical(second) == canonical(first)


def test_files_before_version_3_restore_with_salt_and_control_unchecked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An upgrade must not strand its own snapshot: a version 2 file (no salt, no control)
    still restores, says what it could not check, and logs a warning; the rest of its
    identity is still checked."""
    path = tmp_path / "exp.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg())
    fill(router, 40)
    router.save(str(path))
    data = path.read_bytes()
    head_len = int.from_bytes(data[12:20], "big")
    header = json.loads(data[20:20 + head_len])
    del header["salt_sha256"], header["control"]
    head = json.dumps(header).encode()
    body = MAGIC + (2).to_bytes(4, "big") + len(head).to_bytes(8, "big") + head + \
        data[20 + head_len:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    old = ModelRouter(make_app(), VARIANTS, cfg(salt="whatever"))
    with caplog.at_level("WARNING", logger="modelrouter.store.persistence"):
        info = old.restore(str(path))
    assert info.version == 2 and info.unchecked == ("salt", "control")
    assert info.to_dict()["unchecked"] == ["salt", "control"]
    assert "does not record the salt and control" in caplog.text
    assert columns(old) == columns(router)
    with pytest.raises(StoreError, match="variants is"):
        ModelRouter(make_app(), {"a": 1, "c": 2}, cfg()).restore(str(path))
    old.save(str(path))  # the next save writes the current version, with the identity
    assert read_info(path).version == FORMAT_VERSION


def _bandit(seed: int = 0, **kw: Any) -> Any:
    from modelrouter import Experiment

    kw.setdefault("metrics", {"click": "binary", "conv": "binary"})
    kw.setdefault("reward", "click")
    kw.setdefault("mode", "bandit")
    kw.setdefault("level", "request")
    kw.setdefault("refresh_seconds", None)
    kw.setdefault("refresh_every", 40)
    return Experiment({"a": 1, "b": 2}, RouterConfig(experiment="snap", **kw),
                      rng=__import__("random").Random(seed))


def _trained(path: Path) -> Any:
    import numpy as np

    exp = _bandit()
    rng = np.random.default_rng(0)
    for _ in range(600):
        d = exp.assign(None)
        exp.record(d, "click", int(rng.random() < (0.05 if d.variant == "a" else 0.6)))
        exp.bandit.wait_idle()
    exp.save(str(path))
    return exp


def _observed(exp: Any) -> tuple[Any, ...]:
    status = exp.bandit_status()
    return (exp.store.snapshot().requests.tolist(), status.counts, status.bandit_weights,
            status.epoch, status.mean, exp.state.allocation.epoch)


def _rewrite(path: Path, version: int, edit: Any) -> None:
    """Rewrite a snapshot's header with ``edit(header)`` and the given format version."""
    data = path.read_bytes()
    head_len = int.from_bytes(data[12:20], "big")
    header = json.loads(data[20:20 + head_len])
    edit(header)
    head = json.dumps(header).encode()
    body = MAGIC + version.to_bytes(4, "big") + len(head).to_bytes(8, "big") + head + \
        data[20 + head_len:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_a_bandit_snapshot_holds_the_training_counters_and_weights(tmp_path: Path) -> None:
    path = tmp_path / "b.mrsnap"
    exp = _trained(path)
    data = path.read_bytes()
    header = json.loads(data[20:20 + int.from_bytes(data[12:20], "big")])
    assert header["bandit"]["identity"] == {"reward": "click", "kind": "binary", "costs": {},
                                            "missing_reward": "zero", "policy": "thompson"}
    counters = exp.store.peek_training()
    assert header["training"]["counters"] == {k: v.tolist() for k, v in counters.items()}
    assert header["bandit"]["weights"]["probabilities"] == list(
        exp.bandit.allocator.weights.probabilities)
    assert read_info(path).version == FORMAT_VERSION == 4
    exp.bandit.close()


def test_a_file_before_version_4_restores_with_a_fresh_bandit(tmp_path: Path) -> None:
    path = tmp_path / "b.mrsnap"
    exp = _trained(path)

    def strip(header: dict[str, Any]) -> None:
        del header["bandit"], header["training"]

    _rewrite(path, 3, strip)
    fresh = _bandit(seed=1)
    info = fresh.restore(str(path))
    assert info.version == 3 and "written before format version 4" in info.bandit
    assert "starts fresh" in info.to_dict()["bandit"]
    status = fresh.bandit_status()
    assert status is not None and status.counts == (0.0, 0.0)
    assert status.bandit_weights == (0.5, 0.5)
    assert fresh.store.snapshot().requests.tolist() == exp.store.snapshot().requests.tolist()
    exp.bandit.close()
    fresh.bandit.close()


@pytest.mark.parametrize(("change", "field"), [
    ({"reward": "conv"}, "reward"),
    ({"bandit_policy": "top-two"}, "policy"),
    ({"missing_reward": "omit"}, "missing_reward"),
    ({"metrics": {"click": "binary", "conv": "continuous"}, "reward": "conv"}, None),
])
def test_a_bandit_that_differs_is_refused_and_nothing_changes(
        tmp_path: Path, change: dict[str, Any], field: str | None) -> None:
    path = tmp_path / "b.mrsnap"
    exp = _trained(path)
    other = _bandit(seed=1, **change)
    other.assign(None)
    before = _observed(other)
    # a metric of another kind is refused by the experiment identity first
    with pytest.raises(StoreError, match=f"bandit's {field} is" if field else "metrics is"):
        other.restore(str(path))
    assert _observed(other) == before
    exp.bandit.close()
    other.bandit.close()


def test_a_bandit_file_into_a_router_without_a_bandit_ignores_the_bandit_state(
        tmp_path: Path) -> None:
    path = tmp_path / "b.mrsnap"
    exp = _trained(path)
    plain = _bandit(seed=1, reward=None, mode="ab")
    info = plain.restore(str(path))
    assert "was ignored: this router has no bandit" in info.bandit and "'click'" in info.bandit
    assert plain.bandit_status() is None
    assert plain.store.snapshot().requests.tolist() == exp.store.snapshot().requests.tolist()
    plain.save(str(path))  # its own snapshot has no bandit state
    assert "no bandit state in the file (saved by a router without a bandit)" in \
        _bandit(seed=2).restore(str(path)).bandit
    exp.bandit.close()


@pytest.mark.parametrize("edit", [
    lambda h: h["bandit"]["weights"].update(probabilities=[0.5, 0.6]),
    lambda h: h["bandit"]["weights"].update(active=[False, False]),
    lambda h: h["bandit"].update(active=[True]),
    lambda h: h["training"]["counters"].update(successes=[1.0]),
    lambda h: h.pop("training"),
])
def test_a_malformed_bandit_section_is_refused_and_nothing_changes(
        tmp_path: Path, edit: Any) -> None:
    path = tmp_path / "b.mrsnap"
    exp = _trained(path)
    _rewrite(path, FORMAT_VERSION, edit)
    other = _bandit(seed=1)
    other.assign(None)
    before = _observed(other)
    with pytest.raises(StoreError, match="malformed|training counters"):
        other.restore(str(path))
    assert _observed(other) == before
    exp.bandit.close()
    other.bandit.close()


def test_a_rollback_in_force_survives_a_restart(tmp_path: Path) -> None:
    """Cells: memory store, restored after a control-plane change (a guardrail rollback). The
    snapshot keeps the hold and its events: the restarted router serves only the control
    until someone resumes, as the running one did."""
    path = tmp_path / "exp.mrsnap"
    before = ModelRouter(make_app(), VARIANTS, cfg())
    fill(before)
    before.experiment.rollback(["error rate guardrail broken (test)"])
    before.save(str(path))
    after = ModelRouter(make_app(), VARIANTS, cfg())
    after.restore(str(path))
    assert after.experiment.rolled_back
    assert [e.kind for e in after.experiment.rollback_events] == ["rollback"]
    assert after.experiment.rollback_events[0].reasons == ("error rate guardrail broken (test)",)
    assert {after.experiment.assign(f"new{i}").variant for i in range(200)} == {"a"}
    after.experiment.resume("checked")
    assert {after.experiment.assign(f"new{i}").variant for i in range(200)} == {
        "a", "b"}
    # a file saved without a hold does not lift one in force, nor add one
    plain = tmp_path / "plain.mrsnap"
    after.save(str(plain))
    fresh = ModelRouter(make_app(), VARIANTS, cfg())
    fresh.restore(str(plain))
    assert not fresh.experiment.rolled_back
    assert [e.kind for e in fresh.experiment.rollback_events] == ["rollback", "resume"]
