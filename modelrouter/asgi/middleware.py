"""`ModelRouter`: the pure ASGI middleware on the request path.

Per request it reads the unit id, asks the :class:`~modelrouter.routing.experiment.Experiment` for a
decision, puts it in ``scope["state"]["modelrouter"]`` (``request.state.modelrouter`` in
Starlette and FastAPI), calls the app (or the variant's own ASGI app) and, when the last body
byte has been sent, records ``latency_ms`` and ``error`` for the decision. Lifespan, websocket
and paths outside the experiment pass straight through. Per-request state lives in locals and
the ``send`` wrapper, never on ``self``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from modelrouter.asgi.lifespan import RouterLifecycle, run_lifespan
from modelrouter.asgi.segments import SegmentReader
from modelrouter.asgi.units import UnitReader
from modelrouter.config import RouterConfig
from modelrouter.exceptions import ConfigError, UnitIdError
from modelrouter.routing.decision import Decision
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.tokens import TOKEN_HEADER, Signer

__all__ = ["ASGIVariant", "ModelRouter"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIVariant:
    """Marks a variant as a whole ASGI app: the router dispatches its requests to it."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        if not callable(app):
            raise ConfigError(f"ASGIVariant needs an ASGI callable, got {app!r}")
        self.app = app

    def __repr__(self) -> str:
        return f"ASGIVariant({self.app!r})"


def _is_asgi_app(model: object) -> bool:
    if isinstance(model, ASGIVariant):
        return True
    try:
        from starlette.applications import Starlette
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, Starlette)


