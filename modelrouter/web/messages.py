"""The HTTP plumbing of the surface: bounded request bodies, JSON in and out, errors.

Kept apart from the endpoints (:mod:`modelrouter.web.surface`) so each endpoint reads as what it
checks and answers. Everything here is about untrusted input: a body is read only up to
:data:`MAX_BODY` (checked against a declared ``content-length`` before reading, and while
streaming without one), invalid JSON is a 422 naming ``body``, and answers are strict JSON (no
NaN or Infinity, which strict parsers such as a browser's ``JSON.parse`` refuse) with the
security headers every answer of the surface carries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeAlias

from modelrouter.asgi.types import Receive, Scope, Send
from modelrouter.stats.jsondata import JSON, plain

__all__ = ["JSON", "MAX_BODY", "SECURITY_HEADERS", "Headers", "HTTPError", "Reply", "header",
           "json_reply", "jsonable", "parse_json", "read_body", "respond"]

Headers: TypeAlias = "list[tuple[bytes, bytes]]"
Reply: TypeAlias = "tuple[int, Headers, bytes]"
"""What an endpoint answers: status, headers, body (:func:`respond` adds the security headers)."""

MAX_BODY = 64 * 1024
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"))
"""On every answer: nothing of the admin API is cached, sniffed or leaked as a referrer."""


class HTTPError(Exception):
    """An answer other than 200, with a message for the client."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


def jsonable(value: object) -> JSON:
    """Plain JSON data: NaN/inf become null (strict JSON has neither), tuples, sets and numpy
    arrays become lists, numpy scalars numbers, mapping keys strings, anything else its string
    (:func:`modelrouter.stats.jsondata.plain`, which ``Analysis.to_dict()`` uses too)."""
    return plain(value)


def json_reply(status: int, data: object) -> Reply:
    """``data`` as a compact, strict JSON answer (see :func:`jsonable`)."""
    body = json.dumps(jsonable(data), allow_nan=False, separators=(",", ":")).encode()
    return status, [(b"content-type", b"application/json")], body


async def respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    """Send one complete answer, with the security headers and its content length."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, *SECURITY_HEADERS,
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of the (lower-case) header ``name``, or None."""
    headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive) -> bytes:
    """The whole request body, at most :data:`MAX_BODY` bytes: 422 beyond it (declared or
    streamed), 400 for a malformed ``content-length`` or a client gone before the end."""
    length = header(scope, b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPError(400, "content-length header is not an integer") from None
        if declared > MAX_BODY:
            raise HTTPError(422, f"body: {declared} bytes is larger than the limit of "
                                 f"{MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client disconnected before the body was complete")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError(422, f"body: larger than the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json(body: bytes) -> object:
    """``body`` parsed as JSON (any JSON value: the endpoint checks its shape); 422 naming
    ``body`` when it is empty, not UTF-8, not JSON or nested too deep."""
    if not body:
        raise HTTPError(422, "body: empty; expected JSON")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise HTTPError(422, f"body: not valid JSON ({str(exc)[:120]})") from None
