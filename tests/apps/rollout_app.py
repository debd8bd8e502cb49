"""A service with a shadow candidate and a rollout plan, for ``uvicorn --workers 3`` and Redis:
``uvicorn tests.apps.rollout_app:app`` (the Redis URL from ``MODELROUTER_TEST_REDIS``).

``/classify?truth=0|1`` is routed: the served model answers (the shadow gets the same input in
the background while it is a shadow), the label and the feedback are recorded at once in the
worker that routed it (labels pair in the routing process; feedback is shared through Redis).
``/stats`` returns this worker's view: stages, events, allocation, epoch and the shadow pairs
of all workers (merged through Redis).
"""

from __future__ import annotations

import os
import random

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


class Model:
    """Right with probability ``accuracy``."""

    def __init__(self, accuracy: float) -> None:
        self.accuracy = accuracy
        self.rng = random.Random()

    def predict(self, truth: int) -> int:
        return truth if self.rng.random() < self.accuracy else 1 - truth


async def classify(request: Request) -> JSONResponse:
    decision = request.state.modelrouter
    truth = int(request.query_params["truth"])
    y = decision.predict(truth)
    router.record_label(decision.decision_id, truth)
    router.record_unit(decision.unit_id, "correct", int(y == truth))
    return JSONResponse({"variant": decision.variant, "class": y})


async def state(request: Request) -> JSONResponse:
    exp = router.experiment
    shadows = router.analysis().shadow_data  # every worker's, merged through Redis
    pairs = shadows.stats["candidate"].completed if shadows is not None else -1
    return JSONResponse({"pid": os.getpid(), "epoch": exp.allocation.epoch, "pairs": pairs,
                         "weights": exp.allocation.weights, **exp.stages.to_dict(),
                         "errors": repr(router.rollout.last_error if router.rollout else None)})


inner = Starlette(routes=[Route("/classify", classify), Route("/stats", state)])
config = RouterConfig(
    experiment="rollout-it", metrics={"correct": "binary"}, primary="correct",
    plan={"mde": 0.1}, store=os.environ.get("MODELROUTER_TEST_REDIS", "redis://127.0.0.1:6379/0"),
    paths=["/classify"], flush_seconds=0.05, guardrails={"latency_ms": None},
    guardrail_check_every=50, rollout={"candidate": [
        {"stage": "shadow", "min_units": 50,
         "advance_if": {"name": "agreement_at_least", "rate": 0.3}},
        {"stage": "canary", "share": 0.2, "min_units": 50, "advance_if": "guardrails_pass"},
        {"stage": "ab", "share": 0.5, "advance_if": "primary_better"},
        {"stage": "ship"}]})
router = ModelRouter(inner, {"control": Model(0.5)}, config,
                     shadows={"candidate": Model(0.8)})
app = router
