"""A FastAPI service with two scikit-learn models behind modelrouter (A/B test per user).

``baseline`` is a logistic regression, ``candidate`` a decision tree (depth 8), both trained at
start-up on the same synthetic rows (example_data.py; about 83% and 89% accuracy on the users).
``POST /predict`` with ``{"features": [8 floats]}`` and an ``x-user-id`` header answers the
routed model's prediction; the response carries ``x-modelrouter-token``, which the client posts
back with the outcome to ``/_modelrouter/feedback``. Only ``/predict`` is in the experiment
(``paths``), so ``/health`` and FastAPI's ``/docs`` are not counted.

Secrets come from the environment: ``MODELROUTER_SECRET`` (signs the tokens) and
``MODELROUTER_ADMIN_TOKEN`` (``/stats``, ``/export``, the dashboard, ``modelrouter status``);
both at least 16 characters. ``SNAPSHOT_PATH`` (optional) restores the statistics at start-up
and saves them at shutdown.

Run: ``uvicorn app:app --app-dir examples/fastapi_service --port 8000`` (see README.md).
"""

from __future__ import annotations

import os
from typing import Any

from example_data import N_TRAIN, problem
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelrouter import ModelRouter, RouterConfig


def train() -> dict[str, Any]:
    """The two variants: fitted scikit-learn classifiers."""
    x, y = problem()
    xt, yt = x[:N_TRAIN], y[:N_TRAIN]
    return {"baseline": LogisticRegression().fit(xt, yt),
            "candidate": DecisionTreeClassifier(max_depth=8, random_state=0).fit(xt, yt)}


class Features(BaseModel):
    features: list[float]


api = FastAPI(title="modelrouter example")


@api.post("/predict")
def predict(body: Features, request: Request) -> dict[str, Any]:
    """The routed model's class and probability for one row."""
    decision = request.state.modelrouter
    proba = decision.model.predict_proba([body.features])[0]
    return {"variant": decision.variant, "prediction": int(proba.argmax()),
            "probability": float(proba.max())}


@api.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


config = RouterConfig(
    experiment="fastapi-example",
    metrics={"click": "binary"},
    primary="click",
    paths=["/predict"],
    unit_header="x-user-id",
    snapshot_path=os.environ.get("SNAPSHOT_PATH") or None,
)
if config.secret is None or config.admin_token is None:
    raise RuntimeError("set MODELROUTER_SECRET and MODELROUTER_ADMIN_TOKEN (16+ characters "
                       "each) before starting the example")
app = ModelRouter(api, train(), config)
