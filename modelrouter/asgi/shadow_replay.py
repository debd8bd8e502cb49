"""Shadows that are whole ASGI apps: the request replayed to them after the response is sent.

``ModelRouter(app, variants, shadows={"candidate": candidate_app},
extract_prediction=read_prediction)``: when every shadow is an ASGI app (an
:class:`~modelrouter.asgi.middleware.ASGIVariant` or a Starlette/FastAPI app), a shadowed
request (the hash rule of :mod:`modelrouter.routing.shadows`) goes through the served app as
usual while a :class:`Recording` copies, on the side:

- the request body as the served app reads it (``http.request`` messages, ``more_body``
  chunks joined), up to ``max_body`` bytes (:data:`MAX_BODY_BYTES`, 1 MiB);
- the served response's status and body, up to the same cap.

Nothing the served app sends or receives is changed, delayed or re-ordered: the recording only
keeps references to the chunks. After the served app returned (its response sent), one
``asyncio`` task per shadow replays the request: a copy of the scope taken before the served
app ran (without ``state["modelrouter"]``: a shadow is never routed), a ``receive`` that
gives the recorded body in one message (then ``http.disconnect`` once the shadow answered),
and a ``send`` that records the shadow's status and body. ``extract_prediction(body: bytes)``
(the user's function) turns each response body, served and shadow, into one prediction; the
pair then goes to the same :class:`~modelrouter.store.shadows.ShadowLog` as a predictor
shadow's (agreement, score differences, latency ratios, labels, always-valid tests).

Bounds and what is counted (never raised into the response):

- the queue bound of the runner (``shadow_queue``): a replay over it is dropped and counted
  ``"queue_full"`` (``"shut_down"`` after shutdown); ``shadow_timeout`` cancels a replay and
  counts ``"timeout"``;
- a request body over ``max_body``: ``"body_too_large"``; a body the served app did not read
  to the end (and the request says it has one): ``"body_unread"``; a served response over the
  cap: ``"response_too_large"``; a served response ``extract_prediction`` refuses (raises):
  ``"served_unreadable"`` (all drops, per shadow: nothing can be paired);
- the served app raising or answering 5xx is the served model's error (output ``None``), the
  shadows still run; a shadow raising is its ``"exception"``, answering 5xx its
  ``"http_5xx"``, a response over the cap or refused by ``extract_prediction`` its
  ``"unreadable"`` error. A client that disconnects (cancellation) replays nothing (counted
  dropped ``"cancelled"``).

Latencies: the served side from the start of the served app to its last body byte, a
shadow's from the start of its replay to its last body byte.

Memory: a replay keeps its request body (at most ``max_body``) until every shadow answered,
and each shadow's response body (at most ``max_body``) until it is read; the served response
is let go once read. So at most ``shadow_queue * 2 * max_body`` bytes are held (2 GiB with
the defaults, reached only with 1 MiB bodies and 1,000 slow replays at once: lower
``shadow_queue`` for large bodies).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import Any

from modelrouter.asgi.types import ASGIApp, Message, Receive, Scope, Send
from modelrouter.asgi.variants import ASGIVariant, is_asgi_app
from modelrouter.exceptions import ConfigError
from modelrouter.routing.decision import Decision
from modelrouter.routing.shadows import ShadowRunner
from modelrouter.store.shadows import scalar_output

__all__ = ["MAX_BODY_BYTES", "Recording", "ShadowReplay", "shadow_apps"]

#: Bytes of a request body (and of a response body) kept for a replay at most.
MAX_BODY_BYTES = 1 << 20


def _declares_body(scope: Scope) -> bool:
    """Whether the request says it has a body (a non-zero length, or chunked)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            return value.strip() not in (b"0", b"")
        if key == b"transfer-encoding":
            return True
    return False


def shadow_apps(shadows: Mapping[str, Any], extract_prediction: Callable[[bytes], Any] | None
                ) -> dict[str, ASGIApp] | None:
    """The shadows' ASGI apps when every shadow is one, None when none is; ConfigError for
    a mix of apps and predictors, for app shadows without ``extract_prediction`` and for an
    ``extract_prediction`` that predictor shadows would never use."""
    apps = {n: (m.app if isinstance(m, ASGIVariant) else m) for n, m in shadows.items()
            if is_asgi_app(m)}
    if not apps:
        if extract_prediction is not None:
            raise ConfigError("extract_prediction is only used for shadows that are ASGI apps; "
                              f"shadows {sorted(shadows)!r} are predictors")
        return None
    if len(apps) < len(shadows):
        rest = sorted(set(shadows) - set(apps))
        raise ConfigError(f"shadows mix ASGI apps ({sorted(apps)!r}) and predictors "
                          f"({rest!r}); make them all apps or all predictors")
    if extract_prediction is None or not callable(extract_prediction):
        raise ConfigError(f"shadows {sorted(apps)!r} are ASGI apps: pass "
                          "extract_prediction=<function of a response body (bytes) returning "
                          f"the prediction>, got {extract_prediction!r}")
    return apps


