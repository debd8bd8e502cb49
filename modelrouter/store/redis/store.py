"""The Redis store: many workers and hosts, one experiment. Needs ``modelrouter[redis]``.

No network on the request path: ``expose``/``record_*`` only touch a local buffer under a lock
(as :class:`~modelrouter.store.memory.MemoryStore` does). A flusher thread writes the buffered
deltas every ``flush_seconds`` or ``flush_events`` events as Lua scripts, each atomic and
idempotent (a batch id is set as a marker in the same script, so a batch whose reply was
lost is never applied twice; the script writes totals, not increments, so a batch torn in
Redis's AOF by a kill is never counted twice either: batch.py). Everything shared merges by
addition or first-writer-wins (the keys: store/redis/layout.py).

Redis down or slow: routing keeps serving; the buffer keeps deltas up to ``max_buffer`` unit
entries and counts what it had to refuse (``dropped_exposures``, ``dropped_values``, flushed as
counters once Redis is back and shown by the analysis). Reconnects back off exponentially.
Request-level experiments buffer O(groups) sums, so they never drop.

Each batch applies completely or not at all (batch.py validates it in its script before
writing); one Redis can never apply (a total overflowing a float, a key another client
overwrote) is dropped whole and counted with its reason (``refused_*`` counters, the
``refused`` hash), reported in ``Snapshot.losses`` and the analysis notes, as are finished
requests whose decision had left this worker's pending ring (``unattributed``, every worker's
added: their latency and error had no unit to go to). Errors say which
failure it was: ``... is unavailable`` (no answer) or ``... refused ...`` (an error reply such
as OOM or READONLY); both keep the batch queued for a retry.

The hot path defends what the script could not take: a unit id that is not valid UTF-8 (a lone
surrogate: :class:`~modelrouter.exceptions.UnitIdError`) and a value whose square is not a
finite float (:class:`~modelrouter.exceptions.InvalidValueError`), refused before anything is
buffered. (The routing core refuses far smaller values first; this is the store's own bound.)

Snapshots (:meth:`RedisStore.snapshot`) read every key in one MULTI transaction and rebuild the
same :class:`~modelrouter.store.types.Snapshot` the memory store gives, so the analysis is
unchanged. Feedback by unit id may arrive at any worker; a value for another worker's
decision is forwarded to it (sharing.py). Bandit mode: each worker tracks its decisions; their
sums and the training counters are flushed as deltas and merged (tracking.py, control.py).

Module layout: the request path writes a :class:`~.buffer.DeltaBuffer`; the flusher
(flusher.py) swaps it out and :func:`~.batch.drain_ops` turns it into batches;
:func:`~.snapshot.build_snapshot` rebuilds snapshots, from plain values, never the store.

Thread safety: hot-path methods hold ``_lock`` (the buffer, the pending ring, the decision
counter) for microseconds; the local memory store has its own lock (segment codes, epochs,
looks, request-level sums). The flusher holds its lock (the batch queue, the meta check, the
thread) while talking to Redis, taking ``_lock`` only to swap the buffer; no code holds
``_lock`` and the local store's lock together.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import StoreError
from modelrouter.store.histogram import slot_of as latency_slot
from modelrouter.store.looks import Look
from modelrouter.store.memory import MemoryStore
from modelrouter.store.protocol import BaseStore
from modelrouter.store.redis.batch import Batch, drain_ops, pack_batches
from modelrouter.store.redis.buffer import MAX_SQUARABLE, DeltaBuffer, too_large, unit_text
from modelrouter.store.redis.control import SharedControl
from modelrouter.store.redis.covariates import CovariateMembers
from modelrouter.store.redis.flusher import Flusher
from modelrouter.store.redis.layout import Layout, text
from modelrouter.store.redis.sharing import SharedMembers
from modelrouter.store.redis.snapshot import build_snapshot, culprit_key
from modelrouter.store.redis.tracking import DecisionSync, Forward
from modelrouter.store.ring import PendingRing
from modelrouter.store.types import EpochInfo, Snapshot

if TYPE_CHECKING:
    import numpy as np

    from modelrouter.config import MetricSpec
    from modelrouter.store.decisions import DecisionTracker

__all__ = ["RedisStore"]

log = logging.getLogger("modelrouter.store.redis")

def _redis() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError("store='redis://...' needs redis-py: pip install "
                         "'modelrouter[redis]'") from None
    return redis


class RedisStore(SharedMembers, CovariateMembers, BaseStore):
    """Local buffer on the request path, Redis as the merged state of every worker."""

    supports_bandit = True
    shared = True

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
        self._owns_client = client is None  # close() closes only a client it made
        self._client = client if client is not None else redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # no answer at all (connection refused or lost, timeout), as opposed to an error reply
        self._unavailable: tuple[type[BaseException], ...] = (
            redis.ConnectionError, redis.TimeoutError, OSError)
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
        self._flusher = Flusher(self._client, self.layout, self._drain, self.poll,
                                flush_seconds=self.flush_seconds, max_backoff=self.max_backoff,
                                errors=self._errors, unavailable=self._unavailable,
                                where=f"Redis at {self._safe_url()}",
                                forked=self._after_fork)
        self.control = SharedControl(self._client, self.layout, self._guard, self._unavailable,
                                     inbox_ttl_ms=int(self.attribution_window * 1000))
        self._sync: DecisionSync | None = None  # bandit mode: this worker's decisions
        self._watchers: list[Callable[[], object]] = []
        self._owner: str | None = None  # this process's decision-id prefix (its inbox)
        self._forwards: list[Forward] = []  # values for other workers' decisions
        self.forwarded = [0, 0, 0]  # values forwarded, taken from the inbox, lost there

    def _after_fork(self) -> None:
        """In a forked child (the flusher calls it): what the parent routed and recorded
        before the fork and has not flushed is the parent's to flush. The child's copy of it
        (the buffer, the local store's deltas, the bandit's training deltas, values for other
        workers) is dropped, so nothing is counted once per process
        (tests/store/test_redis_fork_buffer.py); its stats count from zero. A lock another
        thread held at the fork is replaced (no thread of the child would give it)."""
        self._lock = threading.Lock()
        self._buf = DeltaBuffer(len(self.variants), self.max_buffer)
        self._local.take_deltas()
        if self._sync is not None:
            self._sync.take()
        self._forwards = []
        self._dropped = [0, 0]
        self.forwarded = [0, 0, 0]

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
        if self._flusher.thread is None:
            self._flusher.start()
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
            self._flusher.wake.set()
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
            if self._sync is not None:
                with self._lock:
                    self._sync.tracker.apply(seq, metric, value)
            return
        with self._lock:
            slot = self.ring.slot_of(seq, window)
            self._buf.add(self._ring_unit[slot], metric, self.ring.row[slot], value)
            if self._sync is not None:
                self._sync.tracker.apply(seq, metric, value)

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Buffer the automatic metrics of a finished request."""
        if not (-MAX_SQUARABLE <= latency_ms <= MAX_SQUARABLE
                and -MAX_SQUARABLE <= error <= MAX_SQUARABLE):
            bad_latency = not -MAX_SQUARABLE <= latency_ms <= MAX_SQUARABLE
            raise too_large(latency_ms if bad_latency else error)
        if not self.unit_level:
            self._local.record_auto(seq, latency_ms, error)
        else:
            h = latency_slot(latency_ms)
            with self._lock:
                slot = self.ring.find(seq)
                if slot < 0:  # evicted by newer decisions (or a restart): counted, not lost
                    self._buf.unattributed += 1
                    return
                unit, variant = self._ring_unit[slot], self.ring.row[slot]
                buf = self._buf
                buf.add(unit, self._lat, variant, latency_ms)
                buf.add(unit, self._err, variant, error)
                buf.add_latency(variant, h, latency_ms)
        if self._sync is not None:
            with self._lock:
                self._sync.tracker.apply(seq, self._lat, latency_ms)
                self._sync.tracker.apply(seq, self._err, error)

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Buffer a value for a unit; the unit may have been exposed by another worker."""
        if not unit.isascii():
            unit_text(unit)
        if not -MAX_SQUARABLE <= value <= MAX_SQUARABLE:
            raise too_large(value)
        with self._lock:
            buf = self._buf
            buf.add(unit, metric, buf.variant_of(unit), value)
            if self._sync is not None:
                self._sync.tracker.apply_unit(unit, metric, value, self.ring.alive)

    def has_unit(self, unit: str) -> bool:
        """Whether the unit is in this worker's unflushed buffer (no network)."""
        return unit in self._buf.first

    # -- bandit decisions (tracking.py) ----------------------------------------------------
    def track_decisions(self, tracker: DecisionTracker) -> None:
        """Track this worker's bandit decisions; their sums and training counters are
        flushed to Redis and merged with every other worker's."""
        with self._lock:
            self._sync = DecisionSync(tracker)

    def expose_decision(self, unit: str | None, variant: int, propensity: float, epoch: int,
                        segment: tuple[int, ...] = (), now: float | None = None,
                        tag: int = 0) -> int:
        """:meth:`expose` a bandit decision and open it in this worker's tracker."""
        now = self.clock() if now is None else now
        seq = self.expose(unit, variant, propensity, epoch, segment, now)
        with self._lock:
            if self._sync is not None:
                self._sync.tracker.open(seq, variant, epoch, segment, tag, unit, now)
        return seq

    def take_training(self) -> tuple[dict[str, np.ndarray], int]:
        """The training counters of every worker (as flushed to Redis) and this worker's
        updates since the last take; this worker's own counters if Redis cannot be read
        (logged), so routing goes on."""
        if self._sync is None:
            return super().take_training()
        counters = self._global_training()
        with self._lock:
            local, pending = self._sync.tracker.take_counters()
        return (local if counters is None else counters), pending

    def peek_training(self) -> dict[str, np.ndarray]:
        """:meth:`take_training` without starting a new refresh count."""
        if self._sync is None:
            return super().peek_training()
        counters = self._global_training()
        if counters is None:
            with self._lock:
                return self._sync.tracker.take_counters(reset=False)[0]
        return counters

    def _global_training(self) -> dict[str, np.ndarray] | None:
        assert self._sync is not None
        try:
            return self.control.training(self._sync.tracker.counter_names, len(self.variants))
        except StoreError as exc:
            log.warning("modelrouter: bandit counters of this worker only: %s", exc)
            return None

    # -- flushing (flusher.py) ----------------------------------------------------------
    def start(self) -> None:
        """Start the flusher thread (idempotent; also started by the first request)."""
        self._flusher.start()

    def flush(self) -> None:
        """Write every buffered delta to Redis now; StoreError if Redis cannot be reached
        (the deltas stay buffered and the flusher retries)."""
        self._flusher.flush()

    def close(self) -> None:
        """Stop the flusher and flush what is left (best effort: errors are logged), then
        close the connections of the client this store made (a client passed in is the
        caller's to close). Left open, a connection is closed only when garbage collection
        finds the store, which may be never in a long-lived process."""
        try:
            self._flusher.close()
        finally:
            if self._owns_client:
                self._client.close()

    def _safe_url(self) -> str:
        from modelrouter.config.store import redact_url

        return redact_url(self.url)

    def _drain(self, worker: str, last_no: int) -> list[Batch]:
        """Swap the buffer out under the lock; turn it into idempotent script calls
        (the flusher's lock held)."""
        fresh = DeltaBuffer(len(self.variants), self.max_buffer)
        with self._lock:
            buf, self._buf = self._buf, fresh
            sync = None if self._sync is None else self._sync.take()
            names = () if self._sync is None else self._sync.tracker.counter_names
            forwards, self._forwards = self._forwards, []
        self._dropped[0] += buf.dropped[0]
        self._dropped[1] += buf.dropped[1]
        ops = drain_ops(buf, self._local.take_deltas(), self.layout, sync, names, forwards,
                        int(self.attribution_window * 1000))
        return pack_batches(ops, self.prefix, worker, last_no)

    # -- reading -------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        """This worker's buffer and flusher state (no network)."""
        buf = self._buf
        return {"buffered": buf.size, **self._flusher.stats(),
                "dropped_exposures": self._dropped[0] + buf.dropped[0],
                "dropped_values": self._dropped[1] + buf.dropped[1],
                "forwarded": self.forwarded[0], "forwarded_in": self.forwarded[1],
                "forwarded_lost": self.forwarded[2], "forwarded_refused": self.control.refused[
                    "inbox"], "labels_refused": self.control.refused["labels"]}

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Redis errors as StoreError, saying whether Redis is away or said no."""
        try:
            yield
        except self._unavailable as exc:
            raise StoreError(f"Redis at {self._safe_url()} is unavailable ({doing}): "
                             f"{exc}") from exc
        except self._errors as exc:
            raise StoreError(f"Redis at {self._safe_url()} refused {doing}: {exc}") from exc

    def _read(self, names: list[str]) -> dict[str, dict[str, str]]:
        with self._guard("the read"):  # one MULTI: batches are atomic, so a consistent cut
            pipe = self._client.pipeline(transaction=True)
            for n in names:
                pipe.hgetall(self.prefix + n)
            results = pipe.execute()
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
                 "latency", "refused", "decisions"]
        names += [f"{c}:{m}" for m in self.metric_names for c in "xy"] + self.layout.covariate_keys
        data = self._read(names)
        try:
            return build_snapshot(self.layout, data, taken)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # JSON errors included
            raise StoreError(f"Redis at {self._safe_url()} holds malformed data for experiment "
                             f"{self.experiment!r} ({culprit_key(self.prefix, data)}): "
                             f"{exc}") from None

    def __len__(self) -> int:
        return self._buf.size
