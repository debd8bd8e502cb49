"""CORS for the feedback endpoint: a browser front end on another origin posts feedback.

The router answers its own prefix before any ``CORSMiddleware`` of the app sees the request,
so it answers the preflight itself when ``RouterConfig(cors_origins=[...])`` names the origin:
:func:`preflight` (204 with the allowed method and header; 403 for another origin; 405 naming
the setting when none is configured) and :func:`cors_headers` (the allow-origin header on the
endpoint's answers). The admin API never answers CORS.

Thread safety: pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelrouter.asgi.types import Scope
from modelrouter.web.messages import Reply, header, json_reply

__all__ = ["cors_headers", "preflight"]


def cors_headers(scope: Scope, allowed: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """``access-control-allow-origin`` for an allowed browser origin (none otherwise)."""
    origin = header(scope, b"origin")
    if origin is None or not allowed:
        return []
    if "*" in allowed:
        return [(b"access-control-allow-origin", b"*")]
    if origin.decode("latin-1") in allowed:
        return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
    return [(b"vary", b"origin")]


def preflight(scope: Scope, allowed: Sequence[str]) -> Reply:
    """The answer to a browser's CORS preflight for ``POST /feedback`` (see the module)."""
    if not allowed:
        status, headers, body = json_reply(405, {"error": (
            "method 'OPTIONS' is not allowed here: set RouterConfig(cors_origins=[...]) "
            "to let browsers post feedback")})
        return status, headers + [(b"allow", b"POST")], body
    cors = cors_headers(scope, allowed)
    if not any(name == b"access-control-allow-origin" for name, _ in cors):
        status, headers, body = json_reply(403, {"error": "origin: not in cors_origins"})
        return status, headers + cors, body
    return 204, cors + [(b"access-control-allow-methods", b"POST"),
                        (b"access-control-allow-headers", b"content-type"),
                        (b"access-control-max-age", b"600")], b""
