"""Turning a worker's drained buffer into idempotent, atomic Redis batches (see store.py).

:func:`drain_ops` takes plain values: a swapped-out :class:`~.buffer.DeltaBuffer`, the local
memory store's :class:`~modelrouter.store.types.Deltas` and the experiment's
:class:`~.layout.Layout`; it never sees the store.

An op is ``(kind, hash, field, value)`` with kind ``i`` (HINCRBY), ``f`` (HINCRBYFLOAT) or
``n`` (HSETNX). Ops are packed into chunks; each chunk is one Lua call that first sets its batch id
with ``SET NX`` and applies nothing if the id exists, so a retried batch whose reply was lost is
not applied twice, and every chunk is applied whole or not at all.

Thread safety: pure functions of their arguments (the flusher owns a drained buffer alone).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Mapping, Sequence

import numpy as np

from modelrouter.store.histogram import N_SLOTS
from modelrouter.store.looks import Look
from modelrouter.store.redis.buffer import DeltaBuffer, FirstExposure
from modelrouter.store.redis.layout import Layout
from modelrouter.store.types import Deltas, EpochInfo

__all__ = ["LUA", "counter_ops", "drain_ops", "group_ops", "latency_ops", "pack_batches",
           "unit_ops"]

Op = tuple[str, str, str, str]
Batch = tuple[str, list[str], list[str]]

CHUNK = 2_000  # ops per Lua call: one atomic script keeps Redis busy ~10 ms, not seconds
MARKER_TTL = "86400"

# KEYS[1] = batch marker, KEYS[2..] = hashes; ARGV[1] = marker TTL, ARGV[2] = JSON list of
# [op, key index, field, value] (one argument: packing 4 arguments per op in redis-py costs more
# than the whole Lua loop), ARGV[3] = number of ops (for the flusher's count)
LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local ops = cjson.decode(ARGV[2])
for i = 1, #ops do
  local o = ops[i]
  local op, k, f, v = o[1], KEYS[o[2]], o[3], o[4]
  if op == 'i' then redis.call('HINCRBY', k, f, v)
  elseif op == 'f' then redis.call('HINCRBYFLOAT', k, f, v)
  else redis.call('HSETNX', k, f, v) end
end
return 1
"""

_COMPACT = (",", ":")


def unit_ops(first: Mapping[str, FirstExposure], exposures: Mapping[str, int],
             xy: Mapping[tuple[str, int], list[float]], metric_names: Sequence[str],
             tables: Sequence[Sequence[str]]) -> list[Op]:
    """First exposures (HSETNX, first writer wins), exposure counts and per-unit x/y sums."""
    ops: list[Op] = []
    for unit, (variant, epoch, prop, seen, seg) in first.items():
        segs = [tables[d][c] for d, c in enumerate(seg)]
        ops.append(("n", "first", unit, json.dumps([variant, epoch, prop, seen, segs],
                                                   separators=_COMPACT)))
        ops.append(("i", "exposures", unit, str(exposures[unit])))
    for (unit, m), (x, y) in xy.items():
        name = metric_names[m]
        ops.append(("f", "x:" + name, unit, repr(x)))
        ops.append(("f", "y:" + name, unit, repr(y)))
    return ops


def group_ops(groups: Sequence[tuple[tuple[int, int, tuple[int, ...]], list[float]]],
              tables: Sequence[Sequence[str]]) -> list[Op]:
    """Request level: group sum increments, keyed by variant, epoch and segment *values*."""
    ops: list[Op] = []
    for (variant, epoch, seg), s in groups:
        name = json.dumps([variant, epoch, [tables[d][c] for d, c in enumerate(seg)]],
                          separators=_COMPACT)
        ops += [("f", "groups", f"{name}#{k}", repr(v)) for k, v in enumerate(s) if v]
    return ops


def latency_ops(variants: Sequence[str], hist: array[int], sums: Sequence[float]) -> list[Op]:
    """Histogram deltas as ``latency`` hash increments: ``<variant>#<slot>`` and ``#sum``."""
    counts = np.frombuffer(hist, dtype=np.int64).reshape(len(variants), N_SLOTS)
    ops: list[Op] = []
    for v, name in enumerate(variants):
        ops += [("i", "latency", f"{name}#{s}", str(int(counts[v, s])))
                for s in np.flatnonzero(counts[v])]
        if sums[v]:
            ops.append(("f", "latency", f"{name}#sum", repr(float(sums[v]))))
    return ops


def counter_ops(variants: Sequence[str], metric_names: Sequence[str],
                events: Mapping[tuple[int, int], list[float]], requests: Sequence[int],
                counters: Mapping[str, int], epochs: Sequence[EpochInfo],
                looks: Sequence[Look]) -> list[Op]:
    """Per-variant event counters, request counts, store counters, epochs and looks."""
    ops: list[Op] = []
    for (variant, m), (n, s, ss) in events.items():
        f = f"{variants[variant]}:{metric_names[m]}:"
        ops += [("f", "events", f + "n", repr(n)), ("f", "events", f + "sum", repr(s)),
                ("f", "events", f + "sumsq", repr(ss))]
    ops += [("i", "requests", variants[i], str(r)) for i, r in enumerate(requests) if r]
    ops += [("i", "counters", name, str(v)) for name, v in counters.items() if v]
    ops += [("n", "epochs", str(e.epoch), json.dumps([e.mode, list(e.weights), e.started_at]))
            for e in epochs]
    ops += [("n", "looks", f"{k.metric}|{k.variant}|{k.number}", json.dumps(k.to_dict()))
            for k in looks]
    return ops


def pack_batches(ops: Sequence[Op], prefix: str, worker: str, last_no: int) -> list[Batch]:
    """Chunks of ops as ``(batch id, hash keys, ARGV)`` for :data:`LUA`."""
    batches = []
    for i, start in enumerate(range(0, len(ops), CHUNK)):
        key_index: dict[str, int] = {}
        packed = [[op, key_index.setdefault(prefix + key, len(key_index) + 2), field, value]
                  for op, key, field, value in ops[start:start + CHUNK]]
        argv = [MARKER_TTL, json.dumps(packed, separators=_COMPACT), str(len(packed))]
        batches.append((f"{worker}:{last_no + i + 1}", list(key_index), argv))
    return batches


def drain_ops(buf: DeltaBuffer, local: Deltas, layout: Layout) -> list[Op]:
    """Every op of a swapped-out buffer and of the local store's deltas (request level: its
    group sums, requests and latencies; both levels: segment overflow)."""
    tables = local.segment_tables
    if layout.unit_level:
        ops = unit_ops(buf.first, buf.exposures, buf.xy, layout.metric_names, tables)
    else:
        ops = group_ops(local.groups, tables)
    requests = [a + b for a, b in zip(buf.requests, local.requests)]
    ops += counter_ops(layout.variants, layout.metric_names, buf.events, requests,
                       {"uncounted": buf.uncounted + local.uncounted,
                        "segment_overflow": local.segment_overflow,
                        "dropped_exposures": buf.dropped[0], "dropped_values": buf.dropped[1]},
                       buf.epochs, buf.looks)
    ops += latency_ops(layout.variants, buf.hist, buf.hist_sum)
    ops += latency_ops(layout.variants, local.hist, local.hist_sum)
    return ops
