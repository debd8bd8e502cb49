"""Helpers for testing code that uses modelrouter (and for modelrouter's own tests and demo).

:class:`ASGIClient` drives any ASGI app in-process, without sockets or httpx: it builds the
scope, feeds the body, collects the response. It is deliberately small and fast, so a
simulation can push hundreds of thousands of requests through the real middleware.
"""

from __future__ import annotations

import asyncio
import json as _json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlencode

from modelrouter.asgi.types import ASGIApp, Message, Scope

__all__ = ["ASGIClient", "Headers", "Response"]

Headers: TypeAlias = "Mapping[str, str] | list[tuple[bytes, bytes]]"
"""Request headers: ``{name: value}`` (encoded for you) or raw ASGI ``(name, value)`` pairs."""


@dataclass
class Response:
    """What the app sent back."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """First value of a response header (case-insensitive), decoded as latin-1."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    def json(self) -> Any:
        """The body parsed as JSON (``Any``: its shape is whatever the app answered)."""
        return _json.loads(self.body)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")


class ASGIClient:
    """Minimal in-process HTTP client for an ASGI app: ``await client.request(...)``.

    ``get``/``post`` are coroutines; :meth:`run` wraps one in ``asyncio.run`` for sync code.
    """

    def __init__(self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.app = app
        self.client = client

    async def request(self, method: str, path: str, *, headers: Headers | None = None,
                      query: Mapping[str, str] | None = None, body: bytes = b"",
                      json: object = None) -> Response:
        """Send one request through the app and return the collected response.

        ``json`` (any JSON-serialisable value) replaces ``body`` and sets the content type;
        ``query`` replaces a query string given in ``path``.
        """
        if json is not None:
            body = _json.dumps(json).encode()
        raw: list[tuple[bytes, bytes]]
        if headers is None:
            raw = []
        elif isinstance(headers, Mapping):
            raw = [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in headers.items()]
        else:
            raw = list(headers)
        if json is not None:
            raw.append((b"content-type", b"application/json"))
        if body:
            raw.append((b"content-length", str(len(body)).encode()))
        path, _, qs = path.partition("?")
        if query:
            qs = urlencode(query)
        scope: Scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": method.upper(), "scheme": "http",
                 "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": qs.encode(), "headers": raw, "client": self.client,
                 "server": ("testserver", 80)}
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # a real server would wait for the disconnect
            return {"type": "http.disconnect"}

        response = Response(status=0)
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        response.body = b"".join(chunks)
        return response

    async def get(self, path: str, *, headers: Headers | None = None,
                  query: Mapping[str, str] | None = None, body: bytes = b"",
                  json: object = None) -> Response:
        """``GET path`` (see :meth:`request`)."""
        return await self.request("GET", path, headers=headers, query=query, body=body,
                                  json=json)

    async def post(self, path: str, *, headers: Headers | None = None,
                   query: Mapping[str, str] | None = None, body: bytes = b"",
                   json: object = None) -> Response:
        """``POST path`` (see :meth:`request`)."""
        return await self.request("POST", path, headers=headers, query=query, body=body,
                                  json=json)

    def run(self, method: str, path: str, *, headers: Headers | None = None,
            query: Mapping[str, str] | None = None, body: bytes = b"",
            json: object = None) -> Response:
        """Synchronous :meth:`request` (starts an event loop; not for use inside one)."""
        return asyncio.run(self.request(method, path, headers=headers, query=query, body=body,
                                        json=json))
