"""Adversarial tests of the compiled request path (config/extensions.py): hostile ASGI scopes
and messages, and a seeded fuzz, through the compiled and the Python ``__call__``.

Each test runs both on identical routers (tests/asgi/_attack.py) and compares what they send,
raise, decide and store; where the two once differed the test names the finding. The other
attacks: test_compiled_attack_mirror.py (attribute mirroring), _lock.py (FastLock, Bucketer),
_store.py (exposure, unit rows, journal fold), _threads.py. Skipped where nothing was built.

Cells: memory store; one worker; A/B, bandit and A/B -> bandit -> A/B; 3 variants; user level;
a ring that wraps; restores; tokens; segments; cookies; hostile unit ids and messages.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from modelrouter import ModelRouter
from modelrouter.config.extensions import compiled
from tests.asgi._attack import (
    both,
    call,
    columns,
    compiled_call,
    make_router,
    python_call,
    scope_of,
)

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


# -- hostile scopes --------------------------------------------------------------------------
def _one_shot(pairs: list[tuple[bytes, bytes]]) -> Callable[[], Iterator[tuple[bytes, bytes]]]:
    return lambda: (pair for pair in pairs)


HOSTILE_HEADERS: dict[str, Any] = {
    "dict": {b"x-user-id": b"u1"},
    "dict-2-byte-key": {b"ab": b"u1"},
    "tuple-of-3": [(b"x-user-id", b"u1", b"z")],
    "tuple-of-1": [(b"x-user-id",)],
    "str-key": [("x-user-id", "u1")],
    "str-value": [(b"x-user-id", "u1")],
    "bytearray-value": [(b"x-user-id", bytearray(b"u1"))],
    "bytearray-key": [(bytearray(b"x-user-id"), b"u1")],
    "memoryview-value": [(b"x-user-id", memoryview(b"u1"))],
    "10MB-value": [(b"x-user-id", b"x" * 10_000_000)],
    "max-length": [(b"x-user-id", b"x" * 256)],
    "max-length+1": [(b"x-user-id", b"x" * 257)],
    "only-spaces": [(b"x-user-id", b"   ")],
    "twice": [(b"x-user-id", b"u1"), (b"x-user-id", b"u2")],
    "twice-first-padded": [(b"x-user-id", b" u1"), (b"x-user-id", b"u2")],
    "tuple-of-pairs": ((b"host", b"h"), (b"x-user-id", b"u1")),
    "lone-surrogate-bytes": [(b"x-user-id", b"\xed\xa0\x80")],
    "none": None,
    "int": 5,
    # a one-shot iterable (ASGI says Iterable): the compiled reader once read the value after
    # the first header's (u2) where the Python reader reads the first one (" u1 " -> u1)
    "generator-first-padded": _one_shot([(b"x-user-id", b" u1 "), (b"x-user-id", b"u2")]),
    "generator-only-padded": _one_shot([(b"host", b"h"), (b"x-user-id", b"u1 ")]),
    "generator-plain": _one_shot([(b"host", b"h"), (b"x-user-id", b"u1")]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
def test_hostile_headers_give_the_same_answer_decision_and_columns(name: str) -> None:
    value = HOSTILE_HEADERS[name]
    fast, slow = both(lambda i: scope_of(value() if callable(value) else value))
    assert fast == slow
    if name.startswith("generator-"):
        assert fast[0]["decision"] is not None and fast[0]["decision"][2] == "u1"


def test_a_one_shot_header_iterable_is_read_once_by_the_compiled_reader() -> None:
    """The finding itself, through a router's own call: the unit of a generator's first
    header is the one routed (the compiled twin routed u2, or nothing at all)."""
    router = make_router()
    for pairs, unit in (([(b"x-user-id", b" u1 "), (b"x-user-id", b"u2")], "u1"),
                        ([(b"x-user-id", b"u3\t")], "u3")):
        result = call(router, compiled_call, scope_of(p for p in pairs))
        assert result["decision"] is not None and result["decision"][2] == unit


def test_a_callable_source_refuses_a_lone_surrogate_in_both() -> None:
    def unit_id(scope: Mapping[str, Any]) -> str:
        return "a\ud800b"

    fast, slow = both(lambda i: scope_of([]), unit_id=unit_id)
    assert fast == slow and "400" in fast[0]["sent"]


# -- hostile messages ------------------------------------------------------------------------
class _Message(Mapping[str, Any]):
    """A message that is a Mapping but not a dict."""

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"_Message({self._d!r})"


class _Kind(str):
    """A message type that is a str subclass (compared by Python, as the Python method does)."""


class _Always(str):
    """A message type equal to every message type."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


