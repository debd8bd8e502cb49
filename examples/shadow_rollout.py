"""From shadow to ship: a new classifier is rolled out automatically, through the middleware.

A support-ticket router classifies tickets (two classes). The model in production is right
80% of the time; a new one, 86%. The new one is declared a *shadow*: it sees a copy of every
request's input and is never served, until the rollout plan promotes it:

1. ``shadow``: once 400 labelled pairs are in, it must not be worse than the served model by
   more than 2 points of accuracy (paired, on the same tickets);
2. ``canary`` at 20% of users: every guardrail (latency, errors) must pass on 500 of its users;
3. ``ab`` at 50%: the primary metric (``correct``, recorded per user) must be significantly
   better under the always-valid test;
4. ``ship``: it serves everyone.

Traffic goes through the real middleware (``modelrouter.testing.ASGIClient`` against a
Starlette app): the handler calls ``request.state.modelrouter.predict(x)``, which returns the
served model's answer and hands ``x`` to the shadow on the background executor. Ground truth
arrives as feedback (``record_unit``) and as labels of the shadowed decisions
(``record_label``). The latency the router measures runs on a simulated clock that the app
advances by the served model's service time (fast and deterministic; the shadow's own calls do
not move it, so its latency ratio reads near 0 here where production would show the real
one). The rollout monitor is woken every 250 feedback events in the background; the example
waits for it after each batch so its story is the same on every run.

Run: ``python examples/shadow_rollout.py [users]``
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

PLAN = {"candidate": [
    {"stage": "shadow", "min_units": 400, "advance_if": {"name": "no_worse", "margin": 0.02}},
    {"stage": "canary", "share": 0.2, "min_units": 500, "max_units": 5000,
     "advance_if": "guardrails_pass"},
    {"stage": "ab", "share": 0.5, "max_units": 10000, "advance_if": "primary_better"},
    {"stage": "ship"}]}


class SimClock:
    """A clock in seconds that only moves when the app says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TicketModel:
    """Answers the true class of a ticket with probability ``accuracy``; ``latency_ms``."""

    def __init__(self, accuracy: float, latency_ms: float, seed: int) -> None:
        self.accuracy = accuracy
        self.latency_ms = latency_ms
        self._rng = np.random.default_rng(seed)

    def predict(self, ticket: dict[str, int]) -> int:
        right = self._rng.random() < self.accuracy
        return ticket["truth"] if right else 1 - ticket["truth"]


def build(seed: int, admin_token: str | None = None) -> tuple[ModelRouter, SimClock]:
    rng = np.random.default_rng(seed)
    clock = SimClock()

    async def classify(request: Request) -> JSONResponse:
        decision = request.state.modelrouter
        ticket = await request.json()
        y = decision.predict(ticket)  # served now; the shadow gets the same ticket
        clock.now += decision.model.latency_ms * rng.lognormal(0.0, 0.25) / 1000.0
        return JSONResponse({"class": y, "decision": decision.decision_id})

    app = Starlette(routes=[Route("/classify", classify, methods=["POST"])])
    config = RouterConfig(experiment="tickets-v2", metrics={"correct": "binary"},
                          primary="correct", plan={"mde": 0.04, "baseline": 0.8},
                          guardrail_check_every=250, shadow_workers=1, rollout=PLAN,
                          admin_token=admin_token)  # a token: /stats and the dashboard
    router = ModelRouter(app, {"control": TicketModel(0.80, 50.0, seed + 1)}, config,
                         shadows={"candidate": TicketModel(0.86, 50.0, seed + 2)},
                         timer=clock, clock=clock)
    return router, clock


async def simulate(router: ModelRouter, users: int, seed: int, out: Any) -> None:
    rng = np.random.default_rng(seed + 3)
    client = ASGIClient(router)
    monitor, shadows = router.rollout, router.shadows
    assert monitor is not None and shadows is not None
    seen = len(router.experiment.stages.events)
    for i in range(users):
        user = f"user-{i}"
        truth = int(rng.integers(0, 2))
        r = await client.post("/classify", headers={"x-user-id": user},
                              json={"truth": truth, "text_length": int(rng.integers(5, 500))})
        body = r.json()
        router.record_unit(user, "correct", int(body["class"] == truth))
        router.record_label(body["decision"], truth)  # ground truth, for the shadow's pairs
        if i % 250 == 249:  # let the shadow calls and the background monitor catch up
            while shadows.pending:
                await asyncio.sleep(0.001)
            monitor.wait_idle(timeout=60)
            events = router.experiment.stages.events
            for e in events[seen:]:
                out.write(f"after {i + 1:,} users: {e.line()}\n")
            seen = len(events)
            stage = router.experiment.stages.current["candidate"]
            if stage.stage == "ship" or stage.stopped:
                break


def run(users: int = 20000, seed: int = 3, out: Any = sys.stdout,
        admin_token: str | None = None) -> ModelRouter:
    """The whole lifecycle; returns the router (its analysis, /stats, the dashboard)."""
    router, _clock = build(seed, admin_token)
    asyncio.run(simulate(router, users, seed, out))
    if router.shadows is not None:
        router.shadows.shutdown(wait=True)
    return router


def main(users: int = 20000, seed: int = 3, out: Any = sys.stdout) -> Analysis:
    analysis = run(users, seed, out).analysis()
    out.write(analysis.report() + "\n")
    return analysis


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
