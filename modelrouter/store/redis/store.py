"""The Redis store: many workers and hosts, one experiment. Needs ``modelrouter[redis]``.

No network on the request path: ``expose``/``record_*`` only touch a local buffer under a lock
(as :class:`~modelrouter.store.memory.MemoryStore` does). A flusher thread writes the buffered
deltas every ``flush_seconds`` or ``flush_events`` events as Lua scripts, each atomic and
idempotent (a batch id is set with ``SET NX`` in the same script, so a batch whose reply was
lost is never applied twice). Everything shared merges by addition or first-writer-wins
(the keys: store/redis/layout.py).

Redis down or slow: routing keeps serving; the buffer keeps deltas up to ``max_buffer`` unit
entries and counts what it had to refuse (``dropped_exposures``, ``dropped_values``, flushed as
counters once Redis is back and shown by the analysis). Reconnects back off exponentially.
Request-level experiments buffer O(groups) sums, so they never drop.

Each batch applies completely or not at all (batch.py validates it in its script before
writing); one Redis can never apply (a total overflowing a float, a key another client
overwrote) is dropped whole and counted with its reason (``refused_*`` counters, the
``refused`` hash), reported in ``Snapshot.losses`` and the analysis notes. Errors say which
failure it was: ``... is unavailable`` (no answer) or ``... refused ...`` (an error reply such
as OOM or READONLY); both keep the batch queued for a retry.

The hot path defends what the script could not take: a unit id that is not valid UTF-8 (a lone
surrogate: :class:`~modelrouter.exceptions.UnitIdError`) and a value whose square is not a
finite float (:class:`~modelrouter.exceptions.InvalidValueError`), refused before anything is
buffered. (The routing core refuses far smaller values first; this is the store's own bound.)

Snapshots (:meth:`RedisStore.snapshot`) read every key in one MULTI transaction and rebuild the
same :class:`~modelrouter.store.types.Snapshot` the memory store gives, so the analysis is
unchanged. Decision ids stay local to the worker that issued them; feedback by unit id
(``record_unit``) may arrive at any worker.

Module layout (``store -> batch, snapshot -> buffer, layout``): the request path writes a
:class:`~.buffer.DeltaBuffer`; a flush swaps it out and :func:`~.batch.drain_ops` turns it (with
the local store's ``take_deltas``) into batches; :func:`~.snapshot.build_snapshot` rebuilds
snapshots. Those modules get plain values (a :class:`~.layout.Layout`), never the store.

Thread safety: hot-path methods hold ``_lock`` (the buffer, the pending ring, the decision
counter) for microseconds; the local memory store has its own lock (segment codes, epochs,
looks, request-level sums). The flusher holds ``_flush_lock`` (the batch queue, the meta check,
the flusher thread) while talking to Redis, taking ``_lock`` only to swap the buffer; no
code holds ``_lock`` and the local store's lock together.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import StoreError
from modelrouter.store.histogram import slot_of as latency_slot
from modelrouter.store.looks import Look
from modelrouter.store.memory import MemoryStore
from modelrouter.store.protocol import BaseStore
from modelrouter.store.redis.batch import LUA, Batch, drain_ops, pack_batches
from modelrouter.store.redis.buffer import MAX_SQUARABLE, DeltaBuffer, too_large, unit_text
from modelrouter.store.redis.layout import Layout, text
from modelrouter.store.redis.snapshot import build_snapshot, check_meta, culprit_key
from modelrouter.store.ring import PendingRing
from modelrouter.store.types import EpochInfo, Snapshot

if TYPE_CHECKING:
    import numpy as np

    from modelrouter.config import MetricSpec

__all__ = ["RedisStore"]

log = logging.getLogger("modelrouter.store.redis")

def _redis() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError("store='redis://...' needs redis-py: pip install "
                         "'modelrouter[redis]'") from None
    return redis


class RedisStore(BaseStore):
    """Local buffer on the request path, Redis as the merged state of every worker."""

    def __init__(self, url: str, variants: Sequence[str], metrics: Mapping[str, MetricSpec], *,
                 experiment: str = "experiment", level: str = "user",
                 max_pending: int = 1_000_000, attribution_window: float = 86_400.0,
                 segment_dims: Sequence[str] = (), segment_cap: int = 50,
                 clock: Callable[[], float] = time.time, flush_seconds: float = 0.1,
                 flush_events: int = 10_000, max_buffer: int = 1_000_000,
                 client: Any = None, socket_timeout: float = 5.0,
                 max_backoff: float = 5.0) -> None:
        super().__init__(variants, metrics, level=level, max_pending=max_pending,
                         attribution_window=attribution_window, segment_dims=segment_dims,
                         segment_cap=segment_cap, clock=clock)
        redis = _redis()
        self.url = url
        self.flush_seconds = float(flush_seconds)
        self.flush_events = int(flush_events)
        self.max_buffer = int(max_buffer)
        self.max_backoff = float(max_backoff)
        self.experiment = experiment
        self.layout = Layout.of(experiment, self.variants, self.metrics, level,
                                self.segment_dims, self.segment_cap)
        self.prefix = self.layout.prefix
        # a redis-py client (Any: redis-py is an optional dependency without stubs here)
        self._client = client if client is not None else redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
        self._script = self._client.register_script(LUA)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # no answer at all (connection refused or lost, timeout), as opposed to an error reply
        self._unavailable: tuple[type[BaseException], ...] = (
            redis.ConnectionError, redis.TimeoutError, OSError)
        self._script_keys = [self.prefix + "counters", self.prefix + "refused"]
        # the local reference store: segment codes, epochs, looks; request level: everything
        self._local = MemoryStore(self.variants, self.metrics, level=level,
                                  max_pending=max_pending,
                                  attribution_window=attribution_window,
                                  segment_dims=segment_dims, segment_cap=segment_cap,
                                  clock=clock)
        self._lock = threading.Lock()
        self._seq = 0
        # unit level: this worker's pending decisions (payload: variant; column: unit id)
        self.ring = PendingRing(self.max_pending, self.attribution_window, clock)
        self._ring_unit = self.ring.add_objects("")
        self._lat, self._err = self.metric_index["latency_ms"], self.metric_index["error"]
        self._buf = DeltaBuffer(len(self.variants), self.max_buffer)
        self._dropped = [0, 0]  # exposures, values: flushed so far, for stats()
        self._flush_lock = threading.Lock()
        self._queue: list[Batch] = []
        self._batch_no = 0
        self._worker = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._meta_ok = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.flushed_events = 0
        self.failed_flushes = 0
        self.refused_batches = 0  # by this worker; every worker's: snapshot().losses
        self.last_refusal: str | None = None

    # -- protocol: epochs, segments, looks -----------------------------------------------
    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        """Record a weight change locally; flushed with first-writer-wins semantics."""
        self._local.begin_epoch(epoch, mode, weights)
        info = self._local.epochs()[-1]
        with self._lock:
            self._buf.epochs.append(info)

    def epochs(self) -> tuple[EpochInfo, ...]:
        """The epochs this worker recorded (every worker's: ``snapshot().epochs``)."""
        return self._local.epochs()

    def add_look(self, look: Look) -> None:
        """Record a look locally (checked against this worker's looks); flushed first-writer-
        wins per (metric, variant, number), so workers agree on the official looks."""
        self._local.add_look(look)
        with self._lock:
            self._buf.looks.append(look)

    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        """Local codes of segment values; translated back to values when flushed."""
        return self._local.segment_codes(values)

    # -- protocol: hot path --------------------------------------------------------------
    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = (), now: float | None = None) -> int:
        """Count one routed request in the buffer; return its decision handle."""
        if self._thread is None:
            self.start()
        if not self.unit_level:
            return self._local.expose(None, variant, propensity, epoch, segment, now)
        if unit is None:
            raise ValueError(f"a {self.level}-level store counts units: unit is None")
        if not unit.isascii():
            unit_text(unit)
        if now is None:
            now = self.clock()
        with self._lock:
            seq = self._seq
            self._seq = seq + 1
            buf = self._buf
            buf.expose(unit, variant, epoch, propensity, now, segment)
            ring = self.ring
            if seq < ring.capacity:  # PendingRing.remember inlined: len(ring) == seq here
                ring.seq.append(seq)
                ring.time.append(now)
                ring.row.append(variant)
                self._ring_unit.append(unit)
            else:
                self._ring_unit[ring.remember(seq, now, variant)] = unit
            size = buf.size
        if size >= self.flush_events:
            self._wake.set()
        return seq

    def uncounted(self) -> None:
        """Count a request served but left out of the experiment."""
        with self._lock:
            self._buf.uncounted += 1

    def record_seq(self, seq: int, metric: int, value: float, *, window: bool = True) -> None:
        """Buffer a value for one of this worker's decisions."""
        if not -MAX_SQUARABLE <= value <= MAX_SQUARABLE:  # NaN fails too
            raise too_large(value)
        if not self.unit_level:
            self._local.record_seq(seq, metric, value, window=window)
            return
        with self._lock:
            slot = self.ring.slot_of(seq, window)
            self._buf.add(self._ring_unit[slot], metric, self.ring.row[slot], value)

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Buffer the automatic metrics of a finished request."""
        if not (-MAX_SQUARABLE <= latency_ms <= MAX_SQUARABLE
                and -MAX_SQUARABLE <= error <= MAX_SQUARABLE):
            bad_latency = not -MAX_SQUARABLE <= latency_ms <= MAX_SQUARABLE
            raise too_large(latency_ms if bad_latency else error)
        if not self.unit_level:
            self._local.record_auto(seq, latency_ms, error)
            return
        h = latency_slot(latency_ms)
        with self._lock:
            slot = self.ring.find(seq)
            if slot < 0:
                return
            unit, variant = self._ring_unit[slot], self.ring.row[slot]
            buf = self._buf
            buf.add(unit, self._lat, variant, latency_ms)
            buf.add(unit, self._err, variant, error)
            buf.add_latency(variant, h, latency_ms)

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Buffer a value for a unit; the unit may have been exposed by another worker."""
        if not unit.isascii():
            unit_text(unit)
        if not -MAX_SQUARABLE <= value <= MAX_SQUARABLE:
            raise too_large(value)
        with self._lock:
            buf = self._buf
            buf.add(unit, metric, buf.variant_of(unit), value)

    def has_unit(self, unit: str) -> bool:
        """Whether the unit is in this worker's unflushed buffer (no network)."""
        return unit in self._buf.first

    # -- flushing ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the flusher thread (idempotent; also started by the first request)."""
        with self._flush_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="modelrouter-redis-flush",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self._flush_once()
                backoff = 0.05
            except StoreError as exc:
                self.last_error = str(exc)
                self.failed_flushes += 1
                log.warning("modelrouter: Redis flush failed (retry in %.2fs): %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2.0, self.max_backoff)

    def flush(self) -> None:
        """Write every buffered delta to Redis now; StoreError if Redis cannot be reached
        (the deltas stay buffered and the flusher retries)."""
        self._flush_once()

    def close(self) -> None:
        """Stop the flusher and flush what is left (best effort: errors are logged)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self._flush_once()
        except StoreError as exc:
            log.error("modelrouter: final Redis flush failed, deltas lost: %s", exc)

    def _flush_once(self) -> None:
        with self._flush_lock:
            doing = "the configuration check"
            try:
                if not self._meta_ok:
                    self._check_meta()
                if not self._queue:
                    self._queue = self._drain()
                while self._queue:
                    batch_id, keys, argv = self._queue[0]
                    doing = f"batch {batch_id}"
                    reply = self._script(keys=[self.prefix + "batch:" + batch_id,
                                               *self._script_keys, *keys],
                                         args=argv, client=self._client)
                    self._queue.pop(0)
                    if isinstance(reply, list) and reply and reply[0] == -1:
                        self._refused(batch_id, argv, reply)
                    else:
                        self.flushed_events += int(argv[2])
                self.last_error = None
            except self._unavailable as exc:
                self._meta_ok = False
                raise StoreError(f"Redis at {self._safe_url()} is unavailable ({doing} is kept "
                                 f"and retried): {exc}") from exc
            except self._errors as exc:  # an error reply: Redis is there but said no
                self._meta_ok = False
                raise StoreError(f"Redis at {self._safe_url()} refused {doing} (kept and "
                                 f"retried): {exc}") from exc

    def _refused(self, batch_id: str, argv: list[str], reply: list[Any]) -> None:
        """A batch the script refused: dropped whole, already counted in Redis; log it."""
        reason, detail = (text(v) for v in reply[1:3])
        self.refused_batches += 1
        self.last_refusal = f"batch {batch_id} ({argv[2]} updates) refused: {reason}: {detail}"
        log.error("modelrouter: Redis refused %s; it is dropped whole and counted in the "
                  "losses", self.last_refusal)

    def _safe_url(self) -> str:
        from modelrouter.config.store import redact_url

        return redact_url(self.url)

    def _check_meta(self) -> None:
        check_meta(self.layout, self._client)
        self._meta_ok = True

    def _drain(self) -> list[Batch]:
        """Swap the buffer out under the lock; turn it into idempotent script calls
        (``_flush_lock`` held)."""
        fresh = DeltaBuffer(len(self.variants), self.max_buffer)
        with self._lock:
            buf, self._buf = self._buf, fresh
        self._dropped[0] += buf.dropped[0]
        self._dropped[1] += buf.dropped[1]
        ops = drain_ops(buf, self._local.take_deltas(), self.layout)
        batches = pack_batches(ops, self.prefix, self._worker, self._batch_no)
        self._batch_no += len(batches)
        return batches

    # -- reading -------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        """This worker's buffer and flusher state (no network)."""
        buf = self._buf
        return {"buffered": buf.size, "queued_batches": len(self._queue),
                "dropped_exposures": self._dropped[0] + buf.dropped[0],
                "dropped_values": self._dropped[1] + buf.dropped[1],
                "flushed_events": self.flushed_events, "failed_flushes": self.failed_flushes,
                "last_error": self.last_error, "refused_batches": self.refused_batches,
                "last_refusal": self.last_refusal}

    def _read(self, names: list[str]) -> dict[str, dict[str, str]]:
        try:  # one MULTI: batches are atomic scripts, so the read is a consistent cut
            pipe = self._client.pipeline(transaction=True)
            for n in names:
                pipe.hgetall(self.prefix + n)
            results = pipe.execute()
        except self._unavailable as exc:
            raise StoreError(f"Redis at {self._safe_url()} is unavailable: {exc}") from exc
        except self._errors as exc:
            raise StoreError(f"Redis at {self._safe_url()} refused the read: {exc}") from exc
        return {n: {text(k): text(v) for k, v in r.items()} for n, r in zip(names, results)}

    def event_counters(self, metric: str) -> dict[str, np.ndarray]:
        """Global per-variant ``n``/``sum``/``sumsq`` of every recorded event of ``metric``
        (additive over workers; one small read): counters for request-level bandits."""
        import numpy as np

        ev = self._read(["events"])["events"]
        return {c: np.array([float(ev.get(f"{v}:{metric}:{c}", 0.0)) for v in self.variants])
                for c in ("n", "sum", "sumsq")}

    def snapshot(self) -> Snapshot:
        """The merged state of every worker (what they have flushed), as one Snapshot."""
        taken = self.clock()
        names = ["first", "exposures", "requests", "counters", "epochs", "groups", "looks",
                 "latency", "refused"]
        names += [f"{c}:{m}" for m in self.metric_names for c in "xy"]
        data = self._read(names)
        try:
            return build_snapshot(self.layout, data, taken)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # JSON errors included
            raise StoreError(f"Redis at {self._safe_url()} holds malformed data for experiment "
                             f"{self.experiment!r} ({culprit_key(self.prefix, data)}): "
                             f"{exc}") from None

    def __len__(self) -> int:
        return self._buf.size
