"""The surface's HTTP plumbing: strict JSON out, bounded bodies in, JSON parsing errors that
name the body, the headers every answer carries."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from modelrouter.asgi.types import Message, Scope
from modelrouter.web.messages import (
    MAX_BODY,
    SECURITY_HEADERS,
    HTTPError,
    header,
    json_reply,
    jsonable,
    parse_json,
    read_body,
    respond,
)


def test_jsonable() -> None:
    assert jsonable({"a": math.nan, "b": (1, np.float64(2.5)), "c": np.arange(2), 3: math.inf}
                    ) == {"a": None, "b": [1, 2.5], "c": [0, 1], "3": None}


def test_jsonable_numpy_scalars_sets_and_other_objects() -> None:
    out = jsonable({"n": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True),
                    "nan": np.array([1.0, np.nan]), "s": {2}, "o": object})
    assert out == {"n": 3, "f": 0.5, "b": True, "nan": [1.0, None], "s": [2],
                   "o": "<class 'object'>"}
    assert type(out["n"]) is int and type(out["b"]) is bool  # type: ignore[index]
    json.dumps(out, allow_nan=False)  # strict JSON


def test_json_reply_is_strict_and_compact() -> None:
    status, headers, body = json_reply(201, {"a": math.nan, "b": [1, -math.inf], "c": "é"})
    assert status == 201 and headers == [(b"content-type", b"application/json")]
    assert body == b'{"a":null,"b":[1,null],"c":"\\u00e9"}'


def test_respond_adds_the_security_headers_and_the_length() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(respond(send, 404, [(b"content-type", b"text/plain")], b"gone"))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 404 and sent[1]["body"] == b"gone"
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"), *SECURITY_HEADERS,
                                  (b"content-length", b"4")]
    assert dict(SECURITY_HEADERS) == {b"cache-control": b"no-store",
                                      b"x-content-type-options": b"nosniff",
                                      b"referrer-policy": b"no-referrer"}


def test_header_is_the_first_match_of_any_case() -> None:
    scope: Scope = {"headers": [(b"X-Thing", b"1"), (b"x-thing", b"2")]}
    assert header(scope, b"x-thing") == b"1"
    assert header(scope, b"x-other") is None
    assert header({}, b"x-thing") is None  # a scope without headers


def read(messages: list[Message], headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """read_body over ``messages``; fails if it asks for more than there are."""
    pending = list(messages)

    async def receive() -> Message:
        assert pending, "read past the last message"
        return pending.pop(0)

    return asyncio.run(read_body({"headers": headers or []}, receive))


def chunk(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def test_read_body_joins_the_chunks_up_to_the_limit() -> None:
    assert read([chunk(b'{"a"', True), chunk(b": 1}")]) == b'{"a": 1}'
    assert read([{"type": "http.request"}]) == b""  # no body key: empty
    assert len(read([chunk(b"x" * MAX_BODY)])) == MAX_BODY
    with pytest.raises(HTTPError, match="body: larger than the limit") as info:
        read([chunk(b"x" * MAX_BODY, True), chunk(b"x")])
    assert info.value.status == 422


def test_read_body_checks_a_declared_length_before_reading() -> None:
    too_big = [(b"content-length", str(MAX_BODY + 1).encode())]
    with pytest.raises(HTTPError, match=f"body: {MAX_BODY + 1} bytes") as info:
        read([], too_big)  # not a single message read
    assert info.value.status == 422
    with pytest.raises(HTTPError, match="content-length header is not an integer") as info:
        read([], [(b"content-length", b"ten")])
    assert info.value.status == 400


def test_read_body_refuses_a_client_gone_mid_body() -> None:
    with pytest.raises(HTTPError, match="disconnected") as info:
        read([chunk(b'{"tok', True), {"type": "http.disconnect"}])
    assert info.value.status == 400


@pytest.mark.parametrize(("body", "message"), [
    (b"", "body: empty"),
    (b"{", "body: not valid JSON"),
    (b"\xff\xfe{}", "body: not valid JSON"),
    (b"[" * 60_000 + b"]" * 60_000, "body: not valid JSON"),  # nested past the recursion limit
])
def test_parse_json_errors_name_the_body(body: bytes, message: str) -> None:
    with pytest.raises(HTTPError, match=message) as info:
        parse_json(body)
    assert info.value.status == 422


def test_parse_json_returns_any_json_value() -> None:
    assert parse_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert parse_json(b'"text"') == "text"
