"""Served latency with shadows, against no shadow, same run (issue 15, "must hold").

    python benchmarks/bench_shadow.py [--rounds 7] [--calls 2000]

Direct ASGI calls on a Starlette endpoint whose handler calls ``decision.predict(x)`` on a
trivial served model. Routers: no shadow; a shadow sleeping 50 ms per call (a thread pool of
2: with requests this fast the queue of 1,000 fills and the rest of the shadow work is dropped
and counted, as designed); a shadow raising on every call; an async shadow sleeping 50 ms.
Prints wall-clock microseconds per served request (median and min..max over interleaved
rounds; wall time, because what matters is what the caller waits for, shadow threads
included), the ratio to no shadow, and the shadow counts of the last round.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from typing import Any

from _harness import fmt, interleaved, scope, table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig


async def predict(request: Request) -> PlainTextResponse:
    y = request.state.modelrouter.predict(1.0)
    return PlainTextResponse(str(y))


def sleepy(x: float) -> float:
    time.sleep(0.05)
    return x


def raising(x: float) -> float:
    raise RuntimeError("broken shadow")


async def async_sleepy(x: float) -> float:
    await asyncio.sleep(0.05)
    return x


def router(shadows: dict[str, Any] | None) -> ModelRouter:
    app = Starlette(routes=[Route("/predict", predict)])
    return ModelRouter(app, {"a": lambda x: x, "b": lambda x: -x},
                       RouterConfig(shadow_kind="score"), shadows=shadows)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


def wall_us(app: Any, n: int) -> float:
    scopes = [scope(user=f"user-{i}") for i in range(n)]

    async def go() -> float:
        start = time.perf_counter()
        for s in scopes:
            await app(dict(s), receive, send)
        elapsed = (time.perf_counter() - start) / n * 1e6
        if app.shadows is not None:  # let the round's shadow work end (outside the timing)
            while app.shadows.pending:
                await asyncio.sleep(0.01)
        return elapsed

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    routers = {"no shadow": router(None), "sync shadow sleeping 50 ms": router({"s": sleepy}),
               "shadow raising every call": router({"s": raising}),
               "async shadow sleeping 50 ms": router({"s": async_sleepy})}
    times = interleaved({name: functools.partial(wall_us, r, args.calls)
                         for name, r in routers.items()}, args.rounds)
    base = sorted(times["no shadow"])[len(times["no shadow"]) // 2]
    rows = [[name, fmt(v), f"{sorted(v)[len(v) // 2] / base:.3f}"] for name, v in times.items()]
    print(table(["router", "us / served request (wall)", "ratio to no shadow"], rows))
    for name, r in routers.items():
        if r.shadows is not None:
            print(f"{name}: {r.shadows.log.snapshot().stats['s'].counts()}")
            r.shadows.shutdown()


if __name__ == "__main__":
    main()