class _Raising:
    """A message type whose comparison raises."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("no comparison")

    __hash__ = object.__hash__


_S = {"type": "http.response.start", "status": 200, "headers": []}
_B = {"type": "http.response.body", "body": b"ok"}
HOSTILE_MESSAGES: dict[str, list[Any]] = {
    "mapping-subclass": [_Message(_S), _Message(_B)],
    "missing-type": [_S, {"body": b"x"}],
    "status-str": [{**_S, "status": "200"}, _B],
    "status-500-str": [{**_S, "status": "500"}, _B],
    "status-none": [{**_S, "status": None}, _B],
    "status-float-503": [{**_S, "status": 503.0}, _B],
    "status-10**30": [{**_S, "status": 10**30}, _B],
    "status-negative": [{**_S, "status": -5}, _B],
    "no-status": [{"type": "http.response.start"}, _B],
    "more-body-truthy-str": [_S, {**_B, "more_body": "no"}, _B],
    "more-body-0": [_S, {**_B, "more_body": 0}, _B],
    "second-final-body": [_S, _B, _B],
    "body-before-start": [_B, _S, _B],
    "list-message": [_S, ["type"]],
    "headers-tuple": [{**_S, "headers": ((b"a", b"b"),)}, _B],
    "headers-none": [{**_S, "headers": None}, _B],
    "bytes-type": [_S, {"type": b"http.response.body"}],
    # the type's str compared in C (its length, then its characters), anything else by Python
    "type-str-subclass": [{**_S, "type": _Kind("http.response.start")},
                          {**_B, "type": _Kind("http.response.body")}],
    "type-equal-to-all": [{**_S, "type": _Always("x")}, {**_B, "type": _Always("y")}],
    "type-eq-raises": [_S, {**_B, "type": _Raising()}],
    "type-longer": [{**_S, "type": "http.response.starts"}, _S,
                    {**_B, "type": "http.response.body\x00"}, _B],
    "type-shorter": [{**_S, "type": "http.response.star"}, _S,
                     {**_B, "type": "http.response.bod"}, _B],
    "type-last-char": [{**_S, "type": "http.response.starx"}, _S,
                       {**_B, "type": "http.response.bodx"}, _B],
    "type-non-ascii": [{**_S, "type": "http.response.st\u00e4rt"}, _S,
                       {**_B, "type": "http.response.b\u00f6dy"}, _B],
}


def _app_sending(messages: list[Any], raise_at: int | None = None,
                 exc: type[BaseException] = RuntimeError) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for i, message in enumerate(messages):
            if raise_at == i:
                raise exc("raised by the app")
            await send(message)
        if raise_at == len(messages):
            raise exc("raised by the app")
    return app


@pytest.mark.parametrize("secret", [None, "s" * 32])
@pytest.mark.parametrize("name", sorted(HOSTILE_MESSAGES))
def test_hostile_messages_give_the_same_answer_and_columns(name: str, secret: str | None
                                                           ) -> None:
    config = {} if secret is None else {"secret": secret}
    fast, slow = both(lambda i: scope_of([(b"x-user-id", b"u%d" % i)]), n=3,
                       app=_app_sending(HOSTILE_MESSAGES[name]), **config)
    assert fast == slow
    if secret is not None and name not in ("no-status", "headers-none"):  # start sent: token
        assert all("TOKEN" in r["sent"] for r in fast)


@pytest.mark.parametrize("exc", [RuntimeError, asyncio.CancelledError, KeyboardInterrupt])
@pytest.mark.parametrize("raise_at", [0, 1, 2])
def test_an_app_raising_at_each_await_records_the_same(raise_at: int,
                                                       exc: type[BaseException]) -> None:
    fast, slow = both(lambda i: scope_of([(b"x-user-id", b"u%d" % i)]),
                       app=_app_sending([_S, _B], raise_at, exc))
    assert fast == slow and fast[0]["error"] == exc.__name__


async def _raising_send(message: Any) -> None:
    raise OSError("client gone")


def _sync_send(message: Any) -> None:
    return None


async def _cancelled_send(message: Any) -> None:
    raise asyncio.CancelledError  # the client went away while the response was sent


@pytest.mark.parametrize(("send", "expected"), [(_raising_send, "OSError"),
                                                (_sync_send, "TypeError"),
                                                (_cancelled_send, "CancelledError")])
@pytest.mark.parametrize("unit", [b"u1", b"\xff"], ids=["routed", "refused-400"])
def test_a_raising_or_synchronous_send_gives_the_same(send: Any, expected: str,
                                                      unit: bytes) -> None:
    routers = make_router(), make_router()
    results = []
    for router, via in zip(routers, (compiled_call, python_call)):
        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def go(router: ModelRouter = router, via: Any = via) -> str | None:
            try:
                await via(router, scope_of([(b"x-user-id", unit)]), receive, send)
            except BaseException as exc:  # noqa: BLE001 - the type is what is compared
                return type(exc).__name__
            return None

        results.append(asyncio.run(go()))
    assert results[0] == results[1] == expected
    assert columns(routers[0]) == columns(routers[1])

_FUZZ_VALUES: list[Any] = [
    b"u1", b"u2", b" u3", b"u4 ", b"\xff", b"", b"   ", b"x" * 256, b"x" * 257, b"\xe2\x80\x8b",
    b"caf\xc3\xa9", bytearray(b"u5"), "u6", b"a\tb", b"\t u7 \t"]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("config", [
    {"max_pending": 16, "secret": "s" * 32, "segments": {"country": "x-country"},
     "unit_cookie": "uid"},
    {"max_pending": 16}, {"max_pending": 16, "reward": "click"}],
    ids=["tokens-segments-cookie", "plain", "ab-bandit-ab"])
def test_a_seeded_fuzz_of_requests_gives_the_same_in_both_twins(seed: int,
                                                                config: dict[str, Any]) -> None:
    """400 random requests (hostile header values as lists, tuples and generators, cookies,
    segments, odd statuses and more_body values, apps raising mid-response, a restore every 97
    requests; a ring of 16 that wraps; with a reward, A/B -> bandit -> A/B): the same
    answers, decisions and columns."""
    rnd = random.Random(seed)

    def headers() -> Any:
        pairs = [(b"host", b"x")]
        for _ in range(rnd.randrange(3)):
            value = rnd.choice(_FUZZ_VALUES)
            name = rnd.choice([b"x-user-id", b"x-country", b"cookie"])
            pairs.append((name, b"uid=" + value if name == b"cookie" and type(value) is bytes
                          else value))
        kind = rnd.random()
        return tuple(pairs) if kind < 0.1 else ("generator", pairs) if kind < 0.2 else pairs

    def messages() -> tuple[list[dict[str, Any]], int | None]:
        status = rnd.choice([200, 500, 503.0, "200", None, -1, 404])
        sent: list[dict[str, Any]] = [{"type": "http.response.start", "status": status,
                                       "headers": []}]
        for _ in range(rnd.randrange(3)):
            sent.append({"type": "http.response.body", "body": b"x",
                         "more_body": rnd.choice([True, False, 0, 1, "", None])})
        return sent, rnd.choice([None, None, None, 0, 1, 2])

    plan = [(headers(), messages(), rnd.choice(["/p", "/p", "/x"])) for _ in range(400)]
    current = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sent, raise_at = plan[current[0]][1]
        for j, message in enumerate(sent):
            if raise_at == j:
                raise RuntimeError("raised by the app")
            await send(dict(message))

    fast, slow = make_router(app, **config), make_router(app, **config)
    for i, (h, _, path) in enumerate(plan):
        current[0] = i

        def scope(h: Any = h, path: str = path) -> dict[str, Any]:
            hs = (p for p in h[1]) if isinstance(h, tuple) and h[:1] == ("generator",) else h
            return {"type": "http", "path": path, "headers": hs, "query_string": b"",
                    "state": {}}

        assert call(fast, compiled_call, scope()) == call(slow, python_call, scope()), i
        if i % 97 == 96:
            for router in (fast, slow):
                router.experiment.store.load(*router.experiment.store.dump())
        if "reward" in config and i in (150, 300):  # A/B -> bandit -> A/B
            for router in (fast, slow):
                router.experiment.configure(mode="bandit" if i == 150 else "ab")
                assert router.experiment.mode == ("bandit" if i == 150 else "ab")
    assert columns(fast) == columns(slow)
    assert fast.experiment.store.stats()["decisions"] > 16  # the ring wrapped
