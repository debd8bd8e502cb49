"""The always-valid paired tests through the router: a real Starlette app behind ModelRouter,
labels recorded after the responses, ``a.shadow(name)`` and ``a.to_dict()`` (schema-valid).

References are computed here from the test's own logged pairs: the discordant split's mixture
likelihood ratio with scipy's beta-binomial and binomial pmfs; the loss test's mean
difference with numpy. Matrix cells: store memory (shadow statistics with Redis do not exist
yet), mode ab, 2 variants, level user, fresh, valid input.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import jsonschema
import numpy as np
import pytest
from scipy import stats
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig
from modelrouter.analysis.schema import analysis_schema
from modelrouter.stats.paired_sequential import DISCORDANT_PRIOR
from modelrouter.testing import ASGIClient


async def predict(request: Request) -> JSONResponse:
    x = float(request.query_params["x"])
    decision = request.state.modelrouter
    y = decision.predict(x)
    return JSONResponse({"y": y, "decision_id": decision.decision_id})


APP = Starlette(routes=[Route("/predict", predict)])


def run(router: ModelRouter, xs: list[float]) -> list[tuple[str, float]]:
    async def go() -> list[tuple[str, float]]:
        client = ASGIClient(router)
        out = []
        for i, x in enumerate(xs):
            r = await client.get(f"/predict?x={x!r}", headers={"x-user-id": f"u{i}"})
            out.append((r.json()["decision_id"], x))
        assert router.shadows is not None
        end = time.monotonic() + 10
        while router.shadows.pending and time.monotonic() < end:
            await asyncio.sleep(0.005)
        return out

    return asyncio.run(go())


def test_accuracy_always_valid_through_the_router_equals_the_beta_binomial_reference() -> None:
    rng = np.random.default_rng(4)
    n = 600
    xs = rng.random(n).tolist()
    truth = {x: int(x > 0.5) for x in xs}
    # served: right 80% of the time; shadow: right 88% (deterministic per input)
    flip_s = {x: bool(f) for x, f in zip(xs, rng.random(n) < 0.2, strict=True)}
    flip_h = {x: bool(f) for x, f in zip(xs, rng.random(n) < 0.12, strict=True)}

    def served(x: float) -> int:
        return truth[x] ^ flip_s[x]

    def shadow(x: float) -> int:
        return truth[x] ^ flip_h[x]

    router = ModelRouter(APP, {"a": served, "b": served},
                         RouterConfig(salt="av", paths=["/predict"]),
                         shadows={"cand": shadow})
    b = c = 0
    best = 0.0
    for decision_id, x in run(router, xs):
        assert router.record_label(decision_id, truth[x])
        s_ok, h_ok = served(x) == truth[x], shadow(x) == truth[x]
        if s_ok != h_ok:
            b, c = b + s_ok, c + h_ok
            m = b + c
            best = max(best, float(stats.betabinom.logpmf(c, m, DISCORDANT_PRIOR,
                                                          DISCORDANT_PRIOR)
                                   - stats.binom.logpmf(c, m, 0.5)))
    a = router.analysis()
    r = a.shadow("cand").accuracy_always_valid
    assert r is not None and (r.served_only, r.shadow_only) == (b, c)
    assert r.pvalue == pytest.approx(min(1.0, math.exp(-best)), rel=1e-9)
    doc = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    jsonschema.Draft202012Validator(analysis_schema()).validate(doc)
    got = doc["shadows"]["cand"]["accuracy_always_valid"]
    assert got["pvalue"] == pytest.approx(r.pvalue) and got["shadow_only"] == c
    assert doc["shadows"]["cand"]["loss_always_valid"] is None
    assert "accuracy_always_valid=DiscordantSequential(" in repr(a.shadow("cand"))
    text = a.shadow("cand").summary()
    assert f"the shadow is the one right in {c:,} of {b + c:,} discordant pair(s)" in text
    assert f"p = {r.pvalue:.3g}." in text and "Not yet loss" not in text
    router.shadows.shutdown()  # type: ignore[union-attr]


def test_loss_always_valid_through_the_router_and_the_schema() -> None:
    rng = np.random.default_rng(8)
    n = 400
    xs = rng.normal(size=n).tolist()
    noise_s = dict(zip(xs, rng.normal(0, 1.0, n).tolist(), strict=True))
    noise_h = dict(zip(xs, rng.normal(0, 0.7, n).tolist(), strict=True))

    def served(x: float) -> float:
        return x + noise_s[x]

    def shadow(x: float) -> float:
        return x + noise_h[x]

    router = ModelRouter(APP, {"a": served, "b": served},
                         RouterConfig(salt="av", paths=["/predict"], shadow_kind="score"),
                         shadows={"cand": shadow})
    validator = jsonschema.Draft202012Validator(analysis_schema())
    empty: Any = router.analysis().to_dict()
    validator.validate(empty)
    d = []
    for decision_id, x in run(router, xs):
        assert router.record_label(decision_id, x)
        d.append((shadow(x) - x) ** 2 - (served(x) - x) ** 2)
    a = router.analysis()
    r = a.shadow("cand")
    assert r.loss_always_valid is not None and r.accuracy_always_valid is None
    assert r.loss_always_valid.difference == pytest.approx(float(np.mean(d)), rel=1e-9)
    assert "loss_always_valid" not in r.missing
    doc = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    validator.validate(doc)
    assert doc["shadows"]["cand"]["loss_always_valid"]["pvalue"] == pytest.approx(
        r.loss_always_valid.pvalue)
    assert f"loss difference {float(np.mean(d)):+.4g}" in r.summary()
    router.shadows.shutdown()  # type: ignore[union-attr]
