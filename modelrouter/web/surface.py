"""The HTTP surface under ``config.http_prefix``: feedback, admin API, dashboard, metrics.

Pure ASGI: :class:`HTTPSurface` is called by the router's middleware
(:class:`~modelrouter.asgi.middleware.RoutingMiddleware`) for paths under ``{prefix}/`` (one
``startswith`` on the routed path; nothing when the surface is off) and never counts those
requests as experiment traffic. It reaches the router only through
:class:`~modelrouter.web.handle.RouterHandle`.

=================  ======  ============================  ====================================
path               method  enabled when                  auth
=================  ======  ============================  ====================================
``/feedback``      POST    ``secret``                    the signed decision token
``/stats``         GET     ``admin_token``               bearer (or dashboard cookie)
``/export``        GET     ``admin_token``               bearer (or dashboard cookie)
``/config``        GET     ``admin_token``               bearer (or dashboard cookie)
``/config``        POST    ``admin_token``               bearer only (no cookie: no CSRF)
``/looks``         POST    ``admin_token``               bearer only
``/dashboard``     GET     ``admin_token``               bearer or cookie; else login form
``/dashboard``     POST    ``admin_token``               the login form (sets the cookie)
``/metrics``       GET     ``admin_token`` or public     bearer/cookie unless metrics_public
=================  ======  ============================  ====================================

``/stats`` answers ``router.analysis().to_dict()``, or with ``?format=text`` the report
(``analysis.report()``, what ``modelrouter status`` prints). ``/export?format=csv`` streams the
rows of a fresh snapshot (one per unit; per group at request level) as CSV, see web/export.py.

Disabled endpoints answer 404. Bad input always gets a 4xx with a JSON ``{"error": ...}``
naming the field, never a 500: forged or tampered token 403, expired token 410, bad body 422,
missing admin credentials 401, wrong ones 403; a store that cannot be read (Redis down) 503.
Admin secrets are compared in constant time (:func:`hmac.compare_digest` of SHA-256 digests,
so not even the length leaks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qs

from modelrouter.asgi.types import Receive, Scope, Send
from modelrouter.exceptions import (
    AnalysisError,
    ConfigError,
    ExpiredTokenError,
    FeedbackError,
    StoreError,
    TokenError,
    UnknownDecisionError,
    UnknownUnitError,
)
from modelrouter.routing.tokens import Signer
from modelrouter.web.admin import COOKIE_NAME, AdminAuth, apply_change, config_change
from modelrouter.web.cors import cors_headers, preflight
from modelrouter.web.export import CsvStream, query_format, stream_csv
from modelrouter.web.feedback import CheckedFeedback, TokenFeedback
from modelrouter.web.handle import RouterHandle
from modelrouter.web.messages import (
    Headers,
    HTTPError,
    Reply,
    json_reply,
    parse_json,
    read_body,
    respond,
)
from modelrouter.web.prometheus import CONTENT_TYPE, render

__all__ = ["COOKIE_NAME", "HTTPSurface"]

_DASHBOARD_CSP = (b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                  b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _feedback_status(exc: Exception) -> int:
    """The status of refused feedback: 410 expired, 403 forged, 404 unknown, 422 invalid."""
    if isinstance(exc, ExpiredTokenError):
        return 410
    if isinstance(exc, TokenError):
        return 403
    if isinstance(exc, (UnknownDecisionError, UnknownUnitError)):
        return 404
    return 422


class HTTPSurface:
    """The ASGI app mounted under the prefix by the router (see the module docstring)."""

    def __init__(self, router: RouterHandle) -> None:
        self.router = router
        self.experiment = router.experiment
        config = router.config
        self.prefix = config.http_prefix
        self.feedback = TokenFeedback(self.experiment, config.secret) if config.secret else None
        self._admin = AdminAuth(config.admin_token) if config.admin_token else None
        self.metrics_enabled = self._admin is not None or config.metrics_public
        self.refresh_seconds = 10
        self._routes: dict[str, dict[str, Callable[[Scope, Receive],
                                                   Awaitable[Reply | CsvStream]]]] = {
            "/feedback": {"POST": self._post_feedback},
            "/stats": {"GET": self._get_stats},
            "/export": {"GET": self._get_export},
            "/config": {"GET": self._get_config, "POST": self._post_config},
            "/looks": {"POST": self._post_looks},
            "/dashboard": {"GET": self._get_dashboard, "POST": self._post_login},
            "/metrics": {"GET": self._get_metrics},
        }

    @property
    def enabled(self) -> bool:
        """Whether any endpoint is on (otherwise the router does not mount the surface)."""
        return self.feedback is not None or self.metrics_enabled

    def rotate(self, *, secret: str | None = None, admin_token: str | None = None) -> None:
        """Check tokens against a new ``secret`` and admin credentials against a new
        ``admin_token`` from now on (each given one replaces its predecessor, which is refused
        from then on: bearer, dashboard cookie, tokens it signed). Only what is configured can
        be rotated (ConfigError otherwise: turning an endpoint on or off needs a restart)."""
        if (secret is not None and self.feedback is None) or (
                admin_token is not None and self._admin is None):
            raise ConfigError("rotate: only a configured secret or admin token can be rotated")
        admin = AdminAuth(admin_token) if admin_token is not None else self._admin
        if secret is not None and self.feedback is not None:
            self.feedback.signer = Signer(secret, self.experiment.config.experiment)
        self._admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(self.prefix):]
        methods = self._routes.get(path)
        try:
            if methods is None or not self._on(path):
                raise HTTPError(404, f"no endpoint {scope['path'][:200]!r}")
            handler = methods.get(scope["method"])
            if path == "/feedback" and scope["method"] == "OPTIONS":
                return await respond(send, *preflight(scope, self.router.config.cors_origins))
            if handler is None:
                raise HTTPError(405, f"method {scope['method']!r} is not allowed here; use "
                                     f"{', '.join(methods)}",
                                [(b"allow", ", ".join(methods).encode())])
            answer = await handler(scope, receive)
            if isinstance(answer, CsvStream):  # checked and snapshotted: now streamed
                await stream_csv(send, answer)
                return
            status, headers, body = answer
        except HTTPError as exc:
            status, headers, body = json_reply(exc.status, {"error": exc.message})
            headers += exc.headers
        except StoreError:  # e.g. Redis down: the store's message may name its URL, so not here
            status, headers, body = json_reply(503, {"error": "store: the experiment's store "
                                                              "cannot be read right now"})
            headers.append((b"retry-after", b"5"))
        if path == "/feedback":
            headers += cors_headers(scope, self.router.config.cors_origins)
        await respond(send, status, headers, body)

    def _on(self, path: str) -> bool:
        """Whether the endpoint at ``path`` is configured (a disabled one answers 404)."""
        if path == "/feedback":
            return self.feedback is not None
        if path == "/metrics":
            return self.metrics_enabled
        return self._admin is not None

    def _authorize(self, scope: Scope, *, cookie: bool) -> None:
        """Raise 401 without credentials, 403 with wrong ones (see AdminAuth.check)."""
        assert self._admin is not None
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
        refused = self._admin.check(headers, cookie=cookie)
        if refused is not None:
            status, message = refused
            raise HTTPError(status, message, [(b"www-authenticate", b'Bearer realm="modelrouter"')]
                            if status == 401 else [])

    # -- feedback -------------------------------------------------------------------------
    async def _post_feedback(self, scope: Scope, receive: Receive) -> Reply:
        """One item, or a batch (a list or ``{"items": [...]}``) checked as a whole before any
        of it is recorded; a batch answers per item."""
        assert self.feedback is not None
        data = parse_json(await read_body(scope, receive))
        batch = isinstance(data, list) or (isinstance(data, dict) and "items" in data)
        if isinstance(data, dict) and "items" in data:
            if set(data) != {"items"}:
                raise HTTPError(422, f"body: a batch has only 'items', got "
                                     f"{sorted(map(str, data))[:10]}")
            data = data["items"]
            if not isinstance(data, list):
                raise HTTPError(422, f"items: must be a list, got {type(data).__name__}")
        items: list[object] = data if isinstance(data, list) else [data]
        if batch and not items:
            raise HTTPError(422, "items: empty batch")
        checked = [self._check_item(item, f"items[{i}]." if batch else "")
                   for i, item in enumerate(items)]
        results: list[dict[str, object]] = []
        recorded_total = duplicates = 0
        commit = self.feedback.commit
        shared = self.experiment.store.shared  # the seen set is in Redis: off the event loop
        for i, item in enumerate(checked):
            try:
                recorded = await asyncio.to_thread(commit, item) if shared else commit(item)
            except FeedbackError as exc:  # attribution failed after validation (race, eviction)
                if not batch:
                    raise HTTPError(_feedback_status(exc), str(exc)) from None
                results.append({"error": f"items[{i}]: {exc}", "status": _feedback_status(exc),
                                "recorded": False, "duplicate": False})
                continue
            results.append({"decision_id": item.payload.decision_id, "metric": item.metric,
                            "recorded": recorded, "duplicate": not recorded})
            recorded_total += recorded
            duplicates += not recorded
        if not batch:
            return json_reply(200, results[0])
        return json_reply(200, {"results": results, "recorded": recorded_total,
                                "duplicates": duplicates})

    def _check_item(self, item: object, where: str) -> CheckedFeedback:
        """Verify one item's token and validate its fields; errors are prefixed by ``where``."""
        assert self.feedback is not None
        if not isinstance(item, dict):
            raise HTTPError(422, f"{where or 'body: '}must be an object with 'token', 'metric' "
                                 f"and 'value', got {type(item).__name__}")
        for field in ("token", "metric", "value"):
            if field not in item:
                self.feedback.rejected(item.get("metric"))
                raise HTTPError(422, f"{where}{field}: missing")
        unknown = sorted(set(item) - {"token", "metric", "value"})
        if unknown:
            self.feedback.rejected(item.get("metric"))
            raise HTTPError(422, f"{where}{str(unknown[0])[:60]}: unknown field; expected "
                                 "'token', 'metric' and 'value'")
        try:
            return self.feedback.check(item["token"], item["metric"], item["value"])
        except (TokenError, FeedbackError) as exc:
            self.feedback.rejected(item["metric"])
            msg = str(exc) if not isinstance(exc, TokenError) else f"token: {exc}"
            raise HTTPError(_feedback_status(exc), f"{where}{msg}") from None

    # -- admin API ------------------------------------------------------------------------
    async def _get_stats(self, scope: Scope, receive: Receive) -> Reply:
        """The analysis of a fresh snapshot, as ``router.analysis().to_dict()`` (valid
        against the shipped schema, modelrouter/analysis/schema); with ``?format=text`` the
        report text. Computed in a worker thread: the whole analysis of a large experiment
        takes a noticeable time (~0.6 s at a million units) that must not stall the loop."""
        self._authorize(scope, cookie=True)
        text = query_format(scope, ("json", "text")) == "text"

        def answer() -> Reply:
            analysis = self.router.analysis()
            if text:
                return 200, [(b"content-type", b"text/plain; charset=utf-8")], \
                    analysis.report().encode("utf-8", "replace")
            return json_reply(200, analysis.to_dict())

        try:
            return await asyncio.to_thread(answer)
        except AnalysisError as exc:
            raise HTTPError(409, f"analysis: {exc}") from None

    async def _get_export(self, scope: Scope, receive: Receive) -> CsvStream:
        """The rows of a fresh snapshot as CSV (streamed; see web/export.py)."""
        self._authorize(scope, cookie=True)
        query_format(scope, ("csv",))
        store = self.experiment.store
        snapshot = await asyncio.to_thread(store.snapshot) if store.shared else store.snapshot()
        return CsvStream(snapshot, f"{self.router.config.experiment}.csv")

    def _config_state(self) -> dict[str, object]:
        """The config (secrets masked) and the live allocation: what ``/config`` answers."""
        alloc = self.experiment.allocation
        return {"config": self.router.config.as_dict(), "mode": self.experiment.mode,
                "epoch": alloc.epoch, "weights": alloc.weights, "control": alloc.control,
                "paused": [v for v, w in alloc.weights.items() if w == 0.0]}

    async def _get_config(self, scope: Scope, receive: Receive) -> Reply:
        """The config and the live allocation."""
        self._authorize(scope, cookie=True)
        return json_reply(200, self._config_state())

    async def _post_config(self, scope: Scope, receive: Receive) -> Reply:
        """Change mode, weights or paused arms (see :func:`~modelrouter.web.admin.config_change`);
        an invalid change is a 422 and changes nothing."""
        self._authorize(scope, cookie=False)
        data = parse_json(await read_body(scope, receive))
        # No await from validating to applying: atomic on the event loop, and configure()
        # swaps the allocation as one object for other threads. A shared store (Redis) makes
        # the change a compare-and-set in the store (routing/shared.py): off the event loop.
        def change() -> None:
            apply_change(self.experiment, config_change(self.experiment, data))

        try:
            if self.experiment.store.shared:
                await asyncio.to_thread(change)
            else:
                change()
        except ConfigError as exc:
            raise HTTPError(422, str(exc)) from None
        return json_reply(200, self._config_state())

    async def _post_looks(self, scope: Scope, receive: Receive) -> Reply:
        """Record an official look of the sequential test; 409 when none can be taken now."""
        self._authorize(scope, cookie=False)
        data = parse_json(await read_body(scope, receive))
        if not isinstance(data, dict):
            raise HTTPError(422, "body: expected an object with optional 'metric' and 'variant'")
        unknown = sorted(str(k) for k in data if k not in ("metric", "variant"))
        if unknown:
            raise HTTPError(422, f"{unknown[0][:60]}: unknown field; expected 'metric' or "
                                 "'variant'")
        metric, variant = data.get("metric"), data.get("variant")
        if metric is not None and (not isinstance(metric, str)
                                   or metric not in self.router.config.metrics):
            raise HTTPError(422, f"metric: {str(metric)[:100]!r} is not declared; declared "
                                 f"metrics are {sorted(self.router.config.metrics)}")
        if variant is not None and (not isinstance(variant, str)
                                    or variant not in self.experiment.names):
            raise HTTPError(422, f"variant: {str(variant)[:100]!r} is not one of "
                                 f"{list(self.experiment.names)}")
        try:
            look = self.router.record_look(metric, variant=variant)
        except (AnalysisError, ConfigError, ValueError) as exc:
            raise HTTPError(409, f"looks: {exc}") from None
        return json_reply(200, {"metric": metric, "variant": variant, "look": look.to_dict()})

    # -- dashboard ------------------------------------------------------------------------
    async def _get_dashboard(self, scope: Scope, receive: Receive) -> Reply:
        """The dashboard page, or the login form (with the 401/403) without valid credentials."""
        from modelrouter.web.dashboard import render_dashboard, render_login

        try:
            self._authorize(scope, cookie=True)
        except HTTPError as exc:
            return exc.status, _html_headers(), render_login(
                self.prefix, "Your session is not valid; log in again." if exc.status == 403
                else "").encode()
        page = render_dashboard(self.router, self.router.analysis(), self.prefix,
                                refresh=self.refresh_seconds)
        return 200, _html_headers(), page.encode()

    async def _post_login(self, scope: Scope, receive: Receive) -> Reply:
        """The login form: the right admin token sets the session cookie (Secure over https)."""
        from modelrouter.web.dashboard import render_login

        assert self._admin is not None
        body = await read_body(scope, receive)
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            form = {}
        token = (form.get("token") or [""])[0].strip().encode("utf-8")
        if not self._admin.token_ok(token):
            return 403, _html_headers(), render_login(self.prefix, "Wrong admin token.").encode()
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (f"{COOKIE_NAME}={self._admin.session_value}; Path={self.prefix}; HttpOnly; "
                  f"SameSite=Strict{secure}")
        return 303, [(b"location", f"{self.prefix}/dashboard".encode()),
                     (b"set-cookie", cookie.encode()),
                     (b"content-type", b"text/plain; charset=utf-8")], b"logged in"

    # -- Prometheus -----------------------------------------------------------------------
    async def _get_metrics(self, scope: Scope, receive: Receive) -> Reply:
        """The Prometheus exposition, with the HTTP feedback counts when feedback is on."""
        if not self.router.config.metrics_public:
            self._authorize(scope, cookie=True)
        counts = dict(self.feedback.counts) if self.feedback is not None else None
        text = render(self.experiment, counts)
        return 200, [(b"content-type", CONTENT_TYPE.encode())], text.encode()


def _html_headers() -> Headers:
    """A page's headers: no script, no framing, nothing loaded from elsewhere."""
    return [(b"content-type", b"text/html; charset=utf-8"),
            (b"content-security-policy", _DASHBOARD_CSP), (b"x-frame-options", b"DENY")]
