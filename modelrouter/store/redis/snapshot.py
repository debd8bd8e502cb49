"""Rebuilding a :class:`~modelrouter.store.memory.Snapshot` from the Redis store's hashes.

Units are ordered by first exposure (then id), so every worker builds identical arrays from the
same Redis state; segment values get codes in that order, re-capped at ``segment_cap`` (workers
cap locally, the union may exceed it). Feedback values of units without a first-exposure row are
counted as ``orphan_values`` in ``Snapshot.losses``, never analysed; batches Redis refused are
there too (``refused_batches``, what they held, and ``refused:<reason>``: see batch.py).

Both functions take the experiment's :class:`~.layout.Layout` (plain values), never the store.

Thread safety: pure functions of their arguments (``check_meta`` does one Redis transaction).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from modelrouter.exceptions import StoreError
from modelrouter.stats.moments import Moments
from modelrouter.store.histogram import N_SLOTS, LatencyHistogram
from modelrouter.store.looks import Look
from modelrouter.store.losses import DROP_PREFIX, FORWARDS_LOST, FORWARDS_REFUSED, UNATTRIBUTED
from modelrouter.store.memory import OTHER
from modelrouter.store.redis.layout import Layout, text
from modelrouter.store.rows import SUMS_PER_METRIC, moments_of_row
from modelrouter.store.types import EpochInfo, Snapshot, UnitColumns

__all__ = ["culprit_key", "build_snapshot", "check_meta"]

_REFUSED_COUNTERS = ("refused_batches", "refused_requests", "refused_exposures",
                     "refused_values")


def _covariates(layout: Layout, data: dict[str, dict[str, str]], index: dict[str, int], n: int
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per covariate, value and recorded-at columns in unit order (NaN: none); values of
    units not exposed (yet) stay in Redis until they are."""
    values, at = {}, {}
    for c in layout.covariate_names:
        v, t = np.full(n, np.nan), np.full(n, np.nan)
        for u, raw in data.get(f"cov:{c}", {}).items():
            i = index.get(u, -1)
            if i >= 0:
                v[i], t[i] = (float(a) for a in json.loads(raw))
        values[c], at[c] = v, t
    return values, at


def build_snapshot(layout: Layout, data: dict[str, dict[str, str]], taken: float) -> Snapshot:
    """Rebuild a :class:`Snapshot` from the hashes of one MULTI read (see store.py)."""
    any_flags = tuple(m.aggregate == "any" for m in layout.metrics.values())
    requests = np.array([int(data["requests"].get(v, 0)) for v in layout.variants],
                        dtype=np.int64)
    counters = {n: int(v) for n, v in data["counters"].items()}
    epochs = tuple(sorted((EpochInfo(int(e), m, tuple(w), float(t)) for e, (m, w, t) in
                           ((e, json.loads(v)) for e, v in data["epochs"].items())),
                          key=lambda e: e.epoch))
    tables: list[dict[str, int]] = [{} for _ in layout.segment_dims]
    overflow = counters.get("segment_overflow", 0)

    def code(d: int, value: str) -> int:
        table = tables[d]
        c = table.get(value)
        if c is None:
            if len(table) >= layout.segment_cap - 1 and value != OTHER:
                value = OTHER
            c = table.setdefault(value, len(table))
        return c

    units = None
    groups: dict[tuple[int, int, tuple[int, ...]], tuple[int, dict[str, Moments]]] = {}
    orphans = 0
    if layout.unit_level:
        rows = sorted(((json.loads(v), u) for u, v in data["first"].items()),
                      key=lambda r: (r[0][3], r[1]))
        ids = [u for _, u in rows]
        index = {u: i for i, u in enumerate(ids)}
        n = len(ids)
        segs = np.zeros((n, len(layout.segment_dims)), dtype=np.int64)
        for i, (r, _u) in enumerate(rows):
            for d, value in enumerate(r[4][:len(layout.segment_dims)]):
                segs[i, d] = code(d, value)
        x, y = {}, {}
        for j, m in enumerate(layout.metric_names):
            x[m], y[m] = np.zeros(n), np.zeros(n)
            for col, target in ((data[f"x:{m}"], x[m]), (data[f"y:{m}"], y[m])):
                for u, v in col.items():
                    i = index.get(u, -1)
                    if i >= 0:
                        target[i] = float(v)
                    elif col is data[f"y:{m}"]:
                        orphans += int(float(v))
            if any_flags[j]:
                x[m] = (x[m] > 0).astype(np.float64)
        cov, cov_at = _covariates(layout, data, index, n)
        exposures = np.zeros(n, dtype=np.int64)
        for u, v in data["exposures"].items():
            i = index.get(u, -1)
            if i >= 0:
                exposures[i] = int(v)
        units = UnitColumns(
            variant=np.array([r[0] for r, _ in rows], dtype=np.int64).reshape(n),
            epoch=np.array([r[1] for r, _ in rows], dtype=np.int64).reshape(n),
            propensity=np.array([r[2] for r, _ in rows], dtype=np.float64).reshape(n),
            first_seen=np.array([r[3] for r, _ in rows], dtype=np.float64).reshape(n),
            exposures=exposures, segments=segs, x=x, y=y, ids=ids, covariates=cov,
            covariate_at=cov_at)
    else:
        width = 1 + SUMS_PER_METRIC * len(layout.metric_names)
        sums: dict[tuple[int, int, tuple[int, ...]], list[float]] = {}
        for field, v in data["groups"].items():
            name, _, kk = field.rpartition("#")
            variant, epoch, seg = json.loads(name)
            key = (int(variant), int(epoch),
                   tuple(code(d, s) for d, s in enumerate(seg)))
            sums.setdefault(key, [0.0] * width)[int(kk)] += float(v)
        for key, s in sums.items():
            groups[key] = moments_of_row(s, layout.metric_names)
    decisions = _decisions(layout, data.get("decisions", {}), code)
    seg_values = {d: tuple(sorted(t, key=t.__getitem__))
                  for d, t in zip(layout.segment_dims, tables)}
    snap = Snapshot(variants=layout.variants, metrics=layout.metrics, level=layout.level,
                    taken_at=taken, segment_dims=layout.segment_dims,
                    segment_values=seg_values, epochs=epochs, requests=requests,
                    uncounted_requests=counters.get("uncounted", 0),
                    segment_overflow=overflow, units=units, groups=groups,
                    losses={"dropped_exposures": counters.get("dropped_exposures", 0),
                            "dropped_values": counters.get("dropped_values", 0),
                            "orphan_values": orphans,
                            **{name: counters.get(name, 0) for name in _REFUSED_COUNTERS},
                            **{key: counters[name] for key, name in (
                                (UNATTRIBUTED, "unattributed"), (FORWARDS_LOST, FORWARDS_LOST),
                                (FORWARDS_REFUSED, FORWARDS_REFUSED)) if counters.get(name)},
                            **{k: n for k, n in sorted(counters.items())
                               if k.startswith(DROP_PREFIX)},
                            **{f"refused:{reason}": int(n)
                               for reason, n in sorted(data.get("refused", {}).items())}},
                    latency=_latency(layout.variants, data["latency"]), decisions=decisions,
                    source="every worker and host (Redis store)")
    if data["looks"]:
        looks = sorted((Look.from_dict(json.loads(v)) for v in data["looks"].values()),
                       key=lambda k: (k.taken_at, k.metric, k.variant, k.number))
        snap = dataclasses.replace(snap, looks=tuple(looks))
    return snap


