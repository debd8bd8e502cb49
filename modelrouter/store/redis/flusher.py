"""The Redis store's flusher: one background thread that writes a worker's buffered deltas.

:class:`Flusher` owns the batch queue and the thread. Every ``flush_seconds`` (or when the
store wakes it), it checks the experiment's meta key once per connection, asks the store for
new batches (``drain``) when the queue is empty, and sends them in order as calls of the batch
script (batch.py), each atomic and idempotent. After a successful flush it calls ``after``
(the store applies forwarded feedback and runs its watchers: the routing control plane).
In a forked child it starts over (its own batch ids, no queue, no thread) and calls
``forked``: the store drops what the parent buffered, which is the parent's to flush.
Failures keep the queue for a retry with exponential backoff up to ``max_backoff``; an
unexpected exception (a bug) is logged with its traceback and retried the same way (it used
to end the thread, and with it every later flush of the worker).

Thread safety: ``lock`` (the store's ``_flush_lock``) guards the queue, the meta check and the
thread; it is held while talking to Redis and never together with the store's hot-path lock
except inside ``drain``, which takes it briefly to swap the buffer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from modelrouter.exceptions import StoreError
from modelrouter.store.forksafe import renew
from modelrouter.store.redis.batch import LUA, Batch
from modelrouter.store.redis.layout import Layout, text
from modelrouter.store.redis.snapshot import check_meta

__all__ = ["Flusher"]

log = logging.getLogger("modelrouter.store.redis")


class Flusher:
    """See the module docstring."""

    def __init__(self, client: Any, layout: Layout, drain: Callable[[str, int], list[Batch]],
                 after: Callable[[], None], *, flush_seconds: float, max_backoff: float,
                 errors: tuple[type[BaseException], ...],
                 unavailable: tuple[type[BaseException], ...], where: str,
                 forked: Callable[[], None] | None = None) -> None:
        self._client = client
        self._layout = layout
        self._script = client.register_script(LUA)
        self._script_keys = [layout.prefix + "counters", layout.prefix + "refused"]
        self._drain = drain
        self._after = after
        self._forked = forked
        self.flush_seconds = flush_seconds
        self.max_backoff = max_backoff
        self._errors, self._unavailable = errors, unavailable
        self._where = where  # "Redis at <redacted url>"
        self.lock = threading.Lock()
        self.polling = threading.Lock()  # one poll of the inbox at a time (sharing.py)
        self.queue: list[Batch] = []
        self._batch_no = 0
        self._worker = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._meta_ok = False
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.flushed_events = 0
        self.failed_flushes = 0
        self.refused_batches = 0  # by this worker; every worker's: snapshot().losses
        self.last_refusal: str | None = None
        renew(self, Flusher._after_fork)  # with the store's locks free (forksafe.py)

    def _after_fork(self) -> None:
        """In a forked child (gunicorn --preload): its own batch ids (the parent's would be
        taken as already applied: the batch marker), fresh locks, no thread yet, no queue
        and counters of its own (the queued batches are the parent's to send), then the
        store's ``forked``."""
        self._worker = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._batch_no = 0
        self.lock, self.polling = threading.Lock(), threading.Lock()
        self.wake, self._stop = threading.Event(), threading.Event()
        self.thread = None
        self.queue = []
        self.last_error, self.last_refusal = None, None
        self.flushed_events = self.failed_flushes = self.refused_batches = 0
        if self._forked is not None:
            self._forked()

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                return
            self._stop.clear()
            self.thread = threading.Thread(target=self._run, name="modelrouter-redis-flush",
                                           daemon=True)
            self.thread.start()

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            self.wake.wait(self.flush_seconds)
            self.wake.clear()
            try:
                self.flush()
                self._after()
                backoff = 0.05
            except Exception as exc:  # a bug must not stop every later flush
                self.last_error = str(exc)
                self.failed_flushes += 1
                if isinstance(exc, StoreError):
                    log.warning("modelrouter: Redis flush failed (retry in %.2fs): %s", backoff,
                                exc)
                else:
                    log.exception("modelrouter: Redis flush or poll failed unexpectedly (retry "
                                  "in %.2fs)", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2.0, self.max_backoff)

    def close(self) -> None:
        """Stop the thread and flush what is left (best effort: errors are logged)."""
        self._stop.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None
        try:
            self.flush()
        except StoreError as exc:
            log.error("modelrouter: final Redis flush failed, deltas lost: %s", exc)

    def flush(self) -> None:
        """Send every queued batch, draining new ones first if the queue is empty."""
        with self.lock:
            doing = "the configuration check"
            try:
                if not self._meta_ok:
                    check_meta(self._layout, self._client)
                    self._meta_ok = True
                if not self.queue:
                    self.queue = self._drain(self._worker, self._batch_no)
                    self._batch_no += len(self.queue)
                while self.queue:
                    batch_id, keys, argv = self.queue[0]
                    doing = f"batch {batch_id}"
                    reply = self._script(keys=[self._layout.prefix + "batch:" + batch_id,
                                               *self._script_keys, *keys],
                                         args=argv, client=self._client)
                    self.queue.pop(0)
                    if isinstance(reply, list) and reply and reply[0] == -1:
                        self._refused(batch_id, argv, reply)
                    else:
                        self.flushed_events += int(argv[2])
                self.last_error = None
            except self._unavailable as exc:
                self._meta_ok = False
                raise StoreError(f"{self._where} is unavailable ({doing} is kept and "
                                 f"retried): {exc}") from exc
            except self._errors as exc:  # an error reply: Redis is there but said no
                self._meta_ok = False
                raise StoreError(f"{self._where} refused {doing} (kept and retried): "
                                 f"{exc}") from exc

    def _refused(self, batch_id: str, argv: list[str], reply: list[Any]) -> None:
        """A batch the script refused: dropped whole, already counted in Redis; log it."""
        reason, detail = (text(v) for v in reply[1:3])
        self.refused_batches += 1
        self.last_refusal = f"batch {batch_id} ({argv[2]} updates) refused: {reason}: {detail}"
        log.error("modelrouter: Redis refused %s; it is dropped whole and counted in the "
                  "losses", self.last_refusal)

    def stats(self) -> dict[str, object]:
        """The queue and the flush counters of this worker."""
        return {"queued_batches": len(self.queue), "flushed_events": self.flushed_events,
                "failed_flushes": self.failed_flushes, "last_error": self.last_error,
                "refused_batches": self.refused_batches, "last_refusal": self.last_refusal}

