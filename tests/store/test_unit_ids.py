"""Snapshots name their units: ``UnitColumns.ids`` in row order, from the memory store (a view
of its append-only id list), after a restore from a snapshot file, and from Redis.

Cells: store memory | redis; level user; life fresh | restored from a snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrouter import Experiment, RouterConfig
from modelrouter.store.units import UnitIds
from tests.store.conftest import RedisServer

VARIANTS = {"a": 1, "b": 2}


def _config(url: str = "memory") -> RouterConfig:
    return RouterConfig(experiment="ids", metrics={"revenue": "continuous"}, store=url)


def _drive(exp: Experiment, units: list[str]) -> dict[str, float]:
    """Route every unit, record revenue = its position; return unit -> value."""
    values = {}
    for i, unit in enumerate(units):
        d = exp.assign(unit)
        exp.record(d, "revenue", float(i))
        values[unit] = float(i)
    return values


def _by_id(exp: Experiment) -> dict[str, float]:
    cols = exp.store.snapshot().units
    assert cols is not None and cols.ids is not None
    assert len(cols.ids) == cols.variant.size
    return dict(zip(cols.ids, cols.x["revenue"].tolist()))


UNITS = ["u1", "é-ünicode", "u3", "x" * 200, "u5"]


def test_memory_snapshot_ids_follow_rows_and_do_not_grow_after_the_snapshot() -> None:
    exp = Experiment(VARIANTS, _config())
    values = _drive(exp, UNITS)
    snap = exp.store.snapshot()
    assert snap.units is not None and isinstance(snap.units.ids, UnitIds)
    assert list(snap.units.ids) == UNITS
    assert _by_id(exp) == values
    exp.assign("later")  # a unit added after the snapshot is not in it
    assert len(snap.units.ids) == len(UNITS) and snap.units.ids[-1] == UNITS[-1]
    assert snap.units.ids[1:3] == UNITS[1:3]
    with pytest.raises(IndexError):
        snap.units.ids[len(UNITS)]


def test_restored_snapshot_keeps_ids_in_row_order(tmp_path: Path) -> None:
    exp = Experiment(VARIANTS, _config())
    values = _drive(exp, UNITS)
    exp.save(tmp_path / "s.mrsnap")
    back = Experiment(VARIANTS, _config())
    back.restore(tmp_path / "s.mrsnap")
    assert _by_id(back) == values
    _drive(back, ["new"])  # appends after the restored rows
    assert list(back.store.snapshot().units.ids)[-1] == "new"  # type: ignore[union-attr]


def test_redis_snapshot_has_ids(redis_server: RedisServer) -> None:
    pytest.importorskip("redis")
    exp = Experiment(VARIANTS, _config(redis_server.url))
    try:
        values = _drive(exp, UNITS)
        exp.flush()
        assert _by_id(exp) == values
    finally:
        exp.close()
