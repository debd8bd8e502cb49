"""Fraud scenario: the new model catches more fraud but is slower. Should it ship?

A fraud-scoring service A/B tests a new model. It catches fraud in 15.5% of flagged sessions
against 12% (+3.5 percentage points: a real win) but answers in ~62 ms instead of ~50 ms
(+24%, beyond the default +10% latency guardrail). Traffic goes through the real middleware
(``modelrouter.testing.ASGIClient`` against a Starlette app). Latency is the router's own
automatic ``latency_ms`` metric: the router is given a simulated clock (``timer=``) that the
app advances by each model's service time, so the example is fast and deterministic while the
measurement path is the production one.

With ``rollback=True`` the guardrail monitor checks every 500 feedback events in a background
thread and, once the always-valid interval shows the latency margin is crossed, moves all
traffic to the control. The verdict is ``blocked_by_guardrail``.

Run: ``python examples/fraud.py [users]``
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.testing import ASGIClient


class SimClock:
    """A clock in seconds that only moves when the app says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FraudModel:
    """Catches fraud with probability ``catch_rate``; takes ``latency_ms`` (lognormal)."""

    def __init__(self, catch_rate: float, latency_ms: float) -> None:
        self.catch_rate = catch_rate
        self.latency_ms = latency_ms


def build(seed: int, rollback: bool = True) -> tuple[ModelRouter, SimClock]:
    rng = np.random.default_rng(seed)
    clock = SimClock()

    async def score(request: Request) -> JSONResponse:
        model: FraudModel = request.state.modelrouter.model
        clock.now += model.latency_ms * rng.lognormal(0.0, 0.25) / 1000.0  # service time
        return JSONResponse({"variant": request.state.modelrouter.variant})

    app = Starlette(routes=[Route("/score", score, methods=["POST"])])
    config = RouterConfig(experiment="fraud-v2", metrics={"fraud_caught": "binary"},
                          primary="fraud_caught",
                          plan={"mde": 0.035, "baseline": 0.12, "looks": 5},
                          rollback=rollback, guardrail_check_every=500)
    router = ModelRouter(app, {"control": FraudModel(0.12, 50.0),
                               "treatment": FraudModel(0.155, 62.0)}, config, timer=clock)
    return router, clock


async def simulate(router: ModelRouter, users: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    client = ASGIClient(router)
    models: dict[str, Any] = dict(zip(router.experiment.names, router.experiment.models))
    for i in range(users):
        user = f"account-{i}"
        r = await client.post("/score", headers={"x-user-id": user})
        caught = rng.random() < models[r.json()["variant"]].catch_rate
        router.record_unit(user, "fraud_caught", int(caught))


def main(users: int = 4000, seed: int = 7, out: Any = sys.stdout) -> Analysis:
    router, _clock = build(seed)
    asyncio.run(simulate(router, users, seed))
    router.experiment.guard.wait_idle(timeout=60)  # let a pending background check finish
    analysis = router.analysis()
    out.write(analysis.report() + "\n")
    return analysis


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
