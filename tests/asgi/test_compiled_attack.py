"""Adversarial tests of the compiled twins (config/extensions.py) against their Python methods.

Each test runs the compiled twin and the Python method (``python_method``) on identical objects
(same salt, injected clock and timer) and compares what they return, raise and store; where the
two once differed, crashed or lost data the test names the finding. Skipped where the twins were
not built.

Cells: memory store; one worker; A/B and bandit mode (the decision tracker); 2 and 3 variants;
user level; a pending ring that wraps; restores (``MemoryStore.load``) under concurrent traffic;
weight changes, paused and resumed arms; hostile ASGI scopes and messages; hostile journal
entries and variant codes; 8 threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.asgi.middleware import RoutingMiddleware
from modelrouter.config.extensions import compiled, python_method
from modelrouter.exceptions import UnknownDecisionError
from modelrouter.routing.assignment import Bucketer
from modelrouter.routing.experiment import Experiment
from modelrouter.store.journal import AutoJournal

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

ROOT = str(Path(__file__).resolve().parents[2])


def _counter(step: float) -> Callable[[], float]:
    it = itertools.count()
    return lambda: next(it) * step


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _router(app: Any = _ok_app, **config: Any) -> ModelRouter:
    cfg = RouterConfig(salt="attack", metrics={"click": "binary"}, **config)
    return ModelRouter(app, {"a": 0, "b": 1, "c": 2}, cfg, timer=_counter(0.00125),
                       clock=_counter(0.5), rng=random.Random(7))


def _compiled_call(router: ModelRouter, scope: Any, receive: Any, send: Any) -> Any:
    return router(scope, receive, send)


_python_call: Any = python_method(RoutingMiddleware, "__call__")


def _call(router: ModelRouter, via: Callable[..., Any], scope: dict[str, Any]) -> dict[str, Any]:
    """One request through ``via``: the exception's type, the messages sent (tokens and the
    per-process decision-id prefix blanked) and the decision's number, variant and unit."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def go() -> str | None:
        try:
            await via(router, scope, receive, send)
        except BaseException as exc:  # noqa: BLE001 - the type is what is compared
            return type(exc).__name__
        return None

    error = asyncio.run(go())
    # a token holds the per-process prefix: blanked (tests/asgi/_twin_scenario.py checks them)
    text = re.sub(r"\(b'x-modelrouter-token', b'[A-Za-z0-9_-]+'\)", "TOKEN", repr(sent))
    state = scope.get("state")
    d = state.get("modelrouter") if isinstance(state, dict) else None
    return {"error": error, "sent": text.replace(router.experiment._prefix, "P-"),
            "decision": None if d is None else (d.decision_id.partition("-")[2], d.variant,
                                                d.unit_id)}


def _columns(router: ModelRouter) -> tuple[str, dict[str, list[Any]]]:
    header, arrays = router.experiment.store.dump()
    header = {k: v for k, v in header.items() if k not in ("written_at", "pid")}
    return repr(sorted(header.items())), {k: v.tolist() for k, v in sorted(arrays.items())}


