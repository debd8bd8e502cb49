"""ASGI apps for benchmarks/bench_server.py and profile_server.py: the same endpoints, bare and
routed.

Two endpoints (issue 17):

- ``/ok``: a trivial ``PlainTextResponse("ok")`` (a thin endpoint: a feature lookup, a cached
  answer), where the router's own cost is most visible;
- ``/model``: scikit-learn ``LogisticRegression.predict`` on one 64-feature row (a small model;
  the variants are two fitted models, the routed app predicts with the decision's model).

Three apps serve both: ``bare`` (no router), ``ab`` (``ModelRouter``, A/B, user level) and
``bandit`` (``ModelRouter``, Thompson sampling on a binary reward, user level). Every app runs
the same endpoint code: the model is the decision's when there is one, else the control's.
They are factories (``uvicorn --factory``), so a server builds only the app it serves (a bandit
router's refresh thread never runs inside the bare server).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig

N_FEATURES = 64


def _fit(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2_000, N_FEATURES))
    y = (x @ rng.standard_normal(N_FEATURES) + rng.standard_normal(2_000) > 0).astype(int)
    return LogisticRegression(max_iter=1_000).fit(x, y)


MODELS = {"control": _fit(1), "treatment": _fit(2)}
ROW = np.random.default_rng(3).standard_normal((1, N_FEATURES))
_CONTROL = MODELS["control"]


async def ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def model(request: Any) -> PlainTextResponse:
    state = request.scope.get("state")
    decision = state.get("modelrouter") if state else None
    predictor = _CONTROL if decision is None else decision.model
    return PlainTextResponse(str(int(predictor.predict(ROW)[0])))


def _app() -> Starlette:
    return Starlette(routes=[Route("/ok", ok), Route("/model", model)])


def bare() -> Any:
    """The endpoints without a router (``uvicorn --factory server_apps:bare``)."""
    return _app()


def ab() -> Any:
    """The endpoints behind ``ModelRouter`` in A/B mode, user level."""
    return ModelRouter(_app(), MODELS, RouterConfig(metrics={"click": "binary"}))


def bandit() -> Any:
    """The endpoints behind ``ModelRouter`` in bandit mode (Thompson sampling), user level."""
    return ModelRouter(_app(), MODELS, RouterConfig(mode="bandit", reward="click",
                                                    metrics={"click": "binary"}))


class _PassThrough:
    """A pure ASGI middleware that only awaits the app; with ``spin``, it first spends a fixed
    amount of Python work (a loop of ``spin`` additions: 200 take ~3.6 us in a hot in-process
    loop on the issue-17 machine). Calibration: what a known in-process cost adds to the server
    CPU per request (bench_server.py ``--apps bare,pass,spin``)."""

    def __init__(self, app: Any, spin: int = 0) -> None:
        self.app, self.spin = app, spin

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        x = 0
        for i in range(self.spin):
            x += i
        await self.app(scope, receive, send)


def passthrough() -> Any:
    """The endpoints behind a pass-through pure ASGI middleware (calibration)."""
    return _PassThrough(_app())


def spin() -> Any:
    """The endpoints behind a pass-through middleware spending ~3.6 us of Python work
    (in-process) per request (calibration)."""
    return _PassThrough(_app(), spin=200)


def floor_module() -> Any:
    """benchmarks/floor_c.pyx, compiled on first use (pyximport, cached in ~/.pyxbld):
    minimal middlewares, the contract's per-request work in a plain form (its floor)."""
    import pyximport

    pyximport.install(language_level=3, inplace=False)
    import floor_c

    return floor_c


def floor_pass() -> Any:
    """The floor's first stage: a C call that returns the app's coroutine (floor_c.pyx)."""
    return floor_module().Pass(_app())


def floor_lookup() -> Any:
    """+ the unit id from the header and its row in a dict (floor_c.pyx)."""
    return floor_module().Lookup(_app())


def floor_state() -> Any:
    """+ the variant, a decision and the request's state (floor_c.pyx)."""
    return floor_module().State(_app(), MODELS)


def floor_send() -> Any:
    """+ the send wrapper recording latency and error (floor_c.pyx)."""
    return floor_module().Metrics(_app(), MODELS)


def floor_fast() -> Any:
    """``floor_send`` in the router's cheaper forms: vectorcall, C compares (floor_c.pyx)."""
    return floor_module().FastMetrics(_app(), MODELS)


if os.environ.get("MODELROUTER_BENCH_GC"):  # gc_server.py: each factory's app counted
    from gc_server import counted

    def _counting(factory: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: counted(factory())

    bare, ab, bandit = _counting(bare), _counting(ab), _counting(bandit)
    passthrough, spin = _counting(passthrough), _counting(spin)


APPS = {"bare": bare, "ab": ab, "bandit": bandit, "passthrough": passthrough, "spin": spin,
        "floor_pass": floor_pass, "floor_lookup": floor_lookup, "floor_state": floor_state,
        "floor_send": floor_send, "floor_fast": floor_fast}
