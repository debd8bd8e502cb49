"""The ASGI middleware end to end: routing, scope, pass-through, unit ids, automatic metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ASGIVariant, ModelRouter, RouterConfig
from modelrouter.testing import ASGIClient
from tests.conftest import RouterFactory, make_app


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_same_user_same_variant_and_model_in_scope(router_factory: RouterFactory) -> None:
    router = router_factory()
    client = ASGIClient(router)

    async def go() -> None:
        seen: dict[str, set[str]] = {}
        for i in range(300):
            for _ in range(2):
                r = await client.get("/predict", headers={"x-user-id": f"u{i}"})
                body = r.json()
                assert body["prediction"] == (3 if body["variant"] == "control" else 6)
                seen.setdefault(f"u{i}", set()).add(body["variant"])
        assert all(len(v) == 1 for v in seen.values())
        both = {next(iter(v)) for v in seen.values()}
        assert both == {"control", "treatment"}
    run(go())
    snap = router.experiment.store.snapshot()
    assert snap.n_units == 300
    assert snap.requests.sum() == 600
    assert snap.units is not None and snap.units.exposures.sum() == 600


def test_health_lifespan_websocket_pass_through(router_factory: RouterFactory) -> None:
    router = router_factory()
    r = ASGIClient(router).run("GET", "/health")
    assert r.status == 200 and r.text == "ok"
    assert router.experiment.store.snapshot().requests.sum() == 0

    calls: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        assert "state" not in scope or "modelrouter" not in scope["state"]

    mw = ModelRouter(inner, {"a": 1, "b": 2})
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    outbox: list[str] = []

    async def lifespan_receive() -> Any:
        return inbox.pop(0)

    async def lifespan_send(message: Any) -> None:
        outbox.append(message["type"])

    run(mw({"type": "lifespan"}, lifespan_receive, lifespan_send))
    # the app ignored lifespan (returned without answering): the router answers the server
    assert outbox == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    run(mw({"type": "websocket", "path": "/ws", "headers": []}, None, None))
    assert calls == ["lifespan", "websocket"]


def test_paths_filter_only_routes_listed_prefixes(router_factory: RouterFactory) -> None:
    router = router_factory(paths=["/predict"])
    client = ASGIClient(router)
    assert client.run("GET", "/fail", headers={"x-user-id": "a"}).status == 503
    assert router.experiment.store.snapshot().requests.sum() == 0
    assert client.run("GET", "/predict", headers={"x-user-id": "a"}).status == 200
    assert router.experiment.store.snapshot().requests.sum() == 1


def test_asgi_variant_dispatch() -> None:
    async def a_app(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("from-a")(scope, receive, send)

    b_app = Starlette(routes=[Route("/predict", lambda r: PlainTextResponse("from-b"))])
    router = ModelRouter(make_app(), {"a": ASGIVariant(a_app), "b": b_app},
                         RouterConfig(salt="dispatch"))
    client = ASGIClient(router)
    texts = {client.run("GET", "/predict", headers={"x-user-id": f"u{i}"}).text
             for i in range(50)}
    assert texts == {"from-a", "from-b"}


@pytest.mark.parametrize(("headers", "message"), [
    ([(b"x-user-id", b"\xff\xfe")], "not valid UTF-8"),
    ([(b"x-user-id", b"a" * 300)], "limit is 256"),
    ([(b"x-user-id", b"abc\x01def")], "contains a control character U+0001 at index 3"),
])
def test_malformed_unit_ids_get_400(router_factory: RouterFactory, headers: Any,
                                    message: str) -> None:
    router = router_factory()
    r = ASGIClient(router).run("GET", "/predict", headers=headers)
    assert r.status == 400
    assert message in r.json()["error"]
    assert router.experiment.store.snapshot().requests.sum() == 0


@pytest.mark.parametrize("source", ["header", "cookie", "query"])
@pytest.mark.parametrize("raw", [b"alice\x1f", b"\x1calice", "alice\u0085".encode()])
def test_control_characters_at_either_end_are_400_not_merged(router_factory: RouterFactory,
                                                             source: str, raw: bytes) -> None:
    """The attack: ``alice\\x1f`` was stripped to ``alice`` and counted as alice. Through the
    real middleware each source answers 400 naming the character, and alice has no request."""
    router = router_factory(unit_cookie="sid", unit_query="uid")
    client = ASGIClient(router)
    assert client.run("GET", "/predict", headers={"x-user-id": "alice"}).status == 200
    if source == "header":
        r = client.run("GET", "/predict", headers=[(b"x-user-id", raw)])
    elif source == "cookie":
        r = client.run("GET", "/predict", headers=[(b"cookie", b'sid="' + raw + b'"')])
    else:
        r = client.run("GET", "/predict?uid=" + "".join(f"%{c:02X}" for c in raw))
    assert r.status == 400
    assert "control character U+00" in r.json()["error"]
    snap = router.experiment.store.snapshot()
    assert snap.n_units == 1 and snap.units is not None
    assert int(snap.units.exposures.sum()) == 1 and int(snap.requests.sum()) == 1


def test_missing_unit_policies(router_factory: RouterFactory) -> None:
    r = router_factory(missing_unit="reject")
    resp = ASGIClient(r).run("GET", "/predict")
    assert resp.status == 400 and "x-user-id" in resp.json()["error"]

    r = router_factory(missing_unit="control")
    body = ASGIClient(r).run("GET", "/predict").json()
    assert body["variant"] == "control" and body["decision_id"] == ""
    snap = r.experiment.store.snapshot()
    assert snap.n_units == 0 and snap.uncounted_requests == 1

    r = router_factory(missing_unit="random")
    client = ASGIClient(r)
    variants = {client.run("GET", "/predict").json()["variant"] for _ in range(40)}
    assert variants == {"control", "treatment"}
    assert r.experiment.store.snapshot().n_units == 0


def test_cookie_query_and_callable_sources(router_factory: RouterFactory) -> None:
    r = router_factory(unit_header=None, unit_cookie="sid", level="session")
    client = ASGIClient(r)
    client.run("GET", "/predict", headers={"cookie": "theme=dark; sid=s-123"})
    client.run("GET", "/predict", headers={"cookie": "sid=s-123"})
    assert r.experiment.store.has_unit("s-123") and r.experiment.store.snapshot().n_units == 1

    r = router_factory(unit_header=None, unit_query="uid")
    ASGIClient(r).run("GET", "/predict?uid=q-9")
    assert r.experiment.store.has_unit("q-9")
    # only the unit id is bounded and decoded, not the rest of the query string
    long_query = "/predict?uid=%C3%A9-1&q=" + "x" * 5000 + "&junk=%FF"
    assert ASGIClient(r).run("GET", long_query).status == 200
    assert r.experiment.store.has_unit("\u00e9-1")
    bad = ASGIClient(r).run("GET", "/predict?uid=%FF%FE")
    assert bad.status == 400 and "not valid UTF-8" in bad.json()["error"]

    r = router_factory(unit_id=lambda scope: scope["client"][0])
    ASGIClient(r).run("GET", "/predict")
    assert r.experiment.store.has_unit("127.0.0.1")


def test_automatic_latency_and_errors(router_factory: RouterFactory) -> None:
    router = router_factory()
    client = ASGIClient(router)
    for i in range(20):
        client.run("GET", "/predict", headers={"x-user-id": f"u{i}"})
        client.run("GET", "/fail", headers={"x-user-id": f"u{i}"})
        with pytest.raises(RuntimeError, match="model exploded"):
            client.run("GET", "/crash", headers={"x-user-id": f"u{i}"})
    units = router.experiment.store.snapshot().units
    assert units is not None
    assert units.y["latency_ms"].sum() == 60 and units.y["error"].sum() == 60
    assert units.x["error"].sum() == 40  # the 503s and the exceptions
    assert (units.x["latency_ms"] > 0).all()


def test_request_level_keeps_no_per_unit_rows(router_factory: RouterFactory) -> None:
    router = router_factory(level="request", max_pending=100)
    client = ASGIClient(router)
    ids = [client.run("GET", "/predict").json()["decision_id"] for _ in range(500)]
    snap = router.experiment.store.snapshot()
    assert snap.units is None and snap.n_units == 500
    assert router.experiment.store.stats()["pending_slots"] == 100  # bounded pending ring
    router.record(ids[-1], "click", 1)
    with pytest.raises(KeyError, match="no longer pending"):
        router.record(ids[0], "click", 1)


def test_fastapi_quick_start() -> None:
    app = FastAPI()

    @app.post("/predict")
    def predict(request: FastAPIRequest) -> dict[str, Any]:  # sync: runs in the thread pool
        d = request.state.modelrouter
        return {"variant": d.variant, "y": d.model.predict([[1.0]])[0],
                "decision_id": d.decision_id}

    class Model:
        def __init__(self, k: float) -> None:
            self.k = k

        def predict(self, x: list[list[float]]) -> list[float]:
            return [self.k * row[0] for row in x]

    router = ModelRouter(app, {"control": Model(1.0), "treatment": Model(2.0)},
                         RouterConfig(salt="exp-2026-11", metrics={"click": "binary"}))
    client = ASGIClient(router)
    body = client.run("POST", "/predict", headers={"x-user-id": "user-42"}, json={}).json()
    assert body["y"] == (1.0 if body["variant"] == "control" else 2.0)
    router.record(body["decision_id"], "click", 1)
    units = router.experiment.store.snapshot().units
    assert units is not None and units.x["click"].sum() == 1
    # as in the README: with paths=["/predict"], FastAPI's own pages are not experiment traffic
    scoped = ModelRouter(app, {"control": Model(1.0), "treatment": Model(2.0)},
                         RouterConfig(metrics={"click": "binary"}, paths=["/predict"]))
    client = ASGIClient(scoped)
    assert client.run("GET", "/docs").status == 200
    assert client.run("GET", "/openapi.json").status == 200
    client.run("POST", "/predict", headers={"x-user-id": "user-42"}, json={})
    snap = scoped.experiment.store.snapshot()
    assert int(snap.requests.sum()) == 1 and snap.uncounted_requests == 0


def test_reload_switches_weights_and_mode_from_toml(tmp_path: Any) -> None:
    from modelrouter import ConfigError

    cfg = tmp_path / "router.toml"
    base = 'salt = "r"\nmetrics = { click = "binary" }\nreward = "click"\n'
    router = ModelRouter(make_app(), {"control": 0, "treatment": 1},
                         RouterConfig(salt="r", metrics={"click": "binary"}, reward="click"))
    cfg.write_text("[router]\n" + base + "weights = { control = 0.9, treatment = 0.1 }\n")
    router.reload(str(cfg))
    assert router.experiment.allocation.weights == {"control": 0.9, "treatment": 0.1}
    assert router.experiment.allocation.epoch == 1
    cfg.write_text("[router]\n" + base + 'mode = "bandit"\n')
    router.reload(str(cfg))
    assert router.experiment.mode == "bandit"
    cfg.write_text("[router]\n" + base.replace('"r"', '"other"'))
    with pytest.raises(ConfigError, match="salt differs from the running config"):
        router.reload(str(cfg))
    assert router.experiment.mode == "bandit"  # a refused reload changes nothing


def test_client_disconnect_is_not_a_server_error(router_factory: RouterFactory) -> None:
    router = router_factory()

    async def go() -> None:
        async def slow(scope: Any, receive: Any, send: Any) -> None:
            await asyncio.sleep(10)

        router._target_of = {name: slow for name in router._target_of}
        scope = {"type": "http", "path": "/predict", "headers": [(b"x-user-id", b"u1")],
                 "query_string": b"", "method": "GET"}
        task = asyncio.ensure_future(router(scope, None, None))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    units = router.experiment.store.snapshot().units
    assert units is not None and units.variant.size == 1  # the exposure counts
    assert units.y["error"].sum() == 0 and units.y["latency_ms"].sum() == 0