def _both(make_scope: Callable[[int], dict[str, Any]], n: int = 2, app: Any = _ok_app,
          **config: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` requests through the compiled and the Python ``__call__`` on identical routers;
    their store columns must be equal (asserted here)."""
    fast, slow = _router(app, **config), _router(app, **config)
    a = [_call(fast, _compiled_call, make_scope(i)) for i in range(n)]
    b = [_call(slow, _python_call, make_scope(i)) for i in range(n)]
    assert _columns(fast) == _columns(slow)
    return a, b


def _scope(headers: Any) -> dict[str, Any]:
    return {"type": "http", "path": "/p", "headers": headers, "query_string": b"",
            "state": {}}


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
    fast, slow = _both(lambda i: _scope(value() if callable(value) else value))
    assert fast == slow
    if name.startswith("generator-"):
        assert fast[0]["decision"] is not None and fast[0]["decision"][2] == "u1"


def test_a_one_shot_header_iterable_is_read_once_by_the_compiled_reader() -> None:
    """The finding itself, through a router's own call: the unit of a generator's first
    header is the one routed (the compiled twin routed u2, or nothing at all)."""
    router = _router()
    for pairs, unit in (([(b"x-user-id", b" u1 "), (b"x-user-id", b"u2")], "u1"),
                        ([(b"x-user-id", b"u3\t")], "u3")):
        result = _call(router, _compiled_call, _scope(p for p in pairs))
        assert result["decision"] is not None and result["decision"][2] == unit


def test_a_callable_source_refuses_a_lone_surrogate_in_both() -> None:
    def unit_id(scope: Mapping[str, Any]) -> str:
        return "a\ud800b"

    fast, slow = _both(lambda i: _scope([]), unit_id=unit_id)
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
    fast, slow = _both(lambda i: _scope([(b"x-user-id", b"u%d" % i)]), n=3,
                       app=_app_sending(HOSTILE_MESSAGES[name]), **config)
    assert fast == slow
    if secret is not None and name not in ("no-status", "headers-none"):  # start sent: token
        assert all("TOKEN" in r["sent"] for r in fast)


@pytest.mark.parametrize("exc", [RuntimeError, asyncio.CancelledError, KeyboardInterrupt])
@pytest.mark.parametrize("raise_at", [0, 1, 2])
def test_an_app_raising_at_each_await_records_the_same(raise_at: int,
                                                       exc: type[BaseException]) -> None:
    fast, slow = _both(lambda i: _scope([(b"x-user-id", b"u%d" % i)]),
                       app=_app_sending([_S, _B], raise_at, exc))
    assert fast == slow and fast[0]["error"] == exc.__name__


async def _raising_send(message: Any) -> None:
    raise OSError("client gone")


def _sync_send(message: Any) -> None:
    return None


@pytest.mark.parametrize(("send", "expected"), [(_raising_send, "OSError"),
                                                (_sync_send, "TypeError")])
def test_a_raising_or_synchronous_send_gives_the_same(send: Any, expected: str) -> None:
    routers = _router(), _router()
    results = []
    for router, via in zip(routers, (_compiled_call, _python_call)):
        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def go(router: ModelRouter = router, via: Any = via) -> str | None:
            try:
                await via(router, _scope([(b"x-user-id", b"u1")]), receive, send)
            except BaseException as exc:  # noqa: BLE001 - the type is what is compared
                return type(exc).__name__
            return None

        results.append(asyncio.run(go()))
    assert results[0] == results[1] == expected
    assert _columns(routers[0]) == _columns(routers[1])


# -- attribute mirroring (CoreMirror) ---------------------------------------------------------
def test_a_class_patch_of_route_checked_after_construction_is_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled middleware once kept calling the C route after
    ``Experiment.route_checked`` was patched on the class (the Python method calls the patch)."""
    router = _router()
    original = Experiment.route_checked
    calls: list[Any] = []

    def spy(self: Experiment, unit: str | None, segment: Any = ()) -> Any:
        calls.append(unit)
        return original(self, unit, segment)

    _call(router, _compiled_call, _scope([(b"x-user-id", b"u0")]))  # the class is checked
    monkeypatch.setattr(Experiment, "route_checked", spy)
    result = _call(router, _compiled_call, _scope([(b"x-user-id", b"u1")]))
    assert calls == ["u1"] and result["decision"][2] == "u1"
    monkeypatch.undo()  # the twin again, then patched again: each change is seen
    _call(router, _compiled_call, _scope([(b"x-user-id", b"u2")]))
    assert calls == ["u1"]
    monkeypatch.setattr(Experiment, "route_checked", spy)
    _call(router, _compiled_call, _scope([(b"x-user-id", b"u3")]))
    assert calls == ["u1", "u3"]
    monkeypatch.undo()

    class Sub(Experiment):  # a subclass with a route of its own: the middleware calls it
        def route_checked(self, unit: str | None, segment: Any = ()) -> Any:
            calls.append(f"sub-{unit}")
            return original(self, unit, segment)

    router.experiment.__class__ = Sub
    _call(router, _compiled_call, _scope([(b"x-user-id", b"u4")]))
    assert calls == ["u1", "u3", "sub-u4"]


def test_a_replaced_expose_unit_is_called_by_the_compiled_route() -> None:
    """The compiled route once called the store's C exposure even after the experiment's
    ``_expose_unit`` was replaced (the Python method calls the replacement)."""
    python_route: Any = python_method(Experiment, "route_checked")
    counts = []
    for route in (Experiment.route_checked, python_route):
        exp = _router().experiment
        calls: list[Any] = []
        original = exp._expose_unit

        def spy(*args: Any, calls: list[Any] = calls, original: Any = original) -> Any:
            calls.append(args[0])
            return original(*args)

        exp._expose_unit = spy  # type: ignore[method-assign]
        decision, seq = route(exp, "u1")
        assert decision.unit_id == "u1" and seq == 0
        counts.append(calls)
    assert counts[0] == counts[1] == ["u1"]


def test_replaced_attributes_are_seen_at_once() -> None:
    """rotate_secret, a replaced reader, clock and timer: the compiled call uses them."""
    router = _router(secret="s" * 32)
    old = router._signer
    router.rotate_secret("t" * 32)
    assert router._core.signer is router._signer is not old
    router._read_unit = lambda scope: "from-reader"  # type: ignore[assignment]
    router.experiment.clock = lambda: 123.0
    router._timer = lambda: 5.0
    result = _call(router, _compiled_call, _scope([(b"x-user-id", b"u1")]))
    assert result["decision"][2] == "from-reader"
    assert router.experiment.store.dump()[1]["first_seen"].tolist() == [123.0]
    other = _router().experiment  # another routing state: everything to "c" from now on
    other.configure(weights={"a": 0.0, "b": 0.0, "c": 1.0})
    router.experiment.state = other.state
    router._read_unit = lambda scope: scope["path"]  # type: ignore[assignment]
    variants = {_call(router, _compiled_call, {**_scope([]), "path": f"/u{i}"})["decision"][1]
                for i in range(20)}
    assert variants == {"c"}


def test_a_deleted_attribute_leaves_no_stale_copy_in_the_core() -> None:
    """Deleting a mirrored attribute refreshes the C copy too (it kept the deleted object and
    the compiled call went on calling it). Known difference left: the Python method then
    raises AttributeError, the compiled one takes the missing surface for None."""
    router = _router()
    calls: list[Any] = []

    async def surface(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    router.surface = surface
    router._http_prefix = "/p"
    del router.surface
    assert router._core.surface is None
    _call(router, _compiled_call, _scope([(b"x-user-id", b"u1")]))
    assert calls == []


def test_a_shallow_copy_has_a_c_copy_of_its_own() -> None:
    """``copy.copy`` of a router or an experiment once shared the original's C copy: an
    attribute set on the copy changed what the original's compiled twin read (its surface,
    its decision-id prefix). Each now has its own, holding the same attribute objects."""
    import copy

    router = _router()
    twin = copy.copy(router)
    assert twin._core is not router._core and twin.experiment is router.experiment

    async def surface(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the copy's surface answered the original's request")

    twin.surface = surface
    twin._http_prefix = "/"
    assert router._core.surface is None
    assert _call(router, _compiled_call, _scope([(b"x-user-id", b"u1")]))["error"] is None
    exp = router.experiment
    other = copy.copy(exp)
    other._prefix = "copy-"
    assert exp._core.prefix == exp._prefix != "copy-"
    assert other.route_checked("u2")[0].decision_id.startswith("copy-")
    assert exp.route_checked("u3")[0].decision_id.startswith(exp._prefix)


def test_objects_whose_c_copy_is_missing_raise_instead_of_crashing() -> None:
    """Each once crashed the process (a C field read through None): a middleware whose
    ``__init__`` did not run (a subclass that skips it; the Python method raises
    AttributeError), a SendWrapper made outside the middleware's call, and a UnitPath whose
    lock is None (the Python twin's ``with None`` raises TypeError)."""
    from array import array

    from modelrouter.asgi import middleware_c  # type: ignore[attr-defined]
    from modelrouter.store import hot_c  # type: ignore[attr-defined]

    class Skips(RoutingMiddleware):
        def __init__(self) -> None:  # never calls RoutingMiddleware.__init__
            pass

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    for via in (_compiled_call, _python_call):
        with pytest.raises(AttributeError):
            asyncio.run(via(Skips(), _scope([]), receive, send))
    with pytest.raises(TypeError):
        middleware_c.SendWrapper()({"type": "http.response.start", "status": 200})
    path = hot_c.UnitPath(None, 4, array("q"), array("d"), array("q"), [0, 0])
    store = type("Store", (), {"_path": path, "unit_level": True})()
    with pytest.raises(TypeError):
        hot_c.expose_unit(store, "u", lambda unit: 0.5, None, (), 0.0)


# -- FastLock ----------------------------------------------------------------------------------
def _outcome(f: Callable[[], Any]) -> str:
    try:
        return repr(f())
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc).__name__


def test_fast_lock_exit_when_unlocked_raises_instead_of_admitting_two_holders() -> None:
    """``with``'s exit on an unlocked FastLock once released the C lock a second time: then
    two non-blocking acquires both succeeded (no mutual exclusion). threading.Lock raises."""
    from modelrouter.store.unit_path import new_lock

    for lock in (new_lock(), threading.Lock()):
        with pytest.raises(RuntimeError):
            lock.__exit__(None, None, None)
        assert lock.acquire(blocking=False) is True
        assert lock.acquire(blocking=False) is False
        lock.release()


@pytest.mark.parametrize("kwargs", [
    {"timeout": 1e300}, {"timeout": float("inf")}, {"timeout": float("nan")},
    {"timeout": 1e10}, {"timeout": threading.TIMEOUT_MAX * 1.5},  # (hung: a wait of centuries)
    {"timeout": -0.5}, {"timeout": -2}, {"timeout": 0}, {"timeout": 1e-9}, {"timeout": "1"},
    {"timeout": None}, {"timeout": 10**30}, {"blocking": False, "timeout": 1},
    {"blocking": ""}, {"blocking": None}, {"blocking": 0}, {"blocking": 0, "timeout": -1}])
def test_fast_lock_acquire_of_a_held_lock_answers_as_threading_lock(
        kwargs: dict[str, Any]) -> None:
    from modelrouter.store.unit_path import new_lock

    outcomes = []
    for lock in (new_lock(), threading.Lock()):
        lock.acquire()
        outcomes.append(_outcome(lambda: lock.acquire(**kwargs)))  # noqa: B023
        lock.release()
    assert outcomes[0] == outcomes[1]


def test_fast_lock_released_by_another_thread_and_in_a_forked_child() -> None:
    from modelrouter.store.unit_path import new_lock

    lock = new_lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert not lock.locked() and lock.acquire(timeout=1) is True
    lock.release()
    code = ("import os\nfrom modelrouter import ModelRouter\n"
            "from modelrouter.store.unit_path import new_lock\n"
            "lock = new_lock()\nwith lock: pass\npid = os.fork()\n"
            "if pid == 0:\n    ok = lock.acquire(timeout=2)\n    lock.release()\n"
            "    with lock: pass\n    os._exit(0 if ok else 3)\n"
            "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": ROOT, "PATH": ""}, check=True)
    assert out.stdout.strip() == "0"


# -- Bucketer ---------------------------------------------------------------------------------
README_VECTORS = [("exp-2026-11", "user-42", 0.5784639137105301),
                  ("exp-2026-11", "alice@example.com", 0.9549300952268751),
                  ("exp-2026-11", "\U0001F600-user", 0.9186832461585094),
                  ("", "user-42", 0.7631623905706464),
                  ("checkout", "\u00c4\u00d6\u00dc-\u00df", 0.32501283654862184)]


def _reference_bucket(salt: str, unit: str) -> float:
    """README's spec, written out with hashlib (independent of Bucketer)."""
    digest = hashlib.blake2b(salt.encode() + b"\x00" + unit.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _random_ids(n: int, seed: int) -> Iterator[str]:
    rnd = random.Random(seed)
    alphabet = ([chr(c) for c in range(0x20, 0x7F)]
                + ["\u00e9", "\u00df", "\u00c4", "\U0001F600", "\u4e2d", "\u200b", "\U0010FFFF"])
    for _ in range(n):
        yield "".join(rnd.choices(alphabet, k=rnd.choice([1, 2, 8, 36, 255, 256, 257])))


def test_compiled_bucketer_matches_the_readme_vectors() -> None:
    for salt, unit, expected in README_VECTORS:
        assert Bucketer(salt)(unit) == expected == _reference_bucket(salt, unit)


def _check_buckets(n: int) -> None:
    python_bucket: Any = python_method(Bucketer, "__call__")
    b = Bucketer("exp-2026-11")
    for unit in _random_ids(n, 1):
        assert b(unit) == python_bucket(b, unit) == _reference_bucket("exp-2026-11", unit), unit


def test_compiled_bucketer_matches_the_spec_on_20k_random_ids() -> None:
    _check_buckets(20_000)


@pytest.mark.slow
def test_compiled_bucketer_matches_the_spec_on_100k_random_ids() -> None:
    _check_buckets(100_000)


def test_compiled_bucketer_refuses_what_the_python_one_refuses() -> None:
    python_bucket: Any = python_method(Bucketer, "__call__")
    b = Bucketer("s")
    for unit in ("\ud800", "a\udfffb", b"x", None, 5):
        assert (_outcome(lambda u=unit: b(u))
                == _outcome(lambda u=unit: python_bucket(b, u)))


# -- exposure and unit rows --------------------------------------------------------------------
ADD_ARGS: dict[str, tuple[Any, ...]] = {
    "plain": ("u", 1, 0.5, 3, 1.0, (1, 2)),
    "variant-200": ("u", 200, 0.5, 3, 1.0, (1, 2)),
    "variant--129": ("u", -129, 0.5, 3, 1.0, (1, 2)),
    "variant-float": ("u", 1.0, 0.5, 3, 1.0, (1, 2)),
    "variant-bool": ("u", True, 0.5, 3, 1.0, (1, 2)),
    "epoch-2**31": ("u", 1, 0.5, 2**31, 1.0, (1, 2)),
    "epoch-2**70": ("u", 1, 0.5, 2**70, 1.0, (1, 2)),
    "propensity-str": ("u", 1, "x", 3, 1.0, (1, 2)),
    "now-None": ("u", 1, 0.5, 3, None, (1, 2)),
    "now-10**400": ("u", 1, 0.5, 3, 10**400, (1, 2)),
    "segment-short": ("u", 1, 0.5, 3, 1.0, (1,)),
    "segment-long": ("u", 1, 0.5, 3, 1.0, (1, 2, 3)),
    "segment-70000": ("u", 1, 0.5, 3, 1.0, (1, 70000)),
    "segment-negative": ("u", 1, 0.5, 3, 1.0, (-1, 2)),
    "segment-list": ("u", 1, 0.5, 3, 1.0, [1, 2]),
    "segment-None": ("u", 1, 0.5, 3, 1.0, None),
    "segment-str": ("u", 1, 0.5, 3, 1.0, "ab"),
    "unit-unhashable": (["u"], 1, 0.5, 3, 1.0, (1, 2)),
}


@pytest.mark.parametrize("name", sorted(ADD_ARGS))
def test_hostile_unit_rows_are_added_or_refused_as_by_the_python_twin(name: str) -> None:
    """UnitTable.add's twin: the same row, or the same exception after the same appends."""
    from modelrouter.store.units import UnitTable

    python_add: Any = python_method(UnitTable, "add")
    outcomes = []
    args = ADD_ARGS[name]
    for compiled_add in (True, False):
        table = UnitTable(2, 2, (0, 1), ())
        table.add("first", 0, 0.5, 0, 0.0, (0, 0))
        got = _outcome(lambda t=table: t.add(*args) if compiled_add  # noqa: B023
                       else python_add(t, *args))
        outcomes.append((got, dict(table.rows), list(table.ids), list(table.variant),
                         list(table.epoch), list(table.propensity), list(table.first_seen),
                         list(table.exposures), [list(c) for c in table.segs], table._cap))
    assert outcomes[0] == outcomes[1]


class _PlainChooser:
    """A chooser without the allocation's cached layout (the store's protocol allows it)."""

    propensities = (0.25, 0.25, 0.5)
    epoch = 9

    def choose(self, u: float) -> int:
        return 0 if u < 0.25 else (1 if u < 0.5 else 2)


def test_exposures_agree_on_a_random_run_with_restores_and_allocation_changes() -> None:
    """5 seeded runs of 400 exposures (60 units and hostile ids, a ring of 32 that wraps,
    4 allocations including a layout-less chooser, int and float times, restores)."""
    from modelrouter.routing.assignment import Allocation
    from modelrouter.store.memory import MemoryStore

    python_expose: Any = python_method(MemoryStore, "expose_unit")
    names = ("a", "b", "c")
    allocs: list[Any] = [Allocation(names, {"a": 0.2, "b": 0.3, "c": 0.5}, epoch=1),
                         Allocation(names, {"a": 0.6, "b": 0.2, "c": 0.2}, epoch=2),
                         _PlainChooser(), Allocation(names, {"a": 1.0, "b": 0.0, "c": 0.0},
                                                     epoch=3)]
    for seed in range(5):
        rnd = random.Random(seed)
        exps = [Experiment(dict.fromkeys(names, 0), RouterConfig(
            salt="expose", metrics={"click": "binary"}, max_pending=32)) for _ in range(2)]
        for step in range(400):
            if rnd.random() < 0.03:
                for exp in exps:
                    exp.store.load(*exp.store.dump())
                continue
            unit = (f"u{rnd.randrange(60)}" if rnd.random() < 0.97
                    else rnd.choice(["\u00e9", "\U0001F600" * 3, "x" * 256]))
            alloc = rnd.choice(allocs)
            now = rnd.choice([step * 0.5, float(step), step])
            a = exps[0].store.expose_unit(unit, exps[0]._bucket, alloc, (), now)
            b = python_expose(exps[1].store, unit, exps[1]._bucket, alloc, (), now)
            assert a == b, (seed, step)
        dumps = [{k: v.tolist() for k, v in exp.store.dump()[1].items()} for exp in exps]
        assert dumps[0] == dumps[1]
        assert exps[0].store.stats() == exps[1].store.stats()


@pytest.mark.parametrize("u", [0.3, 0.5, 1.0, 0.0, -0.0, float("inf"), -float("inf"),
                               float("nan"), 0.9999999999999999, -1e-300, 5, True])
def test_buckets_on_and_past_the_lane_bounds_choose_as_the_python_twin(u: float) -> None:
    from modelrouter.routing.assignment import Allocation
    from modelrouter.store.memory import MemoryStore

    python_expose: Any = python_method(MemoryStore, "expose_unit")
    alloc = Allocation(("a", "b", "c"), {"a": 0.2, "b": 0.3, "c": 0.5}, epoch=1)
    outcomes = []
    for compiled_expose in (True, False):
        store: Any = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
            metrics={"click": "binary"})).store
        expose: Any = (store.expose_unit if compiled_expose
                       else (lambda *args, store=store: python_expose(store, *args)))
        first = _outcome(lambda: expose("u", lambda unit: u, alloc, (), 1.0))  # noqa: B023
        again = _outcome(lambda: expose("u", lambda unit: u, alloc, (), 1.0))  # noqa: B023
        outcomes.append((first, again, repr(list(store._ubucket)), store.stats()["decisions"]))
    assert outcomes[0] == outcomes[1]


def test_the_compiled_route_takes_names_and_prefixes_of_any_type() -> None:
    """Setting ``names`` to a list (or ``_prefix`` to a non-str) once raised TypeError from the
    core's refresh (typed C fields) after the attribute was set; the Python method takes both."""
    python_route: Any = python_method(Experiment, "route_checked")
    ids = []
    for route in (Experiment.route_checked, python_route):
        exp = Experiment({"a": 0, "b": 1}, RouterConfig(salt="types",
                                                         metrics={"click": "binary"}))
        exp.names = ["x", "y"]  # type: ignore[assignment]
        exp._prefix = 7  # type: ignore[assignment]
        decision, seq = route(exp, "u1")
        ids.append((decision.decision_id, decision.variant, seq))
    assert ids[0] == ids[1] == ("70", ids[0][1], 0) and ids[0][1] in ("x", "y")


# -- journal fold -----------------------------------------------------------------------------
_python_fold: Any = python_method(AutoJournal, "fold")


def _fold_run(entries: list[Any], compiled_fold: bool, bandit: bool,
              variant_code: int | None = None, hist_sum_len: int | None = None) -> str:
    """A store after 100 requests of 30 units (ring of 64: it wrapped), its journal given
    ``entries``, folded by one twin: the exception's type and every column it touches."""
    r = _router(max_pending=64, **({"reward": "click"} if bandit else {}))
    exp = r.experiment
    if bandit:
        exp.configure(mode="bandit")
    for i in range(100):
        exp.route_checked(f"u{i % 30}")
    store: Any = exp.store
    store.fold_journal()
    if variant_code is not None:  # a corrupt code (written directly: a load refuses it)
        store._units.variant[store._ring_row[99 % 64]] = variant_code
    if hist_sum_len is not None:
        del store._hist_sum[hist_sum_len:]
    journal = store.journal
    journal.entries.extend(entries)
    error = None
    with store._lock:
        try:
            if compiled_fold:
                store._fold()
            else:
                _python_fold(journal, store._ring_seq, store._ring_row, store.max_pending,
                             store._units, store._hist, store._hist_sum, store._decisions,
                             store._auto)
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            error = type(exc).__name__
    u = store._units
    tracker = store._decisions
    return repr({
        "error": error, "left": journal.entries,
        "cols": [list(c) for c in (u.lat_x, u.lat_y, u.err_x, u.err_y)],
        "hist": list(store._hist), "hist_sum": [(type(x).__name__, x) for x in store._hist_sum],
        "tracker": None if tracker is None else (
            [list(c) for c in tracker._x] + [list(c) for c in tracker._y]
            + [tracker.counters, tracker.pending])})


def _np_entries() -> list[Any]:
    np = pytest.importorskip("numpy")
    return [(np.int64(99), np.float64(2.0), np.float64(1.0)), (np.int32(98), np.float32(1.5), 0)]


FOLD_ENTRIES: dict[str, Any] = {
    "negative-seq": [(-1, 5.0, 0.0), (-64, 5.0, 1.0), (99, 1.0, 0.0)],
    "nan": [(99, float("nan"), 0.0), (98, 1.0, float("nan"))],
    "inf": [(99, float("inf"), 0.0), (98, -float("inf"), 1.0)],
    "1e300": [(99, 1e300, 0.0), (98, 1e300, 1.0), (98, 1e300, 0.0)],
    "int-latency-and-error": [(99, 5, 1), (98, 7, 0)],
    "bool-error": [(99, 1.0, True)],
    "negative-error": [(99, 1.0, -1.0)],
    "evicted": [(0, 1.0, 0.0), (36, 2.0, 1.0)],
    # these once differed: the compiled fold converted the values before the eviction check
    # (an evicted entry raised and the batch was lost), took None or a str error as a C double
    # (TypeError where the twin counts the request), accepted a 4-tuple, raised OverflowError
    # on a number past a C long long (the twin skips it) and indexed by a float number
    "10**400-latency": [(99, 10**400, 0.0)],
    "10**400-latency-evicted": [(1, 10**400, 0.0), (99, 3.0, 0.0)],
    "none-latency-evicted": [(1, None, 0.0), (99, 3.0, 0.0)],
    "none-latency": [(99, None, 0.0), (98, 3.0, 0.0)],
    "none-error": [(99, 2.0, None), (98, 3.0, "1")],
    "str-latency": [(99, "5", 0.0)],
    "4-tuple": [(99, 1.0, 0.0, 9)],
    "2**70-seq": [(2**70, 1.0, 0.0), (99, 1.0, 0.0)],
    "float-seq": [(99.0, 1.0, 0.0)],
    "numpy": "numpy",
}


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
@pytest.mark.parametrize("name", sorted(FOLD_ENTRIES))
def test_hostile_journal_entries_fold_the_same(name: str, bandit: bool) -> None:
    entries = _np_entries() if FOLD_ENTRIES[name] == "numpy" else FOLD_ENTRIES[name]
    assert _fold_run(entries, True, bandit) == _fold_run(entries, False, bandit)


def test_a_short_journal_entry_raises_instead_of_reading_past_the_tuple() -> None:
    """A 2-tuple entry: the compiled fold once read ``entry[2]`` past the tuple (a segfault);
    both twins now raise ValueError (the unpacking's)."""
    for compiled_fold in (True, False):
        assert "'error': 'ValueError'" in _fold_run([(99, 1.0)], compiled_fold, False)


@pytest.mark.parametrize(("code", "hist_sum_len"), [(-1, None), (-3, None), (-4, None),
                                                    (3, None), (127, None), (2, 1)])
def test_a_corrupt_variant_code_folds_as_the_python_twin(code: int, hist_sum_len: int | None
                                                         ) -> None:
    """A unit whose variant code the histogram sums do not hold: the compiled fold once read
    and wrote ``hist_sum[v]`` without a bound (-1: a segfault; -3: garbage, TypeError; a
    short list: a write past its end). Now the list's own indexing, as in the twin."""
    assert (_fold_run([(99, 3.0, 1.0)], True, False, code, hist_sum_len)
            == _fold_run([(99, 3.0, 1.0)], False, False, code, hist_sum_len))


# -- threads ----------------------------------------------------------------------------------
def _hammer(restore: bool) -> dict[str, Any]:
    """8 threads x 1,500 requests (route_checked, record_auto, every 3rd a click) through the
    compiled path while a control thread changes weights, pauses and resumes an arm, takes
    snapshots and (``restore``) dumps and loads the store."""
    exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
        salt="threads", metrics={"click": "binary"},
        max_pending=512 if restore else 100_000))
    store: Any = exp.store
    errors: list[str] = []
    clicks, evicted, loads = [0] * 8, [0] * 8, [0]
    done = threading.Event()

    def worker(t: int) -> None:
        rnd = random.Random(t)
        try:
            for k in range(1_500):
                decision, seq = exp.route_checked(f"u{rnd.randrange(2_000)}")
                store.record_auto(seq, 1.5, 1.0 if k % 7 == 0 else 0.0)
                if k % 3 == 0:
                    try:
                        exp.record(decision, "click", 1)
                        clicks[t] += 1
                    except UnknownDecisionError:  # evicted from the ring (restore: 512)
                        evicted[t] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    def control() -> None:
        weights = [{"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.5, "b": 0.25, "c": 0.25}]
        try:
            for i in itertools.count():
                if done.is_set():
                    break
                exp.configure(weights=weights[i % 2])
                exp.pause_arm("c")
                exp.resume_arm("c")
                store.snapshot()
                if restore and i % 2 == 0:
                    header, arrays = store.dump()
                    store.load(header, arrays)
                    loads[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append("control: " + repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many more thread switches inside the hot path
    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        ctl = threading.Thread(target=control)
        ctl.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        ctl.join()
    finally:
        sys.setswitchinterval(interval)
    store.fold_journal()
    u = store._units
    n = len(u.variant)
    return {"errors": errors, "loads": loads[0], "decisions": store.stats()["decisions"],
            "requests": sum(store._path.requests), "exposures": sum(u.exposures),
            "lat_y": sum(u.lat_y[:n]), "lat_x": sum(u.lat_x[:n]), "err_x": sum(u.err_x[:n]),
            "hist": sum(store._hist), "hist_sum": sum(store._hist_sum),
            "click_y": sum(u.y[store.metric_index["click"]][:n]), "clicks": sum(clicks),
            "evicted": sum(evicted)}


def test_eight_threads_lose_nothing_through_the_compiled_path() -> None:
    """Totals exact: 12,000 requests, exposures and journal entries (ring of 100,000: none
    evicted), 4,000 clicks; the error count is that of k % 7 == 0 (215 of 1,500 per thread)."""
    got = _hammer(restore=False)
    assert got["errors"] == []
    assert got["decisions"] == got["requests"] == got["exposures"] == 12_000
    assert got["lat_y"] == got["hist"] == 12_000 and got["lat_x"] == got["hist_sum"] == 18_000
    assert got["err_x"] == 8 * 215
    assert got["clicks"] == got["click_y"] == 4_000 and got["evicted"] == 0


def test_eight_threads_with_restores_keep_the_columns_consistent() -> None:
    """With loads under traffic (what was routed between a dump and its load is forgotten, by
    design) the numbering continues and every column agrees with the others."""
    got = _hammer(restore=True)
    assert got["errors"] == [] and got["loads"] >= 1
    assert got["decisions"] == 12_000
    assert got["requests"] == got["exposures"] <= 12_000
    assert got["lat_y"] == got["hist"] and got["hist_sum"] == got["lat_x"] == 1.5 * got["lat_y"]
    assert got["click_y"] <= got["clicks"] <= 4_000


def test_eight_threads_through_the_compiled_middleware_record_every_request() -> None:
    """8 threads, each its own event loop, x 500 requests through the router's compiled call
    (every 5th a 500) while another thread changes weights, pauses and resumes an arm and takes
    snapshots: every request is exposed once and its latency and error folded exactly once."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 500 if scope["path"] == "/fail" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"y"})

    router = ModelRouter(app, {"a": 0, "b": 1, "c": 2}, RouterConfig(
        salt="mw-threads", metrics={"click": "binary"}))
    errors: list[str] = []
    done = threading.Event()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    def worker(t: int) -> None:
        async def run() -> None:
            for k in range(500):
                path = "/fail" if k % 5 == 0 else "/p"
                scope = {"type": "http", "path": path, "state": {},
                         "headers": [(b"x-user-id", b"t%d-u%d" % (t, k % 97))]}
                await router(scope, receive, send)
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    def control() -> None:
        exp = router.experiment
        weights = [{"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.5, "b": 0.25, "c": 0.25}]
        try:
            for i in itertools.count():
                if done.is_set():
                    break
                exp.configure(weights=weights[i % 2])
                exp.pause_arm("c")
                exp.resume_arm("c")
                exp.store.snapshot()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append("control: " + repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        ctl = threading.Thread(target=control)
        ctl.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        ctl.join()
    finally:
        sys.setswitchinterval(interval)
    store: Any = router.experiment.store
    store.fold_journal()
    units = store._units
    n = len(units.variant)
    assert errors == []
    assert n == 8 * 97
    assert store.stats()["decisions"] == sum(store._path.requests) == sum(units.exposures) == 4000
    assert sum(units.lat_y[:n]) == sum(store._hist) == 4000
    assert sum(units.err_x[:n]) == 8 * 100 and sum(units.err_y[:n]) == 4000


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
def test_a_restore_between_append_and_fold_folds_the_same(bandit: bool) -> None:
    """Entries appended before a load are folded into the replaced tables by the load; those
    appended after it for decisions issued before it are skipped (the ring was cleared);
    decisions issued after it are folded. Both twins, A/B and bandit mode."""
    outcomes = []
    for compiled_fold in (True, False):
        exp = _router(**({"reward": "click"} if bandit else {})).experiment
        if bandit:
            exp.configure(mode="bandit")
        store: Any = exp.store
        if not compiled_fold:  # the Python method as the journal's fold, for this store only
            journal = store.journal
            store.journal = type("PythonJournal", (), {
                "entries": journal.entries, "threshold": journal.threshold,
                "fold": lambda self, *a, j=journal: _python_fold(j, *a)})()
        seqs = [exp.route_checked(f"u{i}")[1] for i in range(20)]
        for seq in seqs[:10]:
            store.record_auto(seq, 2.0, 0.0)
        header, arrays = store.dump()  # folds the first ten
        for seq in seqs[10:15]:
            store.record_auto(seq, 3.0, 1.0)  # folded by the load into the replaced tables
        store.load(header, arrays)
        for seq in seqs[15:]:
            store.record_auto(seq, 4.0, 1.0)  # issued before the load: skipped
        after = [exp.route_checked(f"u{i}")[1] for i in range(5)]
        for seq in after:
            store.record_auto(seq, 5.0, 0.0)
        store.fold_journal()
        units = store._units
        outcomes.append((list(units.lat_x[:20]), list(units.lat_y[:20]), list(units.err_x[:20]),
                         list(store._hist), list(store._hist_sum)))
    assert outcomes[0] == outcomes[1]
    lat_x = outcomes[0][0]
    assert sum(lat_x) == 10 * 2.0 + 5 * 5.0 and sum(outcomes[0][2]) == 0.0


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

    fast, slow = _router(app, **config), _router(app, **config)
    for i, (h, _, path) in enumerate(plan):
        current[0] = i

        def scope(h: Any = h, path: str = path) -> dict[str, Any]:
            hs = (p for p in h[1]) if isinstance(h, tuple) and h[:1] == ("generator",) else h
            return {"type": "http", "path": path, "headers": hs, "query_string": b"",
                    "state": {}}

        assert _call(fast, _compiled_call, scope()) == _call(slow, _python_call, scope()), i
        if i % 97 == 96:
            for router in (fast, slow):
                router.experiment.store.load(*router.experiment.store.dump())
        if "reward" in config and i in (150, 300):  # A/B -> bandit -> A/B
            for router in (fast, slow):
                router.experiment.configure(mode="bandit" if i == 150 else "ab")
                assert router.experiment.mode == ("bandit" if i == 150 else "ab")
    assert _columns(fast) == _columns(slow)
    assert fast.experiment.store.stats()["decisions"] > 16  # the ring wrapped
