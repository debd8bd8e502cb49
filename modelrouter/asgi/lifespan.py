"""ASGI lifespan for the router: restore and start on startup, flush and snapshot on shutdown.

The router wraps the app's lifespan instead of replacing it: the startup message reaches the
app after the router has started (restored its snapshot, started flushing), the shutdown message
after the router has flushed and saved. An app that does not speak lifespan (it raises or returns
without answering, which servers such as uvicorn treat as "unsupported") still gets the router's
startup and shutdown: the router then answers the server itself.

If the router's own startup fails (a corrupted or foreign snapshot), the server is told
``lifespan.startup.failed`` with the reason, so it stops instead of serving with lost state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelrouter.asgi.types import ASGIApp, Message, Receive, Scope, Send
from modelrouter.exceptions import StoreError
from modelrouter.store.lock import SnapshotLock

if TYPE_CHECKING:
    from modelrouter.routing.experiment import Experiment
    from modelrouter.store.persistence import SnapshotInfo

__all__ = ["RouterLifecycle", "run_lifespan"]

log = logging.getLogger("modelrouter.asgi.lifespan")


class RouterLifecycle:
    """What the router does at startup and shutdown; usable without ASGI (``await start()``).

    ``restored`` is the snapshot read at startup (None when there was none to read) and
    ``last_snapshot`` the latest one written, periodic or final: both say what happened to the
    experiment's state without reading the file again.
    """

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.config = experiment.config
        self._task: asyncio.Task[None] | None = None
        self.restored: SnapshotInfo | None = None
        self.last_snapshot: SnapshotInfo | None = None
        self._restore_failed = False
        self.closers: list[Callable[[], object]] = []  # run first at shutdown (e.g. shadows)
        # one process per memory-store snapshot (store/lock.py); Redis is shared by design
        path = self.config.snapshot_path
        self._lock = (SnapshotLock(path) if path is not None
                      and self.config.store_config.is_memory else None)

    async def start(self) -> None:
        """Restore the snapshot (if configured and present), start flushing and snapshots.

        With the memory store and a ``snapshot_path``, first take the snapshot's lock: a second
        process configured with the same path fails here with a StoreError naming this one."""
        path = self.config.snapshot_path
        if self._lock is not None:
            self._lock.acquire()
        if path is not None and os.path.exists(path):
            try:
                self.restored = await asyncio.to_thread(self.experiment.restore, path)
            except Exception:
                self._restore_failed = True  # stop() must not overwrite the file with less
                if self._lock is not None:  # this process will not serve: let the file go
                    self._lock.release()
                raise
            self._restore_failed = False
            log.info("modelrouter: restored %s", self.restored)
        self.experiment.store.start()  # background flushing (a no-op for the memory store)
        if self.experiment.store.shared:  # follow the shared routing state from the start
            try:
                await asyncio.to_thread(self.experiment.state.start)
            except StoreError as exc:  # the flusher retries; routing starts from the config
                log.warning("modelrouter: shared routing state not read at startup: %s", exc)
        if path is not None and self.config.snapshot_seconds is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._snapshot_every(path, float(self.config.snapshot_seconds)))

    async def _snapshot_every(self, path: str, seconds: float) -> None:
        """Save a snapshot every ``seconds`` until cancelled; a failed one is logged, so a full
        disk does not stop the service."""
        while True:
            await asyncio.sleep(seconds)
            try:
                self.last_snapshot = await asyncio.to_thread(self.experiment.save, path)
            except Exception:  # keep serving; the next period retries
                log.exception("modelrouter: periodic snapshot to %r failed", path)

    async def stop(self) -> None:
        """Stop background work, flush buffered deltas, write the final snapshot."""
        for close in self.closers:
            try:
                await asyncio.to_thread(close)
            except Exception:  # the flush and the snapshot must still happen
                log.exception("modelrouter: a shutdown step failed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.to_thread(self.experiment.close)
            if self._restore_failed:  # the file holds state this process never loaded: keep it
                log.warning("modelrouter: not writing %r, which failed to restore at startup",
                            self.config.snapshot_path)
            elif self.config.snapshot_path is not None:
                self.last_snapshot = await asyncio.to_thread(self.experiment.save,
                                                             self.config.snapshot_path)
        finally:
            if self._lock is not None:
                self._lock.release()


@dataclass
class _LifespanState:
    """What one lifespan run has seen so far (shared by the wrappers and the fallback)."""

    app_sent: bool = False  # the app sent a lifespan message: it speaks lifespan
    started: bool = False  # the router's startup ran (once, whoever triggered it)
    stopped: bool = False  # the router's shutdown ran
    error: Exception | None = None  # why the router's startup failed


async def run_lifespan(app: ASGIApp, lifecycle: RouterLifecycle, scope: Scope,
                       receive: Receive, send: Send) -> None:
    """Run ``app``'s lifespan with the router's startup and shutdown woven in."""
    state = _LifespanState()

    async def start() -> None:
        state.started = True
        try:
            await lifecycle.start()
        except Exception as exc:
            log.exception("modelrouter: startup failed")
            state.error = exc

    async def receive_wrapper() -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup" and not state.started:
            await start()
        elif message["type"] == "lifespan.shutdown" and not state.stopped:
            state.stopped = True
            await lifecycle.stop()
        return message

    async def send_wrapper(message: Message) -> None:
        state.app_sent = True
        if message["type"] == "lifespan.startup.complete" and state.error is not None:
            message = {"type": "lifespan.startup.failed",
                       "message": f"modelrouter: {state.error}"}
        await send(message)

    try:
        await app(scope, receive_wrapper, send_wrapper)
    except BaseException:
        if state.app_sent:
            raise  # the app speaks lifespan: its failure is its own
        log.debug("modelrouter: the app does not support lifespan; the router answers it")
    else:
        if state.app_sent:
            return
    # the app does not speak lifespan: answer the server ourselves
    if not state.started:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        await start()
    if state.error is not None:
        await send({"type": "lifespan.startup.failed",
                    "message": f"modelrouter: {state.error}"})
        return
    await send({"type": "lifespan.startup.complete"})
    if not state.stopped:
        message = await receive()
        if message["type"] == "lifespan.shutdown":
            state.stopped = True
            try:
                await lifecycle.stop()
            except Exception as exc:
                await send({"type": "lifespan.shutdown.failed",
                            "message": f"modelrouter: {exc}"})
                return
    await send({"type": "lifespan.shutdown.complete"})
