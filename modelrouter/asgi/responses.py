"""The middleware's own answers: a JSON error for a request it refuses (a malformed unit id)."""

from __future__ import annotations

import json

from modelrouter.asgi.types import Send

__all__ = ["send_error"]


async def send_error(send: Send, status: int, message: str) -> None:
    """Answer ``status`` with ``{"error": message}`` as JSON."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
