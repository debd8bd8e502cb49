"""Shadow evaluation end to end: a real Starlette app behind ModelRouter with a sync and an
async shadow, driven in process (``modelrouter.testing.ASGIClient``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig
from modelrouter.exceptions import AnalysisError, ConfigError, UnknownDecisionError
from modelrouter.stats.paired_comparison import ShadowPair, compare_shadow
from modelrouter.testing import ASGIClient


class Threshold:
    """A scikit-learn-like classifier: ``predict(rows)`` -> array of labels."""

    def __init__(self, cut: float) -> None:
        self.cut = cut

    def predict(self, rows: list[list[float]]) -> np.ndarray:
        return np.array([int(r[0] > self.cut) for r in rows])


class SlowThreshold(Threshold):
    def __init__(self, cut: float, sleep: float = 0.0) -> None:
        super().__init__(cut)
        self.sleep = sleep

    def predict(self, rows: list[list[float]]) -> np.ndarray:
        time.sleep(self.sleep)
        return super().predict(rows)


class AsyncThreshold(Threshold):
    def __init__(self, cut: float, sleep: float = 0.0) -> None:
        super().__init__(cut)
        self.sleep = sleep

    async def predict(self, rows: list[list[float]]) -> np.ndarray:  # type: ignore[override]
        await asyncio.sleep(self.sleep)
        return super().predict(rows)


class Raising:
    def predict(self, rows: list[list[float]]) -> np.ndarray:
        raise RuntimeError("the shadow is broken")


async def predict(request: Request) -> JSONResponse:
    x = float(request.query_params["x"])
    decision = request.state.modelrouter
    y = decision.predict([[x]])
    return JSONResponse({"prediction": int(y[0]), "variant": decision.variant,
                         "decision_id": decision.decision_id})


APP = Starlette(routes=[Route("/predict", predict)])
VARIANTS = {"control": Threshold(0.5), "treatment": Threshold(0.6)}


def make_router(shadows: dict[str, Any] | None, **cfg: Any) -> ModelRouter:
    config = RouterConfig(salt="shadow-test", paths=["/predict"], **cfg)
    return ModelRouter(APP, VARIANTS, config, shadows=shadows)


async def drain(router: ModelRouter, timeout: float = 30.0) -> None:
    """Wait until every queued shadow call ended (a generous deadline: spent only on a
    loaded machine, where the shadow threads wake late)."""
    assert router.shadows is not None
    end = time.monotonic() + timeout
    while router.shadows.pending and time.monotonic() < end:
        await asyncio.sleep(0.005)
    assert router.shadows.pending == 0, f"{router.shadows.pending} shadow calls after {timeout}s"


def test_sync_and_async_shadows_labels_and_independent_pairs() -> None:
    """Every number of ``a.shadow(name)`` but latency equals ``compare_shadow`` on pairs the
    test builds from its own inputs and models; latency is measured, so only its presence
    is checked. Labels come after the shadows ended for most requests."""
    router = make_router({"sync_c": SlowThreshold(0.55), "async_c": AsyncThreshold(0.4)})
    client = ASGIClient(router)
    rng = np.random.default_rng(5)
    xs = [float(x) for x in rng.random(240)]
    truth = {i: int(x + rng.normal(0, 0.1) > 0.5) for i, x in enumerate(xs)}

    async def go() -> list[tuple[str, float, int]]:
        seen = []
        for i, x in enumerate(xs):
            r = await client.get(f"/predict?x={x!r}", headers={"x-user-id": f"u{i % 80}"})
            assert r.status == 200
            body = r.json()
            seen.append((body["decision_id"], float(x), body["prediction"]))
            if i % 10 == 0:  # some labels before the shadows end
                assert router.record_label(body["decision_id"], truth[i])
        await drain(router)
        return seen

    seen = asyncio.run(go())
    for i, (did, _, _) in enumerate(seen):
        if i % 10:
            assert router.record_label(did, truth[i])
    a = router.analysis()
    for name, model in (("sync_c", Threshold(0.55)), ("async_c", Threshold(0.4))):
        pairs = [ShadowPair(served, int(model.predict([[x]])[0]), 1.0, 1.0, truth[i])
                 for i, (_, x, served) in enumerate(seen)]
        ref = compare_shadow(pairs, shadow=name, kind="label")
        got = a.shadow(name)
        assert (got.n_pairs, got.errors, got.agreement, got.accuracy) == (
            ref.n_pairs, ref.errors, ref.agreement, ref.accuracy)
        assert len(got.latency) == 2 and all(r.ratio > 0 for r in got.latency)
    with pytest.raises(AnalysisError, match=r"\['async_c', 'sync_c'\]"):
        a.shadow("candidate")
    assert not router.record_label("ffffffff-1", 1)  # unknown: counted, not an error
    with pytest.raises(UnknownDecisionError):
        router.record_label("not a decision", 1)
    assert a.shadow_data is not None and a.shadow_data.labels == {"attached": 240}
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_response_does_not_wait_for_slow_shadows() -> None:
    """Shadows sleeping 200 ms (one thread, one task): every response in < 50 ms."""
    router = make_router({"slow_sync": SlowThreshold(0.5, 0.2),
                          "slow_async": AsyncThreshold(0.5, 0.2)})
    client = ASGIClient(router)

    async def go() -> list[float]:
        times = []
        for i in range(5):
            t0 = time.perf_counter()
            r = await client.get("/predict?x=0.7", headers={"x-user-id": f"u{i}"})
            times.append(time.perf_counter() - t0)
            assert r.status == 200
        await drain(router)
        return times

    times = asyncio.run(go())
    assert max(times) < 0.05, times
    snap = router.analysis().shadow_data
    assert snap is not None
    assert {n: s.completed for n, s in snap.stats.items()} == {"slow_sync": 5, "slow_async": 5}
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_raising_shadow_never_changes_the_response() -> None:
    plain = make_router(None)
    shadowed = make_router({"broken": Raising()})

    async def go(router: ModelRouter) -> list[tuple[int, int, str]]:
        client = ASGIClient(router)
        out = []
        for i in range(60):
            r = await client.get(f"/predict?x={i / 60}", headers={"x-user-id": f"u{i}"})
            out.append((r.status, r.json()["prediction"], r.json()["variant"]))
        if router.shadows is not None:
            await drain(router)
        return out

    assert asyncio.run(go(plain)) == asyncio.run(go(shadowed))
    stats = shadowed.analysis().shadow_data.stats["broken"]  # type: ignore[union-attr]
    assert stats.errors == {"exception": 60}
    errors = shadowed.analysis().shadow("broken").errors
    assert errors is not None and errors.p_shadow == 1.0 and errors.p_served == 0.0
    shadowed.shadows.shutdown()  # type: ignore[union-attr]


def test_full_queue_drops_and_async_timeout_through_the_middleware() -> None:
    router = make_router({"slow": AsyncThreshold(0.5, 0.3)}, shadow_queue=2,
                         shadow_timeout=0.05)

    async def go() -> None:
        client = ASGIClient(router)
        for i in range(6):
            await client.get("/predict?x=0.2", headers={"x-user-id": f"u{i}"})
        await drain(router)

    asyncio.run(go())
    stats = router.analysis().shadow_data.stats["slow"]  # type: ignore[union-attr]
    assert stats.dropped == {"queue_full": 4}
    assert stats.errors == {"timeout": 2}
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_share_selects_users_consistently_through_the_middleware() -> None:
    router = make_router({"c": Threshold(0.5)}, shadow_share=0.5)
    client = ASGIClient(router)
    calls: dict[str, int] = {}

    async def go() -> None:
        for rep in range(2):
            for i in range(40):
                before = router.analysis().shadow_data.stats["c"].submitted  # type: ignore[union-attr]
                await client.get(f"/predict?x={rep}", headers={"x-user-id": f"u{i}"})
                after = router.analysis().shadow_data.stats["c"].submitted  # type: ignore[union-attr]
                calls[f"u{i}"] = calls.get(f"u{i}", 0) + after - before
        await drain(router)

    asyncio.run(go())
    assert set(calls.values()) <= {0, 2}  # a user is shadowed on every request or never
    assert 0 < sum(calls.values()) < 80
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_labels_by_token_and_contract_errors() -> None:
    router = make_router({"c": Threshold(0.5)}, secret="s" * 32)
    r = ASGIClient(router).run("GET", "/predict?x=0.9", headers={"x-user-id": "u1"})
    token = r.header("x-modelrouter-token")
    assert token is not None
    deadline = time.monotonic() + 30
    while router.shadows.pending and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.002)
    assert router.shadows.pending == 0  # type: ignore[union-attr]
    assert router.record_label(token, 1)
    acc = router.analysis().shadow("c").accuracy
    assert acc is not None and acc.n == 1 and acc.p_served == 1.0
    with pytest.raises(ConfigError, match="record_label needs shadows"):
        make_router(None).record_label("00000000-1", 1)
    with pytest.raises(ConfigError, match="also a variant"):
        make_router({"control": Threshold(0.1)})
    with pytest.raises(AnalysisError, match="has no shadows"):
        make_router(None).analysis().shadow("c")
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_lifespan_shutdown_stops_the_shadows() -> None:
    """At shutdown the router refuses new shadow work (counted as shut_down) before flushing
    and saving, so a stuck shadow never delays the final snapshot; responses still work."""
    router = make_router({"fast": SlowThreshold(0.5)})

    async def go() -> None:
        await router.lifecycle.start()
        client = ASGIClient(router)
        r = await client.get("/predict?x=0.7", headers={"x-user-id": "u1"})
        assert r.status == 200
        await drain(router)
        await router.lifecycle.stop()
        r = await client.get("/predict?x=0.7", headers={"x-user-id": "u2"})
        assert r.status == 200 and r.json()["prediction"] == 1

    asyncio.run(go())
    stats = router.analysis().shadow_data.stats["fast"]  # type: ignore[union-attr]
    assert stats.dropped == {"shut_down": 1}


def test_a_forked_worker_runs_its_shadows() -> None:
    """gunicorn --preload builds the router, then forks: the child's shadow work must run on
    a pool of its own (the parent's threads do not exist in the child)."""
    import multiprocessing

    router = make_router({"fast": Threshold(0.5)}, shadow_workers=1)
    # the parent has used its pool before the fork (its one thread is idle in the parent)
    asyncio.run(ASGIClient(router).get("/predict?x=0.7", headers={"x-user-id": "p"}))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()

    def child() -> None:
        async def go() -> None:
            for i in range(5):
                await ASGIClient(router).get("/predict?x=0.7", headers={"x-user-id": f"c{i}"})
            await drain(router)

        asyncio.run(go())
        stats = router.analysis().shadow_data.stats["fast"]  # type: ignore[union-attr]
        out.put(stats.counts()["completed"])

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(30)
    assert out.get(timeout=5) >= 5  # the parent's one and the child's five (shared history)
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_shadows_in_to_dict_and_stats_validate_against_the_schema() -> None:
    """The analysis as data holds each shadow: its counts and the paired comparison
    (ShadowComparison.to_dict(), whose parts without data say why); valid JSON Schema."""
    import json

    import jsonschema

    from modelrouter.analysis.schema import analysis_schema

    validator = jsonschema.Draft202012Validator(analysis_schema())
    router = make_router({"fast": Threshold(0.55), "idle": Threshold(0.5)}, shadow_share=1.0)
    empty = router.analysis().to_dict()
    assert empty["shadows"]["fast"]["n_pairs"] == 0  # parts without data say so in it
    validator.validate(empty)

    async def go() -> None:
        client = ASGIClient(router)
        for i in range(40):
            await client.get(f"/predict?x={i / 40:.3f}", headers={"x-user-id": f"u{i}"})
        await drain(router)

    asyncio.run(go())
    a = router.analysis()
    doc = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    validator.validate(doc)
    fast = doc["shadows"]["fast"]
    assert fast["status"] == "ok" and fast["counts"]["completed"] == 40
    expected = json.loads(json.dumps(a.shadow("fast").to_dict(), allow_nan=False))
    assert {k: fast[k] for k in expected} == expected
    router.shadows.shutdown()  # type: ignore[union-attr]
    assert "shadows" not in make_router(None).analysis().to_dict()