def _decisions(layout: Layout, fields: dict[str, str], code: Callable[[int, str], int]
               ) -> dict[tuple[int, int, tuple[int, ...], int], tuple[int, dict[str, Moments]]]:
    """Every worker's bandit decision sums (``decisions`` hash, batch.decision_ops)."""
    width = 1 + SUMS_PER_METRIC * len(layout.metric_names)
    sums: dict[tuple[int, int, tuple[int, ...], int], list[float]] = {}
    for field, v in fields.items():
        name, _, kk = field.rpartition("#")
        variant, epoch, seg, tag = json.loads(name)
        key = (int(variant), int(epoch), tuple(code(d, s) for d, s in enumerate(seg)), int(tag))
        sums.setdefault(key, [0.0] * width)[int(kk)] += float(v)
    return {key: moments_of_row(s, layout.metric_names) for key, s in sums.items()}


def _latency(variants: tuple[str, ...], fields: dict[str, str]) -> LatencyHistogram:
    """The merged histogram from the ``latency`` hash (``variant#slot`` / ``variant#sum``)."""
    hist = LatencyHistogram.empty(len(variants))
    index = {v: i for i, v in enumerate(variants)}
    for field, value in fields.items():
        name, _, slot = field.rpartition("#")
        v = index.get(name)
        if v is None:
            continue
        if slot == "sum":
            hist.sum_ms[v] = float(value)
        elif slot.isdigit() and int(slot) < N_SLOTS:
            hist.counts[v, int(slot)] = int(value)
    return hist


def check_meta(layout: Layout, client: Any) -> None:
    """Claim the experiment's meta key for this configuration, or refuse a foreign one.

    The first worker writes its identity (key format, latency layout, variants, level, segment
    dimensions, metrics) with HSETNX; every worker then compares field by field, so two
    differently configured deployments can never merge into one set of counters. ``client``
    is a redis-py client (any type: redis-py is an optional dependency).
    """
    key = layout.prefix + "meta"
    mine = layout.meta()
    pipe = client.pipeline(transaction=True)
    for field, value in mine.items():
        pipe.hsetnx(key, field, value)
    pipe.hgetall(key)
    stored = {text(k): text(v) for k, v in pipe.execute()[-1].items()}
    for field, value in mine.items():
        if stored.get(field) != value:
            raise StoreError(f"Redis key {key!r} belongs to another configuration of experiment "
                             f"{layout.experiment!r}: {field} is {stored.get(field)!r} there, "
                             f"{value!r} here")


def culprit_key(prefix: str, data: dict[str, dict[str, str]]) -> str:
    """The first key holding a value a snapshot cannot read, for the error message."""
    for name, fields in data.items():
        if name in ("first", "epochs", "looks", "groups", "decisions"):
            continue  # JSON values or keys, checked by the snapshot itself
        for value in fields.values():
            try:
                float(value)
            except ValueError:
                return f"key {prefix + name!r}"
    return "a JSON value"
