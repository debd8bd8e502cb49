"""Turning a worker's drained buffer into idempotent, all-or-nothing Redis batches (store.py).

:func:`drain_ops` takes plain values: a swapped-out :class:`~.buffer.DeltaBuffer`, the local
memory store's :class:`~modelrouter.store.types.Deltas` and the experiment's
:class:`~.layout.Layout`; it never sees the store.

An op is ``(kind, hash, field, value)`` with kind ``i`` (add an integer), ``f`` (add a
float), ``n`` (set if absent) or ``p`` (a value forwarded to the worker that owns its decision,
control.py: written to the owner's inbox hash under a field named by this batch and op, or
pushed to the owner's list if the hash does not exist, then PEXPIREd to ``field`` ms). Ops are
packed into chunks; each chunk is one call of :data:`LUA`, which

1. returns 0 at once when the chunk's batch id (marker key) is ``1``: a retried batch whose
   reply was lost is not applied twice;
2. validates everything before it writes anything: the ops decode (a unit id with a lone
   surrogate does not), every key is a hash (or a list: an inbox's list) or absent, every increment
   is a finite number (an integer for ``i``), every stored value it adds to is a number, and
   every total, computed as the batch would leave it, stays finite (and, for ``i``, below
   2**53, where a double still counts by one);
3. only then sets the marker to ``started``, writes every total with ``HSET`` (the value it
   computed, one command per hash) and the ``n`` and ``p`` ops, and sets the marker to ``1``,
   last.

A Redis script is atomic towards other clients, but a command failing in the middle of one
leaves the writes before it in place; with every failure checked first, a chunk is applied
completely or not at all. A chunk that fails the checks can never apply, so the script drops it
whole and counts it, atomically, where every worker's snapshot sees it: ``refused_batches`` and
what the chunk held (``refused_requests``, ``refused_exposures``, ``refused_values``: the
``lost`` tallies :func:`pack_batches` attaches) in the ``counters`` hash, the reason in the
``refused`` hash (``ops``, ``type``, ``stored``, ``increment``, ``overflow``, ``torn``: see
:data:`~modelrouter.store.protocol.REFUSAL_REASONS`), and the marker, so a retry neither
applies nor counts it again. It returns ``[-1, reason, detail]``.

Why totals and not ``HINCRBY``: Redis logs a script's writes to its AOF as one ``MULTI`` ...
``EXEC`` block. Killed while writing that block, Redis 7.0 (fixed in Valkey by
valkey-io/valkey#4342) cuts the file at the last whole command on restart, leaving an open
``MULTI`` whose commands the *next* load runs with the following transaction. The worker,
whose reply was lost, has sent the batch again in between, so increments in the orphan part
would be counted twice (tests/store/test_redis_torn_aof.py; seen as 12,017 requests for
12,000 with Redis killed 30 times under load). Totals written by ``HSET`` are the same values
the retry writes, so replaying part of them first changes nothing. If Redis restarts again
before the retry, that load applies the orphan part, and the retry finds the marker
``started``: it cannot tell which part is in, so it is refused whole and counted as ``torn``
(its requests and values may be partly in the totals as well; they are never added twice).
A forwarded value is written to a field named by the batch and the op, so a replay writes the
same field again; only an owner that has not polled yet (or runs an older version) gets it
pushed to a list, where a replayed push would be a second copy.

Set if absent (``n``: a unit's first exposure, a covariate, an epoch, a look) is ``HEXISTS``
then ``HSET``, not ``HSETNX``: the AOF logs a script's writes as the commands it ran, and a
replayed ``HSETNX`` decides again. Replayed before the transaction after it (another
worker's, which wrote the same field live because the torn batch was not loaded then), the
orphan's ``HSETNX`` would win that field at the next load, against what every worker saw
live. Logged as ``HSET``, the later transaction's own ``HSET`` overwrites it again.

Thread safety: pure functions of their arguments (the flusher owns a drained buffer alone).
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Mapping, Sequence

import numpy as np

from modelrouter.store.histogram import N_SLOTS
from modelrouter.store.looks import Look
from modelrouter.store.losses import DROP_PREFIX, FORWARDS_LOST, FORWARDS_REFUSED
from modelrouter.store.redis.buffer import DeltaBuffer, FirstExposure
from modelrouter.store.redis.layout import INBOX, LEGACY_INBOX, Layout
from modelrouter.store.redis.scripts import LUA
from modelrouter.store.redis.tracking import Forward, SyncDeltas
from modelrouter.store.rows import SUMS_PER_METRIC
from modelrouter.store.types import Deltas, EpochInfo

__all__ = ["FIRST_KEY", "LUA", "counter_ops", "decision_ops", "drain_ops", "forward_ops",
           "covariate_ops", "group_ops", "latency_ops", "lost_tallies", "pack_batches",
           "training_ops", "unit_ops"]

Op = tuple[str, str, str, str]
Batch = tuple[str, list[str], list[str]]

CHUNK = 2_000  # ops per Lua call: one atomic script keeps Redis busy ~10 ms, not seconds
MARKER_TTL = "86400"

FIRST_KEY = 4  # KEYS index of an op's first hash (after marker, counters, refused)

_COMPACT = (",", ":")


def unit_ops(first: Mapping[str, FirstExposure], exposures: Mapping[str, int],
             xy: Mapping[tuple[str, int], list[float]], metric_names: Sequence[str],
             tables: Sequence[Sequence[str]]) -> list[Op]:
    """First exposures (set if absent: the first writer wins), exposure counts and per-unit
    x/y sums."""
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


def covariate_ops(covariates: Mapping[tuple[str, int], tuple[float, float]],
                  names: Sequence[str]) -> list[Op]:
    """Covariate values (set if absent: the first value any worker flushed wins), as JSON
    ``[value, recorded_at]`` (``repr`` floats: exact round trip)."""
    return [("n", "cov:" + names[i], unit, json.dumps([v, t], separators=_COMPACT))
            for (unit, i), (v, t) in covariates.items()]


def group_ops(groups: Sequence[tuple[tuple[int, int, tuple[int, ...]], list[float]]],
              tables: Sequence[Sequence[str]]) -> list[Op]:
    """Request level: group sum increments, keyed by variant, epoch and segment *values*."""
    ops: list[Op] = []
    for (variant, epoch, seg), s in groups:
        name = json.dumps([variant, epoch, [tables[d][c] for d, c in enumerate(seg)]],
                          separators=_COMPACT)
        ops += [("f", "groups", f"{name}#{k}", repr(v)) for k, v in enumerate(s) if v]
    return ops


def decision_ops(groups: Sequence[tuple[tuple[int, int, tuple[int, ...], int], list[float]]],
                 tables: Sequence[Sequence[str]]) -> list[Op]:
    """Bandit decisions: group sum increments keyed by variant, epoch, segment values and tag
    (the IPW analysis of every worker's decisions reads them back, snapshot.py)."""
    ops: list[Op] = []
    for (variant, epoch, seg, tag), s in groups:
        name = json.dumps([variant, epoch, [tables[d][c] for d, c in enumerate(seg)], tag],
                          separators=_COMPACT)
        ops += [("f", "decisions", f"{name}#{k}", repr(v)) for k, v in enumerate(s) if v]
    return ops


def training_ops(names: Sequence[str], deltas: Sequence[Sequence[float]],
                 updates: int) -> list[Op]:
    """Bandit training counter increments (``<counter>:<arm>``) and the updates count."""
    ops: list[Op] = [("f", "training", f"{n}:{i}", repr(float(v)))
                     for n, row in zip(names, deltas) for i, v in enumerate(row) if v]
    if updates:
        ops.append(("f", "training", "updates", repr(float(updates))))
    return ops


def forward_ops(forwards: Sequence[Forward], ttl_ms: int) -> list[Op]:
    """Values for decisions of other workers, pushed to their inboxes (control.py): ``p``
    ops on the owner's inbox hash, the time to live (ms) as field."""
    return [("p", INBOX + owner, str(ttl_ms), json.dumps([seq, m, v, full]))
            for owner, seq, m, v, full in forwards]


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


def lost_tallies(ops: Sequence[Op]) -> list[list[str | int]]:
    """What a chunk holds, as ``[counter, n]`` pairs: the requests, exposures and feedback
    values that go missing if Redis refuses it (added to the ``counters`` hash then)."""
    requests = exposures = values = 0.0
    for _op, key, field, value in ops:
        if key == "requests":
            requests += float(value)
        elif key == "exposures":
            exposures += float(value)
        elif key.startswith("y:"):
            values += float(value)
        elif key == "groups":  # request level: sum k = 1 + 5m + 1 counts metric m's values
            k = field.rpartition("#")[2]
            if k.isdigit() and int(k) % SUMS_PER_METRIC == 2:
                values += float(value)
    tallies: list[list[str | int]] = []
    for name, n in (("refused_requests", requests), ("refused_exposures", exposures),
                    ("refused_values", values)):
        if n > 0 and math.isfinite(n):
            tallies.append([name, int(n)])
    return tallies


def pack_batches(ops: Sequence[Op], prefix: str, worker: str, last_no: int) -> list[Batch]:
    """Chunks of ops as ``(batch id, hash keys, ARGV)`` for :data:`LUA` (the hash keys are
    ``KEYS[FIRST_KEY:]``; the caller puts marker, counters and refused keys first)."""
    batches = []
    for i, start in enumerate(range(0, len(ops), CHUNK)):
        chunk = ops[start:start + CHUNK]
        key_index: dict[str, int] = {}
        packed: list[list[str | int]] = []
        for op, key, field, value in chunk:
            index = key_index.setdefault(prefix + key, len(key_index) + FIRST_KEY)
            if op == "p":  # the owner's list too (where an unregistered owner reads): its index
                legacy = prefix + LEGACY_INBOX + key[len(INBOX):]
                field = f"{field}:{key_index.setdefault(legacy, len(key_index) + FIRST_KEY)}"
            packed.append([op, index, field, value])
        argv = [MARKER_TTL, json.dumps(packed, separators=_COMPACT), str(len(packed)),
                json.dumps(lost_tallies(chunk), separators=_COMPACT)]
        batches.append((f"{worker}:{last_no + i + 1}", list(key_index), argv))
    return batches


def drain_ops(buf: DeltaBuffer, local: Deltas, layout: Layout, sync: SyncDeltas | None = None,
              counter_names: Sequence[str] = (), forwards: Sequence[Forward] = (),
              ttl_ms: int = 0) -> list[Op]:
    """Every op of a swapped-out buffer and of the local store's deltas (request level: its
    group sums, requests and latencies; both levels: segment overflow), and of the bandit's
    decision deltas when it tracks decisions (tracking.py) and the values forwarded to other
    workers (control.py)."""
    tables = local.segment_tables
    if layout.unit_level:
        ops = unit_ops(buf.first, buf.exposures, buf.xy, layout.metric_names, tables)
        ops += covariate_ops(buf.covariates, layout.covariate_names)
    else:
        ops = group_ops(local.groups, tables)
    requests = [a + b for a, b in zip(buf.requests, local.requests)]
    ops += counter_ops(layout.variants, layout.metric_names, buf.events, requests,
                       {"uncounted": buf.uncounted + local.uncounted,
                        "unattributed": buf.unattributed + local.unattributed,
                        "segment_overflow": local.segment_overflow,
                        "dropped_exposures": buf.dropped[0], "dropped_values": buf.dropped[1],
                        FORWARDS_LOST: buf.forwards_lost[0],
                        FORWARDS_REFUSED: buf.forwards_lost[1],
                        **{DROP_PREFIX + r: n for r, n in buf.covariate_drops.items()}},
                       buf.epochs, buf.looks)
    ops += latency_ops(layout.variants, buf.hist, buf.hist_sum)
    ops += latency_ops(layout.variants, local.hist, local.hist_sum)
    if sync is not None:
        groups, counters, updates = sync
        ops += decision_ops(groups, tables)
        ops += training_ops(counter_names, counters, updates)
    return ops + forward_ops(forwards, ttl_ms)
