"""The compiled request path without a coroutine of its own (asgi/middleware_c.pyx): the
middleware class's call slot returns the app's awaitable or a ``Flight``, and ``__call__`` stays
a coroutine function. What a server, asyncio and a subclass see must not change, and a request
driven by hand (send, throw, close, dropped while suspended) must record what the Python
method records.

Matrix cells: memory store; one worker; A/B; 3 variants; user level; fresh; valid and hostile
input (apps that return odd awaitables or raise synchronously, cancelled and closed requests,
patched and subclassed ``__call__``).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import types
from typing import Any

import pytest

from modelrouter import ModelRouter
from modelrouter.config.extensions import compiled
from tests.asgi._attack import columns, compiled_call, make_router, ok_app, python_call, scope_of

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def scope(unit: bytes = b"u1") -> dict[str, Any]:
    return scope_of([(b"x-user-id", unit)])


def auto_totals(router: ModelRouter) -> tuple[float, float]:
    """(requests whose automatic metrics were recorded, how many of them as server errors)."""
    _, arrays = router.experiment.store.dump()
    return float(arrays["y:error"].sum()), float(arrays["x:error"].sum())


def test_servers_still_see_an_asgi3_coroutine_function() -> None:
    """uvicorn (asyncio.iscoroutinefunction of ``app.__call__``), hypercorn and Starlette
    (inspect.iscoroutinefunction) tell ASGI 3 from ASGI 2 by ``__call__``: unchanged, also
    for a user's subclass."""
    import uvicorn

    class Mine(ModelRouter):
        pass

    for router in (make_router(), Mine(ok_app, {"a": 0, "b": 1})):
        assert asyncio.iscoroutinefunction(router.__call__)
        assert inspect.iscoroutinefunction(router.__call__)
        config = uvicorn.Config(router, lifespan="off")
        config.load()
        assert config.interface == "asgi3"


def test_a_call_returns_the_apps_awaitable_or_a_flight_that_asyncio_takes() -> None:
    """A counted request is a Flight (a registered Coroutine: asyncio.run and create_task
    take it); a request outside the routed paths is the app's own coroutine."""
    from modelrouter.asgi import middleware_c  # type: ignore[attr-defined]

    router = make_router()
    flight = router(scope(), receive, _sink([]))
    assert type(flight) is middleware_c.Flight and asyncio.iscoroutine(flight)
    asyncio.run(flight)
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        asyncio.run(flight)

    async def task() -> None:
        await asyncio.create_task(router(scope(b"u2"), receive, _sink([])))
    asyncio.run(task())
    other = make_router(paths=["/only"])
    coro = other(scope(), receive, _sink([]))
    assert inspect.iscoroutine(coro) and coro.cr_code is ok_app.__code__
    asyncio.run(coro)


def _sink(sent: list[Any]) -> Any:
    async def send(message: Any) -> None:
        sent.append(message)
    return send


def test_a_patched_or_overridden_call_is_the_one_that_runs() -> None:
    """The call slot follows CPython's own slot updates: assigning ``__call__`` on the class
    (a test's patch) makes the patch run; deleting it again falls back to the inherited
    coroutine (correct, through the coroutine) until ``install_call`` points the slot at the
    compiled entry again; a subclass's own ``__call__`` runs."""
    from modelrouter.asgi import middleware_c  # type: ignore[attr-defined]

    seen: list[str] = []

    async def patched(self: Any, scope: Any, receive: Any, send: Any) -> None:
        seen.append("patched")

    router = make_router()
    assert "__call__" not in ModelRouter.__dict__
    ModelRouter.__call__ = patched  # type: ignore[method-assign]
    try:
        asyncio.run(router(scope(), receive, _sink([])))
        assert seen == ["patched"]
    finally:
        del ModelRouter.__call__  # type: ignore[method-assign]
    sent: list[Any] = []
    awaitable = router(scope(), receive, _sink(sent))
    assert inspect.iscoroutine(awaitable) or asyncio.iscoroutine(awaitable)
    asyncio.run(awaitable)  # the inherited coroutine function: the same request path
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert middleware_c.install_call(ModelRouter) is True  # (other tests need the slot back)
    flight = router(scope(), receive, _sink(sent))
    assert type(flight) is middleware_c.Flight
    asyncio.run(flight)

    class Wrapping(ModelRouter):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append("subclass")
            await super().__call__(scope, receive, send)

    assert middleware_c.install_call(Wrapping) is False  # its own __call__ keeps the slot
    wrapped = Wrapping(ok_app, {"a": 0, "b": 1})
    sent.clear()
    asyncio.run(wrapped(scope(), receive, _sink(sent)))
    assert seen[-1] == "subclass" and len(sent) == 2


def test_a_call_in_another_form_goes_through_the_coroutine() -> None:
    """Keywords or a wrong number of arguments: the coroutine function's own answer."""
    router = make_router()
    asyncio.run(router(scope=scope(), receive=receive, send=_sink([])))
    with pytest.raises(TypeError):
        router(scope(), receive)  # type: ignore[call-arg,unused-coroutine]


