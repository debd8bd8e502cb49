"""A demo-like service for the multi-worker integration test: ``uvicorn tests.apps.redis_app:app``.

The Redis URL comes from ``MODELROUTER_TEST_REDIS``. ``/predict`` is routed by the experiment,
``/feedback`` records a unit's revenue (any worker may receive it), ``/stats`` returns this
worker's view of the merged analysis.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


async def predict(request: Request) -> JSONResponse:
    decision = request.state.modelrouter
    return JSONResponse({"variant": decision.variant, "prediction": decision.model(3)})


async def feedback(request: Request) -> JSONResponse:
    q = request.query_params
    router.record_unit(q["unit"], "revenue", float(q["value"]))
    return JSONResponse({"ok": True})


async def stats(request: Request) -> Response:
    analysis = router.analysis()
    body = {"pid": os.getpid(), "analysis": analysis.to_dict(["revenue"]),
            "losses": analysis.snapshot.losses, "worker": router.experiment.store.stats()}
    return Response(json.dumps(body, sort_keys=True, default=str),  # NaN-tolerant JSON
                    media_type="application/json")


inner = Starlette(routes=[Route("/predict", predict),
                          Route("/feedback", feedback, methods=["POST"]),
                          Route("/stats", stats)])
config = RouterConfig(experiment="it7", metrics={"revenue": "continuous"},
                      store=os.environ.get("MODELROUTER_TEST_REDIS", "redis://127.0.0.1:6379/0"),
                      paths=["/predict"], flush_seconds=0.05)
router = ModelRouter(inner, {"control": lambda x: x, "treatment": lambda x: 2 * x}, config)
app = router
