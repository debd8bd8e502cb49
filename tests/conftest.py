"""Shared fixtures: a small Starlette app behind a router, and an in-process client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


def predict(request: Request) -> JSONResponse:
    decision = request.state.modelrouter
    return JSONResponse({"variant": decision.variant, "decision_id": decision.decision_id,
                         "prediction": decision.model(3)})


def fail(request: Request) -> PlainTextResponse:
    return PlainTextResponse("boom", status_code=503)


def crash(request: Request) -> PlainTextResponse:
    raise RuntimeError("model exploded")


def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def make_app() -> Starlette:
    return Starlette(routes=[Route("/predict", predict), Route("/fail", fail),
                             Route("/crash", crash), Route("/health", health)])


RouterFactory = Callable[..., ModelRouter]


@pytest.fixture
def router_factory() -> RouterFactory:
    def factory(**config: Any) -> ModelRouter:
        config.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
        config.setdefault("exclude_paths", ["/health"])
        return ModelRouter(make_app(), {"control": lambda x: x, "treatment": lambda x: 2 * x},
                           RouterConfig(**config))
    return factory