def _suspending_app(event: list[asyncio.Event]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        event.append(asyncio.Event())
        await event[-1].wait()  # suspended here until set or cancelled
        await send({"type": "http.response.body", "body": b"ok"})
    return app


@pytest.mark.parametrize("how", ["cancel", "close", "throw", "drop"])
def test_a_suspended_request_ends_as_in_the_python_method(how: str) -> None:
    """Cancelled (no error recorded), closed, thrown into or dropped while suspended after
    the response started (a server error recorded, once): compiled and Python the same."""
    routers = []
    for via in (compiled_call, python_call):
        events: list[asyncio.Event] = []
        router = make_router(_suspending_app(events))
        outcome: list[str] = []

        async def go(router: ModelRouter = router, via: Any = via,
                     events: list[asyncio.Event] = events,
                     outcome: list[str] = outcome) -> None:
            if how == "cancel":
                task = asyncio.create_task(via(router, scope(), receive, _sink([])))
                while not events:
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    outcome.append("cancelled")
                return
            awaitable = via(router, scope(), receive, _sink([]))
            driver = awaitable.__await__()  # the generator protocol, by hand
            next(driver)  # runs to the Event's wait
            if how == "close":
                driver.close()
                outcome.append("closed")
            elif how == "throw":
                try:
                    driver.throw(ValueError("thrown"))
                except ValueError as exc:
                    outcome.append(str(exc))
            else:
                del driver, awaitable
                gc.collect()
                outcome.append("dropped")

        asyncio.run(go())
        routers.append((router, outcome))
    (fast, a), (slow, b) = routers
    assert a == b and a
    assert columns(fast) == columns(slow)
    # a cancelled request records nothing; any other end before the body: one server error
    assert auto_totals(fast) == ((0.0, 0.0) if how == "cancel" else (1.0, 1.0))


def test_an_app_returning_odd_awaitables_is_awaited_as_python_would() -> None:
    """An app returning a Future-like object, a @types.coroutine generator, or something
    that is not awaitable (TypeError, recorded as a server error), or raising before it
    returns anything: the same answers and columns in both twins."""

    class Awaitable:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __await__(self) -> Any:
            return self.inner.__await__()

    class BadAwait:
        def __await__(self) -> Any:
            return 42

    @types.coroutine
    def legacy(scope: Any, receive: Any, send: Any) -> Any:
        yield from ok_app(scope, receive, send).__await__()

    def raises(scope: Any, receive: Any, send: Any) -> Any:
        raise LookupError("before any await")

    apps = {"future-like": lambda s, r, w: Awaitable(ok_app(s, r, w)),
            "types.coroutine": legacy,
            "not-awaitable": lambda s, r, w: None,
            "bad-__await__": lambda s, r, w: BadAwait(),
            "raises-at-call": raises}
    for name, app in apps.items():
        results = []
        for via in (compiled_call, python_call):
            router = make_router(app)
            sent: list[Any] = []

            async def go(router: ModelRouter = router, via: Any = via,
                         sent: list[Any] = sent) -> str:
                try:
                    await via(router, scope(), receive, _sink(sent))
                except BaseException as exc:  # noqa: BLE001 - compared
                    return f"{type(exc).__name__}: {exc}"
                return "ok"

            results.append((asyncio.run(go()), len(sent), columns(router)))
        assert results[0] == results[1], name


def test_a_router_inside_a_router_counts_in_both() -> None:
    """A Flight awaited by another Flight (nested routers): each records the request once,
    and an app raising inside both records one server error in each."""
    inner = make_router()
    outer = make_router(inner)
    sent: list[Any] = []
    asyncio.run(outer(scope(), receive, _sink(sent)))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert auto_totals(inner) == auto_totals(outer) == (1.0, 0.0)

    async def boom(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        raise OSError("model crashed")

    inner = make_router(boom)
    outer = make_router(inner)
    with pytest.raises(OSError, match="model crashed"):
        asyncio.run(outer(scope(), receive, _sink([])))
    assert auto_totals(inner) == auto_totals(outer) == (1.0, 1.0)


def test_the_feedback_hook_subscribed_at_any_time_is_called_once_per_request() -> None:
    """The compiled send reads the experiment's ``tick`` from the experiment's C copy: a hook
    subscribed after the router was built, a second one chained to it, and one removed by
    setting ``tick`` to None are each seen from the next request on (as by the Python
    method, which reads the attribute)."""
    for via in (compiled_call, python_call):
        router = make_router()
        calls: list[str] = []

        async def one(router: ModelRouter = router, via: Any = via) -> None:
            await via(router, scope(), receive, _sink([]))

        asyncio.run(one())
        router.experiment.subscribe(lambda calls=calls: calls.append("a"))
        asyncio.run(one())
        router.experiment.subscribe(lambda calls=calls: calls.append("b"))
        asyncio.run(one())
        router.experiment.tick = None
        asyncio.run(one())
        assert calls == ["a", "a", "b"], via


def test_the_send_a_flight_gives_the_app_takes_any_call_form() -> None:
    """The app's ``send(message)`` reaches the Flight through its vectorcall (no argument
    tuple); a keyword call and a wrong argument count go through ``__call__`` and its own
    answers, a Flight made by hand refuses to record, and Flight takes no subclass (its
    vectorcall slot sits at a fixed offset)."""
    from modelrouter.asgi import middleware_c  # type: ignore[attr-defined]

    sent: list[Any] = []
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(send)
        await send(message={"type": "http.response.start", "status": 503, "headers": []})
        for args in ((), ({"type": "x"}, {"type": "y"})):
            with pytest.raises(TypeError):
                send(*args)
        with pytest.raises(TypeError):
            send({"type": "x"}, extra=1)
        await send({"type": "http.response.body", "body": b"ok"})

    router = make_router(app)
    asyncio.run(router(scope(), receive, _sink(sent)))
    assert type(seen[0]) is middleware_c.Flight and [m["type"] for m in sent] == [
        "http.response.start", "http.response.body"]
    assert auto_totals(router) == (1.0, 1.0)  # recorded once, as a server error (503)
    with pytest.raises(TypeError, match="made by the middleware's call only"):
        middleware_c.Flight.__new__(middleware_c.Flight)({"type": "http.response.start"})
    with pytest.raises(TypeError):
        type("Sub", (middleware_c.Flight,), {})
