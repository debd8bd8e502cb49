"""ASGI apps for benchmarks/bench_server.py: the same trivial endpoint, bare and routed."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


async def predict(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app() -> Starlette:
    return Starlette(routes=[Route("/predict", predict)])


bare = _app()
ab = ModelRouter(_app(), {"control": 0, "treatment": 1},
                 RouterConfig(metrics={"click": "binary"}))
try:
    bandit: Any = ModelRouter(_app(), {"control": 0, "treatment": 1},
                              RouterConfig(mode="bandit", reward="click",  # type: ignore[call-arg]
                                           metrics={"click": "binary"}))
except TypeError:  # bandit mode not available in this build
    bandit = None
