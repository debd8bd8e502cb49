"""Shadows under ``uvicorn --workers 3`` with Redis: ``uvicorn tests.apps.shadow_app:app``.

``/predict?x=`` serves a threshold model and shadows two candidates (one answers, one raises
on every call); ``/label?id=&y=`` records the ground truth of a decision (any worker may get
it); ``/shadow`` is this worker's view of the merged shadow statistics.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


class Threshold:
    def __init__(self, cut: float) -> None:
        self.cut = cut

    def predict(self, rows: list[list[float]]) -> list[int]:
        return [int(r[0] > self.cut) for r in rows]


class Broken:
    def predict(self, rows: list[list[float]]) -> list[int]:
        raise RuntimeError("broken candidate")


async def predict(request: Request) -> JSONResponse:
    decision = request.state.modelrouter
    y = decision.predict([[float(request.query_params["x"])]])
    return JSONResponse({"id": decision.decision_id, "prediction": y[0], "pid": os.getpid()})


async def label(request: Request) -> JSONResponse:
    q = request.query_params
    return JSONResponse({"ok": router.record_label(q["id"], int(q["y"])),
                         "pid": os.getpid()})


async def shadow(request: Request) -> JSONResponse:
    a = router.analysis()
    data = a.shadow_data
    assert data is not None
    return JSONResponse({"pid": os.getpid(), "labels": data.labels,
                         "cand": data.stats["cand"].counts() | {
                             "accuracy": data.stats["cand"].accuracy.to_dict(),
                             "pairs": a.shadow("cand").n_pairs},
                         "broken": data.stats["broken"].counts()})


inner = Starlette(routes=[Route("/predict", predict), Route("/label", label, methods=["POST"]),
                          Route("/shadow", shadow), Route("/stats", shadow)])
config = RouterConfig(experiment="shadows3", salt="s3",
                      store=os.environ.get("MODELROUTER_TEST_REDIS", "redis://127.0.0.1:6379/0"),
                      paths=["/predict"], flush_seconds=0.05)
router = ModelRouter(inner, {"control": Threshold(0.5), "treatment": Threshold(0.6)}, config,
                     shadows={"cand": Threshold(0.55), "broken": Broken()})
app = router
