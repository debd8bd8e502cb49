"""A bandit service for the multi-worker integration test: ``uvicorn tests.apps.bandit_app:app``.

Bandit mode on Redis (``MODELROUTER_TEST_REDIS``), unit level, binary reward ``click``. The
router signs every routed response (``x-modelrouter-token``) and takes the feedback at
``/_modelrouter/feedback``; the admin API (``/_modelrouter/config``) pauses arms. ``/stats``
returns this worker's pid, its allocation and the IPW comparison computed from Redis.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelrouter import AnalysisError, ModelRouter, RouterConfig

SECRET = "integration-test-secret-0123456789"
ADMIN = "integration-test-admin-token-0123"


async def predict(request: Request) -> JSONResponse:
    decision = request.state.modelrouter
    return JSONResponse({"variant": decision.variant})


async def stats(request: Request) -> Response:
    analysis = router.analysis()
    alloc = router.experiment.allocation
    try:
        compare = analysis.compare("click", variant="good").to_dict()
    except AnalysisError as exc:  # before any data
        compare = {"error": str(exc)}
    # when this worker installed or adopted the epoch in force (its own clock)
    since = [e.started_at for e in router.experiment.store.epochs() if e.epoch == alloc.epoch]
    body = {"pid": os.getpid(), "epoch": alloc.epoch, "weights": dict(alloc.weights),
            "epoch_since": since[-1] if since else None,
            "compare": compare,
            "decisions": sum(n for n, _m in analysis.snapshot.decisions.values()),
            "counters": {k: v.tolist() for k, v in router.experiment.store.peek_training().items()},
            "worker": router.experiment.store.stats()}
    return Response(json.dumps(body, sort_keys=True, default=str),
                    media_type="application/json")


inner = Starlette(routes=[Route("/predict", predict), Route("/stats", stats)])
config = RouterConfig(experiment="bandit-it", metrics={"click": "binary"}, reward="click",
                      mode="bandit", store=os.environ.get("MODELROUTER_TEST_REDIS",
                                                          "redis://127.0.0.1:6379/0"),
                      paths=["/predict"], flush_seconds=0.05, refresh_every=50,
                      refresh_seconds=None, secret=SECRET, admin_token=ADMIN)
router = ModelRouter(inner, {"bad": 0, "good": 1, "other": 2}, config)
app = router
