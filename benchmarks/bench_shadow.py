"""Served latency with shadows, against no shadow, same run (issue 15, "must hold").

    python benchmarks/bench_shadow.py [--rounds 9] [--calls 2000]

Direct ASGI calls on a Starlette endpoint whose handler calls ``decision.predict(x)`` on a
trivial served model. Routers: no shadow; a shadow sleeping 50 ms per call (two worker
threads: with requests this fast the queue of 1,000 fills and the rest of the shadow work is
dropped and counted, as designed); a shadow raising on every call; an async shadow sleeping
50 ms; a whole ASGI app as the shadow, sleeping 50 ms (the request replayed after the
response, ``extract_prediction`` reading both bodies).

Per router and round: wall-clock microseconds per served request (what the caller waits for,
shadow threads included) and the CPU microseconds of the serving thread per request
(``time.thread_time``: on a shared machine it does not count the time other processes hold
the core). Routers are interleaved in every round (order rotating), so machine noise hits all
of them alike; the table gives medians (min..max over rounds) and the median over rounds of
the ratio to no shadow *of the same round*. Each round's shadow work is left to end before
the next round starts (outside the timing); the shadow counts of the last round are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from _harness import fmt, scope, table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


async def predict(request: Request) -> PlainTextResponse:
    y = request.state.modelrouter.predict(1.0)
    return PlainTextResponse(json.dumps({"y": y}))


def sleepy(x: float) -> float:
    time.sleep(0.05)
    return x


def raising(x: float) -> float:
    raise RuntimeError("broken shadow")


async def async_sleepy(x: float) -> float:
    await asyncio.sleep(0.05)
    return x


async def shadow_endpoint(request: Request) -> JSONResponse:
    await asyncio.sleep(0.05)
    return JSONResponse({"y": 1.0})


def extract(body: bytes) -> Any:
    return json.loads(body)["y"]


def router(shadows: dict[str, Any] | None) -> ModelRouter:
    app = Starlette(routes=[Route("/predict", predict)])
    asgi = shadows is not None and isinstance(shadows.get("s"), Starlette)
    extra = {"extract_prediction": extract} if asgi else {}  # older code has no such argument
    return ModelRouter(app, {"a": lambda x: x, "b": lambda x: -x},
                       RouterConfig(shadow_kind="score"), shadows=shadows, **extra)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


def measure(app: Any, n: int) -> tuple[float, float]:
    """(wall us, serving-thread CPU us) per request over ``n`` requests."""
    scopes = [scope(user=f"user-{i}") for i in range(n)]

    async def go() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        for s in scopes:
            await app(dict(s), receive, send)
        wall = (time.perf_counter() - start) / n * 1e6
        cpu_us = (time.thread_time() - cpu) / n * 1e6
        if app.shadows is not None:  # let the round's shadow work end (outside the timing)
            while app.shadows.pending:
                await asyncio.sleep(0.01)
        return wall, cpu_us

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    shadow_app = Starlette(routes=[Route("/predict", shadow_endpoint)])
    routers = {"no shadow": router(None), "sync shadow sleeping 50 ms": router({"s": sleepy}),
               "shadow raising every call": router({"s": raising}),
               "async shadow sleeping 50 ms": router({"s": async_sleepy}),
               "ASGI-app shadow sleeping 50 ms": router({"s": shadow_app})}
    names = list(routers)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for k in range(args.rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            w, c = measure(routers[name], args.calls)
            wall[name].append(w)
            cpu[name].append(c)

    def ratio(values: dict[str, list[float]], name: str) -> str:
        return f"{statistics.median(a / b for a, b in zip(values[name], values['no shadow'])):.3f}"

    rows = [[name, fmt(wall[name]), ratio(wall, name), fmt(cpu[name]), ratio(cpu, name)]
            for name in names]
    print(table(["router", "wall us / request", "wall ratio", "serving-thread CPU us",
                 "CPU ratio"], rows))
    for name, r in routers.items():
        if r.shadows is not None:
            print(f"{name}: {r.shadows.log.snapshot().stats['s'].counts()}")
            r.shadows.shutdown()


if __name__ == "__main__":
    main()
