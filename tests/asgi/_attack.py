"""Helpers of the adversarial tests of the compiled twins (test_compiled_attack*.py): two
identical routers (same salt, injected clock, timer and rng), one request through the compiled
or the Python ``RoutingMiddleware.__call__``, and what is compared: the exception's type, the
messages sent (tokens and the per-process decision-id prefix blanked), the decision and the
store's columns."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import Callable
from typing import Any

from modelrouter import ModelRouter, RouterConfig
from modelrouter.asgi.middleware import RoutingMiddleware
from modelrouter.config.extensions import python_method
from modelrouter.store.journal import AutoJournal


def counter(step: float) -> Callable[[], float]:
    it = itertools.count()
    return lambda: next(it) * step


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def make_router(app: Any = ok_app, **config: Any) -> ModelRouter:
    cfg = RouterConfig(salt="attack", metrics={"click": "binary"}, **config)
    return ModelRouter(app, {"a": 0, "b": 1, "c": 2}, cfg, timer=counter(0.00125),
                       clock=counter(0.5), rng=random.Random(7))


def compiled_call(router: ModelRouter, scope: Any, receive: Any, send: Any) -> Any:
    return router(scope, receive, send)


python_call: Any = python_method(RoutingMiddleware, "__call__")


def call(router: ModelRouter, via: Callable[..., Any], scope: dict[str, Any]) -> dict[str, Any]:
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


def columns(router: ModelRouter) -> tuple[str, dict[str, list[Any]]]:
    header, arrays = router.experiment.store.dump()
    header = {k: v for k, v in header.items() if k not in ("written_at", "pid")}
    return repr(sorted(header.items())), {k: v.tolist() for k, v in sorted(arrays.items())}


def both(make_scope: Callable[[int], dict[str, Any]], n: int = 2, app: Any = ok_app,
          **config: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` requests through the compiled and the Python ``__call__`` on identical routers;
    their store columns must be equal (asserted here)."""
    fast, slow = make_router(app, **config), make_router(app, **config)
    a = [call(fast, compiled_call, make_scope(i)) for i in range(n)]
    b = [call(slow, python_call, make_scope(i)) for i in range(n)]
    assert columns(fast) == columns(slow)
    return a, b


def scope_of(headers: Any) -> dict[str, Any]:
    return {"type": "http", "path": "/p", "headers": headers, "query_string": b"",
            "state": {}}


def outcome(f: Callable[[], Any]) -> str:
    try:
        return repr(f())
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc).__name__


_python_fold: Any = python_method(AutoJournal, "fold")


def typeable(entry: Any) -> bool:
    """Whether the compiled middleware would write a journal ``entry`` as a C record
    (``AutoJournal.typed``): an int decision number that fits a C long long and two floats,
    the error 0 or 1 (else it appends the tuple to the list)."""
    return (type(entry) is tuple and len(entry) == 3 and type(entry[0]) is int
            and -2**63 <= entry[0] < 2**63 and type(entry[1]) is float
            and type(entry[2]) is float and entry[2] in (0.0, 1.0))


def fold_run(entries: list[Any], compiled_fold: bool, bandit: bool,
             variant_code: int | None = None, hist_sum_len: int | None = None,
             hist_sum_extra: int = 0, typed: bool = False) -> str:
    """A store after 100 requests of 30 units (ring of 64: it wrapped), its journal given
    ``entries`` (with ``typed``, split as the compiled middleware splits them: C records and
    the list's tuples), folded by one twin: the exception's type, what is left and every
    column the fold touches."""
    r = make_router(max_pending=64, **({"reward": "click"} if bandit else {}))
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
    store._hist_sum.extend([0.5] * hist_sum_extra)
    journal = store.journal
    for entry in entries:
        if typed and typeable(entry):
            journal.typed.append(*entry)
        else:
            journal.entries.append(entry)
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
        "typed_left": 0 if journal.typed is None else len(journal.typed),
        "cols": [list(c) for c in (u.lat_x, u.lat_y, u.err_x, u.err_y)],
        "hist": list(store._hist), "hist_sum": [(type(x).__name__, x) for x in store._hist_sum],
        "tracker": None if tracker is None else (
            [list(c) for c in tracker._x] + [list(c) for c in tracker._y]
            + [tracker.counters, tracker.pending])})
