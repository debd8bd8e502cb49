"""Segment scenario: better on desktop and tablet, worse and slower on mobile.

A recommendation model B lifts clicks on desktop (+5 points on 10%) and tablet (+5 points)
but lowers them on mobile (-4 points), where it is also 20% slower. Overall, B looks like a
win. The segment analysis flags mobile (a significant move against the overall result, with a
heterogeneity test saying the effect differs across platforms), and the latency guardrail,
declared per platform, fails on mobile: the verdict is ``blocked_by_guardrail``.

Requests go through the real middleware (``ASGIClient`` against a Starlette app); the
platform comes from the ``x-platform`` header and is fixed at each user's first request.
Latency is the router's automatic ``latency_ms``, measured on a simulated clock (``timer=``)
that the app advances by each model's service time (see examples/fraud.py).

Run: ``python examples/segments.py [users]``
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

PLATFORMS = ("desktop", "tablet", "mobile")
CLICK_RATE = {("control", p): 0.10 for p in PLATFORMS} | {
    ("treatment", "desktop"): 0.15, ("treatment", "tablet"): 0.15,
    ("treatment", "mobile"): 0.06}
LATENCY_MS = {("control", p): 40.0 for p in PLATFORMS} | {
    ("treatment", "desktop"): 40.0, ("treatment", "tablet"): 40.0,
    ("treatment", "mobile"): 48.0}


class SimClock:
    """A clock in seconds that only moves when the app says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def build(seed: int) -> ModelRouter:
    rng = np.random.default_rng(seed)
    clock = SimClock()

    async def recommend(request: Request) -> JSONResponse:
        variant = request.state.modelrouter.variant
        platform = request.headers.get("x-platform", "unknown")
        clock.now += LATENCY_MS[variant, platform] * rng.lognormal(0.0, 0.3) / 1000.0
        return JSONResponse({"variant": variant})

    app = Starlette(routes=[Route("/recommend", recommend)])
    config = RouterConfig(
        experiment="recs-b", metrics={"click": "binary"}, primary="click",
        segments={"platform": "x-platform"}, min_segment_units=200,
        guardrails={"latency_ms": {"max_increase": 0.10, "relative": True,
                                   "segments": ["platform"]}})
    return ModelRouter(app, {"control": "model A", "treatment": "model B"}, config,
                       timer=clock)


async def simulate(router: ModelRouter, users: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    client = ASGIClient(router)
    for i in range(users):
        user, platform = f"user-{i}", PLATFORMS[int(rng.integers(3))]
        r = await client.get("/recommend", headers={"x-user-id": user,
                                                    "x-platform": platform})
        clicked = rng.random() < CLICK_RATE[r.json()["variant"], platform]
        router.record_unit(user, "click", int(clicked))


def main(users: int = 9000, seed: int = 11, out: Any = sys.stdout) -> Analysis:
    router = build(seed)
    asyncio.run(simulate(router, users, seed))
    analysis = router.analysis()
    out.write(analysis.report() + "\n")
    return analysis


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9000)
