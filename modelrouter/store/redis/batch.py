"""Turning a worker's drained buffer into idempotent, atomic Redis batches (see redis.py).

An op is ``(kind, hash, field, value)`` with kind ``i`` (HINCRBY), ``f`` (HINCRBYFLOAT) or ``n``
(HSETNX). Ops are packed into chunks; each chunk is one Lua call that first sets its batch id
with ``SET NX`` and applies nothing if the id exists, so a retried batch whose reply was lost is
not applied twice, and every chunk is applied whole or not at all.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelrouter.store.histogram import N_SLOTS

__all__ = ["LUA", "counter_ops", "drain", "group_ops", "latency_ops", "pack_batches",
           "take_latency", "unit_ops"]

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


def unit_ops(first: Mapping[str, list[Any]], xy: Mapping[tuple[str, int], list[float]],
             metric_names: Sequence[str], tables: Sequence[Sequence[str]]) -> list[Op]:
    """First exposures (HSETNX, first writer wins), exposure counts and per-unit x/y sums."""
    ops: list[Op] = []
    for unit, (n, variant, epoch, prop, seen, seg) in first.items():
        segs = [tables[d][c] for d, c in enumerate(seg)]
        ops.append(("n", "first", unit, json.dumps([variant, epoch, prop, seen, segs],
                                                   separators=_COMPACT)))
        ops.append(("i", "exposures", unit, str(n)))
    for (unit, m), (x, y) in xy.items():
        name = metric_names[m]
        ops.append(("f", "x:" + name, unit, repr(x)))
        ops.append(("f", "y:" + name, unit, repr(y)))
    return ops


def group_ops(local: Any, tables: Sequence[Sequence[str]]) -> tuple[list[int], int, list[Op]]:
    """Request level: take the local MemoryStore's group sums and counters, zero them."""
    with local._lock:
        keys = list(local._group_keys)
        sums = [list(s) for s in local._group_sums]
        for s in local._group_sums:
            s[:] = [0.0] * len(s)
        requests, local._requests = local._requests, [0] * len(local.variants)
        uncounted, local._uncounted = local._uncounted, 0
    ops: list[Op] = []
    for (variant, epoch, seg), s in zip(keys, sums):
        name = json.dumps([variant, epoch, [tables[d][c] for d, c in enumerate(seg)]],
                          separators=_COMPACT)
        ops += [("f", "groups", f"{name}#{k}", repr(v)) for k, v in enumerate(s) if v]
    return requests, uncounted, ops


def take_latency(owner: Any, lock: Any) -> tuple[array[int], list[float]]:
    """Swap ``owner``'s latency histogram (``_hist``, ``_hist_sum``) for zeros under ``lock``."""
    k = len(owner._hist_sum)
    fresh, zero = array("q", bytes(8 * N_SLOTS * k)), [0.0] * k
    with lock:
        hist, sums = owner._hist, owner._hist_sum
        owner._hist, owner._hist_sum = fresh, zero
    return hist, sums


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
                counters: Mapping[str, int], epochs: Sequence[Any], looks: Sequence[Any]
                ) -> list[Op]:
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


def drain(store: Any) -> list[Batch]:
    """Swap a RedisStore's buffer out under its lock; turn it into idempotent script calls
    (the caller advances ``store._batch_no`` by the number of batches)."""
    with store._lock:
        first, xy, events = store._first, store._xy, store._events
        requests, uncounted, dropped = store._requests, store._uncounted, store._dropped_delta
        epochs, looks = store._new_epochs, store._new_looks
        hist, hist_sum = store._hist, store._hist_sum
        store._new_buffer()
    if not store.unit_level:  # request level: the local store recorded the latencies
        hist, hist_sum = take_latency(store._local, store._local._lock)
    store._dropped[0] += dropped[0]
    store._dropped[1] += dropped[1]
    with store._local._lock:
        overflow, store._local._overflow = store._local._overflow, 0
    tables = [sorted(t, key=t.__getitem__) for t in store._local._seg_codes]
    if store.unit_level:
        ops = unit_ops(first, xy, store.metric_names, tables)
    else:
        requests, local_uncounted, ops = group_ops(store._local, tables)
        uncounted += local_uncounted
    ops += counter_ops(store.variants, store.metric_names, events, requests,
                       {"uncounted": uncounted, "segment_overflow": overflow,
                        "dropped_exposures": dropped[0], "dropped_values": dropped[1]},
                       epochs, looks)
    ops += latency_ops(store.variants, hist, hist_sum)
    return pack_batches(ops, store.prefix, store._worker, store._batch_no)
