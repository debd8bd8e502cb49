"""The pure ASGI middleware on the request path (the hot path of ``ModelRouter``).

Per request it reads the unit id (and, at a unit's first exposure only, the covariates the
request carries: asgi/covariates.py), asks the
:class:`~modelrouter.routing.experiment.Experiment` for a decision, puts it in
``scope["state"]["modelrouter"]`` (``request.state.modelrouter`` in Starlette and FastAPI),
calls the app (or the variant's own ASGI app) and, when the last body byte has been sent,
records ``latency_ms`` and ``error`` for the decision. Lifespan, websocket and paths outside
the experiment pass straight through. Per-request state lives in locals and the ``send``
wrapper, never on ``self``. With shadows that are ASGI apps, a shadowed request is recorded
beside the served app and replayed to them once the app returned (asgi/shadow_replay.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from modelrouter.asgi.covariates import CovariateReader
from modelrouter.asgi.lifespan import RouterLifecycle, run_lifespan
from modelrouter.asgi.responses import send_error
from modelrouter.asgi.segments import SegmentReader
from modelrouter.asgi.types import ASGIApp, Message, Receive, Scope, Send
from modelrouter.asgi.units import UnitReader
from modelrouter.asgi.variants import ASGIVariant, is_asgi_app
from modelrouter.config.extensions import CoreMirror, install, load_extension
from modelrouter.exceptions import ConfigError, UnitIdError
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.tokens import TOKEN_HEADER, Signer

if TYPE_CHECKING:  # loaded with shadows only (its statistics import scipy)
    from modelrouter.asgi.shadow_replay import ShadowReplay
    from modelrouter.routing.shadows import ShadowRunner

__all__ = ["ASGIVariant", "RoutingMiddleware"]

_compiled = load_extension("modelrouter.asgi.middleware_c")


class RoutingMiddleware(CoreMirror):
    """The request path of :class:`~modelrouter.ModelRouter`: pure ASGI, O(1) per request.

    Built by the router (the composition root) from an :class:`Experiment`; the router sets
    ``surface`` to the HTTP surface answering under ``config.http_prefix`` (it stays None when
    nothing is configured, so an unconfigured router pays nothing for it on the routed path).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if _compiled is not None:  # a subclass's calls take the compiled path too (below)
            _compiled.install_call(cls)

    def __init__(self, app: ASGIApp, experiment: Experiment, *,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.experiment = experiment
        config = self.config = experiment.config
        # seconds; measures ``latency_ms``. Injectable so simulations can model slow variants
        self._timer = timer
        self._targets: tuple[ASGIApp, ...] = tuple(
            (m.app if isinstance(m, ASGIVariant) else m) if is_asgi_app(m) else app
            for m in experiment.models)
        self._target_of = dict(zip(experiment.names, self._targets))
        self._read_unit = UnitReader(config)
        self._read_segment = SegmentReader(config) if config.segments else None
        # covariates read at a unit's first exposure (asgi/covariates.py); None: the
        # request path does not change at all
        self._covariates = (CovariateReader(experiment) if config.covariate_config.enabled
                            else None)
        self._paths = None if config.paths is None else tuple(config.paths)
        self._exclude = tuple(config.exclude_paths)
        self._every_path = self._paths is None and not self._exclude
        self.lifecycle = RouterLifecycle(experiment)
        self.surface: ASGIApp | None = None
        self.shadows: ShadowRunner | None = None  # set by the router when shadows are given
        # set by the router when the shadows are ASGI apps (asgi/shadow_replay.py)
        self.replay: ShadowReplay | None = None
        self._http_prefix = config.http_prefix + "/"
        self._signer = Signer(config.secret, config.experiment) if config.secret else None
        # the store's journal of automatic metrics, appended to by the send wrapper directly
        journal = experiment.store.journal
        self._entries = None if journal is None else journal.entries
        # its typed buffer, which the compiled send appends C records to (store/journal.py)
        self._typed = None if journal is None else journal.typed
        self._threshold = 0 if journal is None else journal.threshold
        self._fold_journal = experiment.store.fold_journal
        # what the compiled __call__ reads (asgi/middleware_c.pyx), when it was built; kept
        # current by __setattr__ (the router sets surface, shadows and replay after this)
        self._core = None if _compiled is None else _compiled.new_core(self)

    def rotate_secret(self, secret: str) -> None:
        """Sign the tokens of responses started from now on with ``secret`` (a rotation: the
        router must already sign tokens; ConfigError otherwise)."""
        if self._signer is None:
            raise ConfigError("rotate_secret: this router signs no tokens (no secret configured)")
        self._signer = Signer(secret, self.config.experiment)

    # -- ASGI -----------------------------------------------------------------------------
    def _routed(self, path: str) -> bool:
        if self._paths is not None and not path.startswith(self._paths):
            return False
        return not (self._exclude and path.startswith(self._exclude))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.surface is not None and scope["type"] == "http"
                and scope["path"].startswith(self._http_prefix)):
            await self.surface(scope, receive, send)  # never experiment traffic
            return
        if scope["type"] != "http" or not (self._every_path or self._routed(scope["path"])):
            if scope["type"] == "lifespan":
                await run_lifespan(self.app, self.lifecycle, scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        segment = self._read_segment(scope) if self._read_segment is not None else ()
        try:
            # the reader validated the unit id (config/unit_ids.py): route without checking again
            if self._covariates is None:
                decision, seq = self.experiment.route_checked(self._read_unit(scope), segment)
            else:
                decision, seq = self._covariates.route(scope, self._read_unit(scope), segment)
        except UnitIdError as exc:
            await send_error(send, 400, str(exc))
            return
        if self.shadows is not None:  # shadow evaluation: routing/shadows.py
            decision = self.shadows.select(decision)
        recording = None
        replay = self.replay
        if replay is not None:  # ASGI-app shadows: record now, replay after the response
            recording = replay.record(decision, scope, receive, send)
            if recording is not None:
                receive, send = recording.receive, recording.send
        state = scope.get("state")
        if not state:  # uvicorn's per-request copy of an empty lifespan state: the common case
            scope["state"] = {"modelrouter": decision}
        elif type(state) is dict:
            state = state.copy()  # never the server's dict: a request's state is its own
            state["modelrouter"] = decision
            scope["state"] = state
        else:
            scope["state"] = {**state, "modelrouter": decision}
        target = self._target_of[decision.variant]
        if not decision.counted:
            await target(scope, receive, send)
            return

        # The send wrapper is a plain function returning the server's awaitable (no coroutine
        # of its own per message) and closes over only what changes per request. With a store
        # journal (store/journal.py) the finished request's automatic metrics are appended to
        # it here, without a call into the store; status -1 marks them recorded.
        start = self._timer()
        status = 0

        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                if self._signer is not None:  # the signed token for late feedback (tokens.py)
                    message = {**message, "headers": [*message.get("headers", ()), (
                        _TOKEN_HEADER, self._signer.sign_decision(decision))]}
            elif kind == "http.response.body" and not message.get("more_body") and status >= 0:
                entries = self._entries
                if entries is None:
                    self._finish(seq, start, 1.0 if status >= 500 else 0.0)
                else:
                    entries.append((seq, (self._timer() - start) * 1000.0,
                                    1.0 if status >= 500 else 0.0))
                    if len(entries) >= self._threshold:
                        self._fold_journal()
                    tick = self.experiment.tick
                    if tick is not None:
                        tick()
                status = -1
            return send(message)

        try:
            await target(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if recording is not None and replay is not None:  # nothing to replay: counted
                replay.log.skip("cancelled")
            raise  # the client went away: neither a latency nor a server error to record
        except BaseException:
            if status >= 0:
                status = -1
                self._finish(seq, start, 1.0, tick=False)
            if recording is not None and replay is not None:  # served app failed: shadows run
                replay.start(recording, decision.decision_id, failed=True)
            raise
        if recording is not None and replay is not None:  # response sent: replay it
            replay.start(recording, decision.decision_id)

    def _finish(self, seq: int, start: float, error: float, tick: bool = True) -> None:
        """Record the automatic metrics of a finished request (latency from ``start``)."""
        latency = (self._timer() - start) * 1000.0
        experiment = self.experiment
        experiment.store.record_auto(seq, latency, error)
        if tick and experiment.tick is not None:
            experiment.tick()


_TOKEN_HEADER = TOKEN_HEADER.encode("latin-1")

# the compiled twin of __call__ (asgi/middleware_c.pyx), when it was built; a call of the
# middleware then runs the request path straight from the class's call slot (install_call)
install(RoutingMiddleware, "__call__", "modelrouter.asgi.middleware_c")
if _compiled is not None:
    _compiled.install_call(RoutingMiddleware)