class ModelRouter:
    """Pure ASGI middleware routing each HTTP request of ``app`` to one of ``variants``.

    ``variants`` maps names to predictors (any object: a scikit-learn estimator, a callable) or
    to ASGI apps (wrap them in :class:`ASGIVariant`; Starlette/FastAPI apps are detected). The
    first variant is the control unless ``config.control`` names another.
    """

    def __init__(self, app: ASGIApp, variants: Mapping[str, Any],
                 config: RouterConfig | None = None, *,
                 timer: Callable[[], float] = time.perf_counter,
                 **experiment_kwargs: Any) -> None:
        self.app = app
        # seconds; measures ``latency_ms``. Injectable so simulations can model slow variants
        self._timer = timer
        self.config = config if config is not None else RouterConfig()
        self.experiment = Experiment(variants, self.config, **experiment_kwargs)
        self._targets: tuple[ASGIApp, ...] = tuple(
            (m.app if isinstance(m, ASGIVariant) else m) if _is_asgi_app(m) else app
            for m in self.experiment.models)
        self._target_of = dict(zip(self.experiment.names, self._targets))
        self._read_unit = UnitReader(self.config)
        self._read_segment = SegmentReader(self.config) if self.config.segments else None
        self._paths = None if self.config.paths is None else tuple(self.config.paths)
        self._exclude = tuple(self.config.exclude_paths)
        self._every_path = self._paths is None and not self._exclude
        self.lifecycle = RouterLifecycle(self.experiment)
        # HTTP surface under the prefix (feedback, admin API, dashboard, metrics): only when
        # configured, so an unconfigured router pays nothing for it on the routed path
        self._http: Any = None
        if self.config.secret or self.config.admin_token or self.config.metrics_public:
            from modelrouter.web.surface import HTTPSurface

            self._http = HTTPSurface(self)
        self._http_prefix = self.config.http_prefix + "/"
        self._signer = (Signer(self.config.secret, self.config.experiment)
                        if self.config.secret else None)

    # -- public API (delegates to the routing core) -----------------------------------------
    @classmethod
    def from_config(cls, path: str, app: ASGIApp | None = None,
                    variants: Mapping[str, Any] | None = None) -> ModelRouter:
        """Build from a TOML file: ``[router]`` is the config, ``[variants]`` maps names to
        ``"package.module:attribute"`` import paths (or pass ``variants``/``app`` directly)."""
        from modelrouter.config import load_toml
        from modelrouter.loader import import_object

        data = load_toml(path)
        config = RouterConfig.from_toml(path)
        if variants is None:
            spec = data.get("variants")
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{path}: [variants] table is missing; pass variants=")
            variants = {name: import_object(f"variants.{name}", target)
                        for name, target in spec.items()}
        if app is None:
            target = data.get("app")
            if not isinstance(target, str):
                raise ConfigError(f"{path}: app ('package.module:attribute') is missing; "
                                  "pass app=")
            app = import_object("app", target)
        return cls(app, variants, config)

    def record(self, decision: str | Decision, metric: str, value: object) -> None:
        """Record feedback for a decision (its id or the Decision), also long after the
        response (within the attribution window)."""
        self.experiment.record(decision, metric, value)

    def record_unit(self, unit_id: str, metric: str, value: object) -> None:
        """Record feedback for a unit id (user- or session-level experiments)."""
        self.experiment.record_unit(unit_id, metric, value)

    def record_token(self, token: str, metric: str, value: object) -> bool:
        """Record feedback by a signed decision token, as ``POST {prefix}/feedback`` does
        (any process with the secret); False when this (decision, metric) was already seen."""
        if self._http is None or self._http.feedback is None:
            raise ConfigError("record_token needs a secret: RouterConfig(secret=...) or "
                              "$MODELROUTER_SECRET")
        return bool(self._http.feedback.submit(token, metric, value))

    def configure(self, *, weights: Mapping[str, float] | None = None,
                  mode: str | None = None) -> None:
        """Change weights or mode atomically while requests are in flight."""
        self.experiment.configure(weights=weights, mode=mode)

    def reload(self, path: str) -> None:
        """Apply ``mode`` and ``weights`` from the ``[router]`` table of a TOML file, atomically
        (the run-time switch through the config file); other fields need a restart and are
        refused when they differ from the running config."""
        from modelrouter.config import load_toml

        data = load_toml(path)
        table = data.get("router", data)
        fresh = RouterConfig.from_dict({k: v for k, v in table.items() if k != "variants"})
        live = {k: v for k, v in fresh.as_dict().items() if k not in ("mode", "weights")}
        running = {k: v for k, v in self.config.as_dict().items() if k not in ("mode", "weights")}
        changed = sorted(k for k in live if live[k] != running.get(k))
        if changed:
            raise ConfigError(f"{path}: {changed[0]} differs from the running config; only "
                              "mode and weights can change at run time (restart for the rest)")
        self.experiment.configure(weights=fresh.weights, mode=fresh.mode)

    def pause_arm(self, variant: str) -> None:
        """Stop routing to ``variant`` (its share goes to the others); see :meth:`resume_arm`."""
        self.experiment.pause_arm(variant)

    def resume_arm(self, variant: str) -> None:
        """Route to a paused ``variant`` again."""
        self.experiment.resume_arm(variant)

    def check_guardrails(self) -> Any:
        """Run the guardrails now; with ``rollback=True`` a failing one moves all traffic to
        the control. Also runs automatically every ``guardrail_check_every`` feedback events,
        in a background thread."""
        return self.experiment.check_guardrails()

    def resume(self, reason: str = "resumed by an explicit call") -> None:
        """Undo an automatic rollback: restore the weights in force before it."""
        self.experiment.resume(reason)

    def flush(self) -> None:
        """Write every buffered delta to the shared store now (Redis); no-op in memory.
        Also done every ``flush_seconds`` in the background and on lifespan shutdown."""
        self.experiment.flush()

    def save(self, path: str) -> Any:
        """Snapshot the in-memory statistics to ``path`` atomically; returns SnapshotInfo."""
        return self.experiment.save(path)

    def restore(self, path: str) -> Any:
        """Replace the statistics with the snapshot at ``path``; StoreError (and no change)
        if it is corrupted, truncated or belongs to another experiment."""
        return self.experiment.restore(path)

    @classmethod
    def load(cls, path: str, app: ASGIApp, variants: Mapping[str, Any],
             config: RouterConfig | None = None, **experiment_kwargs: Any) -> ModelRouter:
        """A new router whose statistics are restored from the snapshot at ``path``."""
        router = cls(app, variants, config, **experiment_kwargs)
        router.restore(path)
        return router

    def reward_counters(self, metric: str) -> dict[str, Any]:
        """Global per-variant additive counters of ``metric`` (``n``, ``sum``, ``sumsq``,
        ``successes``, ``failures``): every worker's data when the store is Redis."""
        from modelrouter.store.protocol import reward_counters

        return reward_counters(self.experiment.store.snapshot(), metric)

    def record_look(self, metric: str | None = None, *, variant: str | None = None) -> Any:
        """Record an official look of the plan's sequential test (see
        :meth:`Experiment.record_look`); later boundaries account for it."""
        return self.experiment.record_look(metric, variant=variant)

    def analysis(self) -> Any:
        """An :class:`~modelrouter.analysis.Analysis` of a consistent snapshot of the store."""
        from modelrouter.analysis import Analysis

        return Analysis.from_experiment(self.experiment)

    # -- ASGI -----------------------------------------------------------------------------
    def _routed(self, path: str) -> bool:
        if self._paths is not None and not path.startswith(self._paths):
            return False
        return not (self._exclude and path.startswith(self._exclude))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self._http is not None and scope["type"] == "http"
                and scope["path"].startswith(self._http_prefix)):
            await self._http(scope, receive, send)  # never experiment traffic
            return
        if scope["type"] != "http" or not (self._every_path or self._routed(scope["path"])):
            if scope["type"] == "lifespan":
                await run_lifespan(self.app, self.lifecycle, scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        segment = self._read_segment(scope) if self._read_segment is not None else ()
        try:
            decision, seq = self.experiment.route(self._read_unit(scope), segment)
        except UnitIdError as exc:
            await _send_error(send, 400, str(exc))
            return
        state = scope.get("state")
        scope["state"] = {"modelrouter": decision} if state is None else {
            **state, "modelrouter": decision}
        target = self._target_of[decision.variant]
        if not decision.counted:
            await target(scope, receive, send)
            return

        store = self.experiment.store
        tick = self.experiment.tick
        signer = self._signer
        timer = self._timer
        start = timer()
        status = 0
        done = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = message["status"]
                if signer is not None:  # the signed token for late feedback (tokens.py)
                    message = {**message, "headers": [*message.get("headers", ()), (
                        _TOKEN_HEADER, signer.sign_decision(decision))]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                done = True
                latency = (timer() - start) * 1000.0
                store.record_auto(seq, latency, 1.0 if status >= 500 else 0.0)
                if tick is not None:
                    tick()
            await send(message)

        try:
            await target(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            raise  # the client went away: neither a latency nor a server error to record
        except BaseException:
            if not done:
                done = True
                latency = (timer() - start) * 1000.0
                store.record_auto(seq, latency, 1.0)
            raise


_TOKEN_HEADER = TOKEN_HEADER.encode("latin-1")


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
