"""A tiny app and two models, importable by name from a router.toml in the tests."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def model_a(x: float) -> float:
    return x


def model_b(x: float) -> float:
    return 2 * x


def predict(request: Request) -> JSONResponse:
    d = request.state.modelrouter
    return JSONResponse({"variant": d.variant, "y": d.model(3.0)})


app = Starlette(routes=[Route("/predict", predict)])
