"""Shadows that are whole ASGI apps, through the real middleware (asgi/shadow_replay.py).

The served responses are compared with a router without shadows; the pairs with the test's
own bookkeeping of what each app answered. Matrix cells: store memory, mode ab, 2 variants,
level user (hash of the user) and request, fresh, input valid and hostile (bodies over the
cap, streamed bodies, unreadable responses, failing and slow shadow apps, a full queue).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig
from modelrouter.asgi.middleware import ASGIVariant
from modelrouter.exceptions import ConfigError
from modelrouter.testing import ASGIClient
from tests.asgi.test_shadow import drain


def threshold_app(cut: float, *, sleep: float = 0.0, fail: bool = False,
                  status: int = 200) -> Starlette:
    """An app answering ``{"label": int(x > cut)}`` to a JSON body ``{"x": ...}``."""

    async def predict(request: Request) -> Response:
        payload = await request.json()
        if sleep:
            await asyncio.sleep(sleep)
        if fail:
            raise RuntimeError("the shadow app is broken")
        return JSONResponse({"label": int(payload["x"] > cut), "n": len(await request.body())},
                            status_code=status)

    return Starlette(routes=[Route("/predict", predict, methods=["POST", "GET"])])


async def served(request: Request) -> JSONResponse:
    payload = await request.json()
    d = request.state.modelrouter
    return JSONResponse({"label": int(d.predict(payload["x"])), "variant": d.variant,
                         "decision_id": d.decision_id})


SERVED_APP = Starlette(routes=[Route("/predict", served, methods=["POST"])])
VARIANTS = {"control": lambda x: x > 0.5, "treatment": lambda x: x > 0.6}


def label(body: bytes) -> int:
    return int(json.loads(body)["label"])


def make(shadows: dict[str, Any] | None, extract: Any = label, app: Any = SERVED_APP,
         **cfg: Any) -> ModelRouter:
    config = RouterConfig(salt="replay", paths=["/predict"], **cfg)
    return ModelRouter(app, VARIANTS, config, shadows=shadows,
                       extract_prediction=extract if shadows else None)


def stats(router: ModelRouter, name: str = "cand") -> Any:
    assert router.shadows is not None
    return router.shadows.log.snapshot().stats[name]


def test_replayed_pairs_labels_and_unchanged_responses() -> None:
    router = make({"cand": threshold_app(0.55), "slow": ASGIVariant(threshold_app(0.4,
                                                                                  sleep=0.2))})
    bare = make(None)
    xs = [i / 100 for i in range(100)]

    async def go() -> list[Any]:
        c, b = ASGIClient(router), ASGIClient(bare)
        out = []
        t0 = time.perf_counter()
        for i, x in enumerate(xs):
            h = {"x-user-id": f"u{i}"}
            r, ref = await c.post("/predict", json={"x": x}, headers=h), \
                await b.post("/predict", json={"x": x}, headers=h)
            assert r.status == ref.status == 200
            got, want = r.json(), ref.json()
            assert {k: got[k] for k in ("label", "variant")} == \
                {k: want[k] for k in ("label", "variant")}
            out.append(got)
        # 100 responses while 100 shadow replays sleep 200 ms each: never waited for
        assert time.perf_counter() - t0 < 5.0
        await drain(router)
        return out

    answers = asyncio.run(go())
    cut = {"control": 0.5, "treatment": 0.6}
    agree = sum(int(x > cut[a["variant"]]) == int(x > 0.55) for x, a in zip(xs, answers))
    s = stats(router)
    assert (s.submitted, s.completed, s.answered, s.agreeing) == (100, 100, 100, agree)
    assert stats(router, "slow").completed == 100 and len(s.latency_sample) == 100
    # labels attach to the replayed pairs: accuracy table from the test's own answers
    right = [(a["label"] == int(x > 0.5), int(x > 0.55) == int(x > 0.5))
             for x, a in zip(xs, answers)]
    for x, a in zip(xs, answers):
        assert router.record_label(a["decision_id"], int(x > 0.5))
    acc = router.analysis().shadow("cand").accuracy
    assert acc is not None
    assert (acc.both, acc.served_only, acc.shadow_only, acc.neither) == (
        sum(s and h for s, h in right), sum(s and not h for s, h in right),
        sum(h and not s for s, h in right), sum(not (s or h) for s, h in right))
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_streamed_request_body_is_replayed_whole() -> None:
    router = make({"cand": threshold_app(0.55)})
    body = json.dumps({"x": 0.9, "pad": "p" * 3000}).encode()
    chunks = [body[:1000], body[1000:2500], body[2500:]]
    headers = [(b"x-user-id", b"u1"), (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
             "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("t", 80)}
    sent: list[Any] = []

    async def go() -> None:
        parts = iter(chunks)

        async def receive() -> dict[str, Any]:
            chunk = next(parts, None)
            if chunk is None:
                await asyncio.sleep(3600)
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": chunk, "more_body": chunk is not chunks[-1]}

        async def send(message: Any) -> None:
            sent.append(message)

        await router(scope, receive, send)
        await drain(router)

    seen: list[bytes] = []
    router.replay.extract = lambda b: seen.append(b) or label(b)  # type: ignore[union-attr]
    asyncio.run(go())
    assert json.loads(sent[-1]["body"])["label"] == 1 and sent[0]["status"] == 200
    assert json.loads(seen[1])["n"] == len(body)  # the shadow read the whole body
    s = stats(router)
    assert (s.completed, s.agreeing) == (1, 1)
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_caps_failures_timeouts_and_drops_are_counted_never_raised() -> None:
    apps = {"raising": threshold_app(0.5, fail=True), "five": threshold_app(0.5, status=503),
            "slow": threshold_app(0.5, sleep=0.5), "weird": threshold_app(0.5)}
    router = make(apps, shadow_timeout=0.1)
    assert router.replay is not None
    router.replay.max_body = 200

    def extract(body: bytes) -> int:
        if b'"n":0' in body.replace(b" ", b""):
            raise ValueError("not a prediction")
        return label(body)

    router.replay.extract = extract

    async def go() -> None:
        c = ASGIClient(router)
        r = await c.post("/predict", json={"x": 0.7}, headers={"x-user-id": "a"})
        assert r.status == 200 and r.json()["label"] == 1
        big = await c.post("/predict", json={"x": 0.7, "pad": "p" * 500},
                           headers={"x-user-id": "b"})
        assert big.status == 200  # the served request is untouched
        await drain(router)

    asyncio.run(go())
    for name, err in (("raising", "exception"), ("five", "http_5xx"), ("slow", "timeout")):
        s = stats(router, name)
        assert s.errors == {err: 1} and s.dropped == {"body_too_large": 1}, name
    assert stats(router, "weird").errors == {} and stats(router, "weird").completed == 1
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_full_queue_unread_body_served_errors_and_unreadable_served() -> None:
    async def ignores_body(request: Request) -> PlainTextResponse:
        return PlainTextResponse('{"label": 1}')

    async def broken(request: Request) -> PlainTextResponse:
        raise RuntimeError("served app failed")

    async def five(request: Request) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=500)

    async def junk(request: Request) -> PlainTextResponse:
        return PlainTextResponse("not json")

    app = Starlette(routes=[Route("/predict", ignores_body, methods=["POST", "GET"]),
                            Route("/predict/broken", broken), Route("/predict/five", five),
                            Route("/predict/junk", junk)])
    router = make({"cand": threshold_app(0.5, sleep=0.3)}, app=app, shadow_queue=1)

    async def go() -> None:
        c = ASGIClient(router)
        # a body the served app never read: nothing to replay
        await c.post("/predict", json={"x": 1.0}, headers={"x-user-id": "a"})
        # a GET without a body: replayed with the empty body (the shadow fails to parse)
        await c.get("/predict", headers={"x-user-id": "b"})
        await c.get("/predict", headers={"x-user-id": "c"})  # the one slot is taken
        await drain(router)
        with pytest.raises(RuntimeError, match="served app failed"):
            await c.get("/predict/broken", headers={"x-user-id": "d"})
        await drain(router)
        assert (await c.get("/predict/five", headers={"x-user-id": "e"})).status == 500
        await drain(router)
        await c.get("/predict/junk", headers={"x-user-id": "f"})
        await drain(router)

    asyncio.run(go())
    s = stats(router)
    assert s.dropped == {"body_unread": 1, "queue_full": 1, "served_unreadable": 1}
    assert s.submitted == 6 and s.completed == 3
    # the GET replayed with an empty body: the shadow app raised parsing it; the broken and
    # the 500 served calls are served errors, their shadows ran (and answered 404, which
    # extract_prediction cannot read)
    assert s.error_table.served_only + s.error_table.both == 2
    assert s.errors == {"exception": 1, "unreadable": 2}
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="mix ASGI apps"):
        make({"app": threshold_app(0.5), "fn": lambda x: x})
    with pytest.raises(ConfigError, match="pass extract_prediction"):
        ModelRouter(SERVED_APP, VARIANTS, shadows={"app": threshold_app(0.5)})
    with pytest.raises(ConfigError, match="only used for shadows that are ASGI apps"):
        ModelRouter(SERVED_APP, VARIANTS, shadows={"fn": lambda x: x},
                    extract_prediction=label)
    with pytest.raises(ConfigError, match="needs shadows"):
        ModelRouter(SERVED_APP, VARIANTS, extract_prediction=label)


def test_request_level_and_share_select_by_hash() -> None:
    router = make({"cand": threshold_app(0.5)}, level="request", shadow_share=0.3)

    async def go() -> None:
        c = ASGIClient(router)
        for _ in range(300):
            await c.post("/predict", json={"x": 0.2})
        await drain(router)

    asyncio.run(go())
    s = stats(router)
    assert 50 <= s.submitted <= 130 and s.completed == s.submitted
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_served_variants_that_are_asgi_apps_are_paired_too() -> None:
    """Variants dispatched to their own ASGI apps (ASGIVariant) and a shadow app: the pair
    is what each variant's app answered vs what the shadow answered."""
    config = RouterConfig(salt="replay", paths=["/predict"])
    router = ModelRouter(SERVED_APP, {"control": ASGIVariant(threshold_app(0.5)),
                                      "treatment": threshold_app(0.6)}, config,
                         shadows={"cand": threshold_app(0.55)}, extract_prediction=label)
    xs = [i / 50 for i in range(50)]
    got: list[tuple[int, float]] = []

    async def go() -> None:
        c = ASGIClient(router)
        for i, x in enumerate(xs):
            r = await c.post("/predict", json={"x": x}, headers={"x-user-id": f"v{i}"})
            assert r.status == 200
            got.append((r.json()["label"], x))
        await drain(router)

    asyncio.run(go())
    s = stats(router)
    assert s.completed == 50
    assert s.agreeing == sum(y == int(x > 0.55) for y, x in got)
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_a_client_gone_mid_request_replays_nothing_and_is_counted() -> None:
    async def slow(request: Request) -> JSONResponse:
        await request.body()
        await asyncio.sleep(10)
        return JSONResponse({"label": 1})

    app = Starlette(routes=[Route("/predict", slow, methods=["POST"])])
    router = make({"cand": threshold_app(0.5)}, app=app)

    async def go() -> None:
        task = asyncio.ensure_future(ASGIClient(router).post(
            "/predict", json={"x": 0.3}, headers={"x-user-id": "gone"}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await drain(router)

    asyncio.run(go())
    s = stats(router)
    assert (s.submitted, s.completed, s.dropped) == (1, 0, {"cancelled": 1})
    router.shadows.shutdown()  # type: ignore[union-attr]
