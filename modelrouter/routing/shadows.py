"""Shadow predictors off the response path: selection, the bounded executor, the timing.

A shadow is a model evaluated on live inputs and never served (``ModelRouter(app, variants,
shadows={"candidate": model})``). :class:`ShadowRunner` does three things:

- :meth:`ShadowRunner.select` chooses, per counted decision, whether it is shadowed: a
  salted hash (``bucket(salt + "\\x00shadow", key) < shadow_share``, the assignment hash of
  :mod:`modelrouter.routing.assignment` with its own salt, so shadowing is independent of the
  arm) of the unit id (user/session level: a user is shadowed on every request or never) or of
  the decision id (request level, or a request without a unit id). A selected decision becomes
  a :class:`ShadowedDecision` (the same tuple, another class); the rest are returned as they
  are, so a request that is not shadowed pays one hash;
- :meth:`ShadowedDecision.predict` calls the served model, times it, and hands the same
  arguments to every shadow, returning the served output at once;
- each shadow call runs in the background: synchronous predictors on a
  ``ThreadPoolExecutor`` of ``shadow_workers`` threads, coroutine predictors as
  ``asyncio`` tasks on the running loop (or, from a thread without a loop, on the pool).
  At most ``shadow_queue`` calls are queued or running at once; beyond that the work is
  dropped and counted (``"queue_full"``), never waited for. An exception is counted as the
  shadow's ``"exception"`` error, a call longer than ``shadow_timeout`` as ``"timeout"``
  (an async call is cancelled; a thread cannot be stopped, so a synchronous call runs on and
  its late answer is discarded, holding its queue slot until it returns). Nothing a shadow
  does reaches the response.

The arguments are handed to the shadows as they are (no copy): a shadow must not mutate them.
Results go to a :class:`~modelrouter.store.shadows.ShadowLog`.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from modelrouter.config.shadow import ShadowConfig
from modelrouter.exceptions import ConfigError
from modelrouter.routing.assignment import Bucketer
from modelrouter.routing.decision import Decision, call_model
from modelrouter.routing.forksafe import renew
from modelrouter.store.shadows import ShadowLog, scalar_output

__all__ = ["ShadowRunner", "ShadowedDecision"]

_new = tuple.__new__


class ShadowedDecision(Decision):
    """A decision chosen for shadow evaluation: :meth:`predict` also feeds the shadows.
    Built by :meth:`ShadowRunner.select` (one subclass per runner holds the runner)."""

    __slots__ = ()
    runner: ClassVar[ShadowRunner]

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """The served model's prediction, returned at once; the shadows get the same
        arguments in the background (their outcome never reaches the caller)."""
        runner = self.runner
        timer = runner.timer
        start = timer()
        try:
            y = call_model(self.model, args, kwargs)
        except Exception:
            runner.submit(self.decision_id, args, kwargs, None, (timer() - start) * 1000.0)
            raise
        runner.submit(self.decision_id, args, kwargs, y, (timer() - start) * 1000.0)
        return y


def _call_target(model: Any) -> Callable[..., Any]:
    predict = getattr(model, "predict", None)
    if predict is not None and callable(predict):
        return predict  # type: ignore[no-any-return]
    if callable(model):
        return model  # type: ignore[no-any-return]
    raise ConfigError(f"shadow {model!r} has no predict method and is not callable")


class ShadowRunner:
    """Selects shadowed decisions and runs the shadows (see the module docstring)."""

    def __init__(self, shadows: Mapping[str, Any], config: ShadowConfig, salt: str,
                 log: ShadowLog, *, unit_level: bool,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if not isinstance(shadows, Mapping) or not shadows:
            raise ConfigError(f"shadows must map names to predictors, got {shadows!r}")
        self.names = tuple(shadows)
        self._targets = tuple(_call_target(m) for m in shadows.values())
        self._is_async = tuple(inspect.iscoroutinefunction(t) for t in self._targets)
        self.config = config
        self.log = log
        self.timer = timer
        self._share = config.shadow_share
        self._timeout = config.shadow_timeout
        self._bucket = Bucketer(salt + "\x00shadow")
        self._unit_level = unit_level
        self._cls: type[ShadowedDecision] = type(
            "ShadowedDecision", (ShadowedDecision,), {"__slots__": (), "runner": self})
        self._pool = ThreadPoolExecutor(config.shadow_workers,
                                        thread_name_prefix="modelrouter-shadow")
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # strong references to running tasks
        renew(self, ShadowRunner._after_fork)  # gunicorn --preload: a pool of the child's own

    def _after_fork(self) -> None:
        """In a forked child: the parent's pool threads do not exist here (work submitted to
        the copied pool would never run), nor does its queue."""
        self._pool = ThreadPoolExecutor(self.config.shadow_workers,
                                        thread_name_prefix="modelrouter-shadow")
        self._lock = threading.Lock()
        self._pending = 0
        self._tasks = set()

    def __repr__(self) -> str:
        return (f"ShadowRunner(shadows={list(self.names)!r}, share={self._share:g}, "
                f"timeout={self._timeout:g}, pending={self._pending})")

    @property
    def pending(self) -> int:
        """Shadow calls queued or running now."""
        return self._pending

    def selected(self, decision: Decision) -> bool:
        """Whether ``decision`` is shadowed (the hash rule of the module docstring)."""
        if not decision.counted or self._share <= 0.0:
            return False
        if self._share >= 1.0:
            return True
        key = decision.unit_id if self._unit_level and decision.unit_id is not None \
            else decision.decision_id
        return self._bucket(key) < self._share

    def select(self, decision: Decision) -> Decision:
        """``decision`` as a :class:`ShadowedDecision` when it is shadowed, else itself."""
        if self.selected(decision):
            return _new(self._cls, decision)
        return decision

    # -- running ------------------------------------------------------------------------
    def _claim(self) -> str | None:
        with self._lock:
            if self._closed:
                return "shut_down"
            if self._pending >= self.config.shadow_queue:
                return "queue_full"
            self._pending += 1
            return None

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def submit(self, decision_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
               served: Any, served_ms: float) -> None:
        """Hand one served call's arguments to every shadow (never raises, never waits)."""
        served = None if served is None else scalar_output(served)
        if not self.log.open(decision_id, served):
            return
        loop: asyncio.AbstractEventLoop | None = None
        for i, name in enumerate(self.names):
            reason = self._claim()
            if reason is not None:
                self.log.drop(name, reason)
                continue
            job = (decision_id, name, self._targets[i], args, kwargs, served, served_ms)
            try:
                if self._is_async[i]:
                    if loop is None:
                        try:
                            loop = asyncio.get_running_loop()
                        except RuntimeError:
                            loop = None
                    if loop is not None:
                        task = loop.create_task(self._run_async(*job))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    else:
                        self._pool.submit(self._run_async_in_thread, job)
                else:
                    self._pool.submit(self._run_sync, *job)
            except RuntimeError:  # the pool was shut down meanwhile
                self._release()
                self.log.drop(name, "shut_down")

    def _run_sync(self, decision_id: str, name: str, target: Callable[..., Any],
                  args: tuple[Any, ...], kwargs: dict[str, Any], served: Any,
                  served_ms: float) -> None:
        try:
            start = self.timer()
            error: str | None = None
            try:
                y = target(*args, **kwargs)
            except Exception:
                y, error = None, "exception"
            ms = (self.timer() - start) * 1000.0
            if error is None and ms > self._timeout * 1000.0:
                y, error, ms = None, "timeout", math.nan  # abandoned: the answer came too late
            self.log.done(decision_id, name, served, served_ms,
                          None if y is None else scalar_output(y), ms, error)
        finally:
            self._release()

    async def _run_async(self, decision_id: str, name: str,
                         target: Callable[..., Coroutine[Any, Any, Any]],
                         args: tuple[Any, ...], kwargs: dict[str, Any], served: Any,
                         served_ms: float) -> None:
        try:
            start = self.timer()
            error: str | None = None
            y: Any = None
            try:
                y = await asyncio.wait_for(target(*args, **kwargs), self._timeout)
            except asyncio.TimeoutError:
                error = "timeout"
            except Exception:
                error = "exception"
            ms = math.nan if error == "timeout" else (self.timer() - start) * 1000.0
            self.log.done(decision_id, name, served, served_ms,
                          None if y is None else scalar_output(y), ms, error)
        finally:
            self._release()

    def _run_async_in_thread(self, job: tuple[Any, ...]) -> None:
        asyncio.run(self._run_async(*job))

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new shadow work (counted as ``"shut_down"``) and stop the threads
        (``wait``: after the queued calls end). Running async tasks end on their own."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
