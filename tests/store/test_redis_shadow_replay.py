"""ASGI-app shadows with the Redis store: two workers (in-process routers on one Redis) replay
their shadowed requests to a shadow app; every worker's analysis shows the union, and labels
posted to the other worker reach the decision's worker.

Reference: the accuracy table and McNemar's exact p (statsmodels) from the test's own record
of what the served and the shadow app answered. Matrix cells: store redis, 2 workers, mode ab
and bandit, 2 and 3 variants, level user, fresh, valid input; kind score with hostile
extracted values (NaN, 1e300, text) counted, never raised.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from statsmodels.stats.contingency_tables import mcnemar

from modelrouter import ModelRouter, RouterConfig
from modelrouter.testing import ASGIClient
from tests.store.conftest import RedisServer
from tests.store.test_redis_shadows import _settle as settle


async def served(request: Request) -> JSONResponse:
    payload = await request.json()
    d = request.state.modelrouter
    return JSONResponse({"label": int(d.predict(payload["x"])), "decision_id": d.decision_id})


async def shadow_endpoint(request: Request) -> JSONResponse:
    payload = await request.json()
    return JSONResponse({"label": int(payload["x"] > 0.55)})


APP = Starlette(routes=[Route("/predict", served, methods=["POST"])])
SHADOW = Starlette(routes=[Route("/predict", shadow_endpoint, methods=["POST"])])
CUTS = {"control": 0.5, "treatment": 0.6, "third": 0.45}


def label(body: bytes) -> Any:
    return json.loads(body)["label"]


def worker(url: str, variants: list[str], **cfg: Any) -> ModelRouter:
    config = RouterConfig(experiment="replayed", salt="s", store=url, flush_seconds=0.05,
                          **cfg)
    models = {v: (lambda x, c=CUTS[v]: x > c) for v in variants}
    return ModelRouter(APP, models, config, shadows={"cand": SHADOW},
                       extract_prediction=label)




@pytest.mark.parametrize(("variants", "mode"), [(["control", "treatment"], "ab"),
                                                (["control", "treatment", "third"], "bandit")])
def test_two_workers_replay_and_labels_from_anywhere(redis_server: RedisServer,
                                                     variants: list[str], mode: str) -> None:
    extra: dict[str, Any] = ({"mode": "bandit", "reward": "click",
                              "metrics": {"click": "binary"}} if mode == "bandit" else {})
    a, b = worker(redis_server.url, variants, **extra), worker(redis_server.url, variants,
                                                                **extra)
    xs = [((i * 37) % 101) / 100 for i in range(240)]
    answers: list[tuple[str, int, float]] = []

    async def go() -> None:
        ca, cb = ASGIClient(a), ASGIClient(b)
        for i, x in enumerate(xs):
            r = await (ca if i % 2 else cb).post("/predict", json={"x": x},
                                                 headers={"x-user-id": f"u{i}"})
            assert r.status == 200
            answers.append((r.json()["decision_id"], r.json()["label"], x))
        for r_ in (a, b):
            while r_.shadows.pending:  # type: ignore[union-attr]
                await asyncio.sleep(0.005)

    try:
        asyncio.run(go())
        for i, (did, _, x) in enumerate(answers):  # each label posted to the OTHER worker
            assert (b if i % 2 else a).record_label(did, int(x > 0.52)) is True
        settle([a, b])
        right = [(y == int(x > 0.52), int(x > 0.55) == int(x > 0.52)) for _, y, x in answers]
        table = [[sum(s and h for s, h in right), sum(s and not h for s, h in right)],
                 [sum(h and not s for s, h in right), sum(not (s or h) for s, h in right)]]
        for r in (a, b):
            res = r.analysis().shadow("cand")
            assert res.n_pairs == 240 and res.accuracy is not None
            acc = res.accuracy
            assert [[acc.both, acc.served_only], [acc.shadow_only, acc.neither]] == table
            assert acc.pvalue == pytest.approx(mcnemar(table, exact=True).pvalue)
            assert res.accuracy_always_valid is not None
    finally:
        for r in (a, b):
            asyncio.run(r.lifecycle.stop())


def test_score_shadow_app_with_hostile_extracted_values_counts_them(
        redis_server: RedisServer) -> None:
    values = iter([float("nan"), 1e300, "text", 2.0] * 10)

    def extract(body: bytes) -> Any:
        return next(values) if b"label" in body and b"decision_id" not in body else \
            float(json.loads(body)["label"])

    config = RouterConfig(experiment="hostile", salt="s", store=redis_server.url,
                          flush_seconds=0.05, shadow_kind="score")
    r = ModelRouter(APP, {"control": lambda x: x > 0.5, "treatment": lambda x: x > 0.6},
                    config, shadows={"cand": SHADOW}, extract_prediction=extract)

    async def go() -> None:
        c = ASGIClient(r)
        for i in range(40):
            assert (await c.post("/predict", json={"x": 0.7},
                                 headers={"x-user-id": f"h{i}"})).status == 200
        while r.shadows.pending:  # type: ignore[union-attr]
            await asyncio.sleep(0.005)

    try:
        asyncio.run(go())
        settle([r])
        s = r.analysis().shadow_data.stats["cand"]  # type: ignore[union-attr]
        assert s.completed == 20 and s.unpaired == {"non-numeric output": 20}
        assert s.scores.n == 20 and s.scores.mean_shadow == pytest.approx((1e300 + 2.0) / 2)
        doc = r.analysis().to_dict()  # extreme values: parts say why, nothing raises
        assert doc["shadows"]["cand"]["counts"]["unpaired"] == {"non-numeric output": 20}
    finally:
        asyncio.run(r.lifecycle.stop())