class Recording:
    """What one shadowed request's replay needs, recorded beside the served app."""

    __slots__ = ("_max", "_receive", "_send", "_start", "_timer", "body", "body_done",
                 "body_size", "finished_ms", "response", "response_size", "scope", "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send, max_body: int,
                 timer: Callable[[], float]) -> None:
        state = scope.get("state")
        self.scope: Scope = {**scope}  # before the served app adds its routing keys
        if state is not None:
            self.scope["state"] = {k: v for k, v in state.items() if k != "modelrouter"}
        self._receive, self._send, self._max, self._timer = receive, send, max_body, timer
        self.body: list[bytes] | None = []  # None: over the cap
        self.body_size = 0
        self.body_done = False
        self.response: list[bytes] | None = []
        self.response_size = 0
        self.status = 0
        self.finished_ms = math.nan
        self._start = timer()

    async def receive(self) -> Message:
        """The server's message, its body chunk kept (up to the cap)."""
        message = await self._receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if self.body is not None:
                self.body_size += len(chunk)
                if self.body_size > self._max:
                    self.body = None
                elif chunk:
                    self.body.append(chunk)
            if not message.get("more_body", False):
                self.body_done = True
        return message

    def send(self, message: Message) -> Any:
        """Pass ``message`` to the server unchanged; keep the status and body chunks."""
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body":
            if self.response is not None:
                chunk = message.get("body", b"")
                self.response_size += len(chunk)
                if self.response_size > self._max:
                    self.response = None
                elif chunk:
                    self.response.append(chunk)
            if not message.get("more_body", False):
                self.finished_ms = (self._timer() - self._start) * 1000.0
        return self._send(message)

    def request_body(self) -> bytes | str:
        """The whole request body, or why there is none to replay (a drop reason)."""
        if self.body is None:
            return "body_too_large"
        if not self.body_done and (self.body or _declares_body(self.scope)):
            return "body_unread"
        return b"".join(self.body)


class ShadowReplay:
    """Replays shadowed requests to the shadow apps (see the module docstring).

    Thread safety: used from the event loop's thread only (the middleware)."""

    def __init__(self, apps: Mapping[str, ASGIApp], runner: ShadowRunner,
                 extract_prediction: Callable[[bytes], Any], *,
                 max_body: int = MAX_BODY_BYTES) -> None:
        if not callable(extract_prediction):
            raise ConfigError(f"extract_prediction must be a function of a response body, "
                              f"got {extract_prediction!r}")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ConfigError(f"max_body ({max_body!r}) must be a non-negative integer")
        self.apps = tuple(apps.items())
        self.runner = runner
        self.log = runner.log
        self.extract = extract_prediction
        self.max_body = max_body
        self._tasks: set[asyncio.Task[None]] = set()  # strong references to running replays

    def __repr__(self) -> str:
        return (f"ShadowReplay(shadows={[n for n, _ in self.apps]!r}, "
                f"max_body={self.max_body}, running={len(self._tasks)})")

    def record(self, decision: Decision, scope: Scope, receive: Receive,
               send: Send) -> Recording | None:
        """A recording when ``decision`` is shadowed, else None (one hash)."""
        if not self.runner.selected(decision):
            return None
        return Recording(scope, receive, send, self.max_body, self.runner.timer)

    def start(self, rec: Recording, decision_id: str, failed: bool = False) -> None:
        """After the served response (``failed``: the served app raised): pair the served
        output and start one replay per shadow (never raises, never waits)."""
        body = rec.request_body()
        if isinstance(body, str):  # nothing to replay: counted for every shadow
            self.log.skip(body)
            return
        granted, why = self.runner.claim(len(self.apps))
        if not granted:  # a full queue costs one lock (the served body is not even read)
            self.log.skip(why)
            return
        served: Any = None
        reason = None
        if not failed and rec.status < 500:
            if rec.response is None:
                reason = "response_too_large"
            else:
                try:
                    served = scalar_output(self.extract(b"".join(rec.response)))
                except Exception:
                    reason = "served_unreadable"
                rec.response = []  # read: let it go while the replays run
        if reason is not None or not self.log.open(decision_id, served):
            self.runner.release(granted)
            if reason is not None:
                self.log.skip(reason)
            return
        loop = asyncio.get_running_loop()
        for i, (name, app) in enumerate(self.apps):
            if i >= granted:
                self.log.drop(name, why)
                continue
            task = loop.create_task(self._replay(name, app, rec, body, decision_id, served))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _replay(self, name: str, app: ASGIApp, rec: Recording, body: bytes,
                      decision_id: str, served: Any) -> None:
        answered = asyncio.Event()
        sent = False
        status = 0
        chunks: list[bytes] | None = []
        size = 0

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, chunks, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if chunks is not None:
                    if size > self.max_body:
                        chunks = None
                    elif chunk:
                        chunks.append(chunk)
                if not message.get("more_body", False):
                    answered.set()

        timer = self.runner.timer
        start = timer()
        error: str | None = None
        y: Any = None
        try:
            try:
                await asyncio.wait_for(app({**rec.scope}, receive, send),
                                       self.runner.config.shadow_timeout)
            except asyncio.TimeoutError:
                error = "timeout"
            except Exception:
                error = "exception"
            ms = (timer() - start) * 1000.0 if error != "timeout" else math.nan
            if error is None:
                if status >= 500:
                    error = "http_5xx"
                elif chunks is None:
                    error = "unreadable"
                else:
                    try:
                        y = scalar_output(self.extract(b"".join(chunks)))
                    except Exception:
                        error = "unreadable"
            answered.set()
            try:
                self.log.done(decision_id, name, served, rec.finished_ms, y, ms, error)
            except Exception:  # a value the statistics refuse: counted, never raised
                self.log.drop(name, "log_error")
        finally:
            self.runner.release()
