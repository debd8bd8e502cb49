"""ASGI apps for benchmarks/bench_shadow_server.py: one endpoint, with and without shadows.

``/predict`` calls ``request.state.modelrouter.predict(1.0)`` on a trivial served model and
answers the result (a thin endpoint: the shadows' cost on the request path is most visible).
Factories (``uvicorn --factory shadow_server_apps:<name>``): ``noshadow`` (ModelRouter, A/B,
user level, no shadow), ``sleepy`` (a sync shadow sleeping 50 ms per call), ``raising`` (a
shadow raising on every call), ``async_sleepy`` (an async shadow sleeping 50 ms) and
``asgi_app`` (a whole Starlette app sleeping 50 ms, the request replayed to it after the
response, ``extract_prediction`` reading both bodies). Every shadow sees every request
(``shadow_share=1``, the default), within the queue bound of 1,000 (the rest is dropped and
counted).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


async def predict(request: Request) -> PlainTextResponse:
    return PlainTextResponse(json.dumps({"y": request.state.modelrouter.predict(1.0)}))


def _served(x: float) -> float:
    return x


def _other(x: float) -> float:
    return -x


def _sleepy(x: float) -> float:
    time.sleep(0.05)
    return x


def _raising(x: float) -> float:
    raise RuntimeError("broken shadow")


async def _async_sleepy(x: float) -> float:
    await asyncio.sleep(0.05)
    return x


async def _shadow_endpoint(request: Request) -> PlainTextResponse:
    await asyncio.sleep(0.05)
    return PlainTextResponse(json.dumps({"y": 1.0}))


def _extract(body: bytes) -> Any:
    return json.loads(body)["y"]


def _router(shadows: dict[str, Any] | None, extract: Any = None) -> ModelRouter:
    app = Starlette(routes=[Route("/predict", predict)])
    extra = {} if extract is None else {"extract_prediction": extract}  # older code: none
    return ModelRouter(app, {"a": _served, "b": _other}, RouterConfig(shadow_kind="score"),
                       shadows=shadows, **extra)


def noshadow() -> Any:
    """The router without shadows."""
    return _router(None)


def sleepy() -> Any:
    """A synchronous shadow sleeping 50 ms per call."""
    return _router({"s": _sleepy})


def raising() -> Any:
    """A shadow raising on every call."""
    return _router({"s": _raising})


def async_sleepy() -> Any:
    """A coroutine shadow sleeping 50 ms per call."""
    return _router({"s": _async_sleepy})


def asgi_app() -> Any:
    """A whole ASGI app as the shadow, sleeping 50 ms per request."""
    shadow = Starlette(routes=[Route("/predict", _shadow_endpoint)])
    return _router({"s": shadow}, _extract)


APPS = {"noshadow": noshadow, "sleepy": sleepy, "raising": raising,
        "async_sleepy": async_sleepy, "asgi_app": asgi_app}
