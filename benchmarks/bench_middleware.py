"""Per-request cost of the A/B routing step and of record(), against the floor, same run.

    python benchmarks/bench_middleware.py [--rounds 15] [--calls 20000] [--breakdown]
                                          [--covariates]

Direct ASGI calls on a trivial Starlette endpoint (no network): the bare app, the app behind a
pure pass-through middleware (the floor any middleware pays), and behind ModelRouter in A/B
mode. Prints microseconds per request (median and min..max over interleaved rounds), the
microseconds modelrouter adds over the pass-through, and the ratio to the bare app. Times are
CPU time of the calling thread (see _harness.per_call_us). ``--breakdown`` splits what the
router adds into the unit id reader, the middleware's own work (decision in the scope, send
wrapper, timers, the automatic metrics' hand-off) and routing + recording, by replacing the
routing step (and then also the reader) by constants. ``--covariates`` measures what reading
covariates from the request (``covariate_headers``, asgi/covariates.py) costs: on returning
units (one ``has_unit`` lookup) and on first exposures (the reading and recording), each
against the same router without a reader, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from typing import Any

from _harness import fix_decision, fix_unit, fmt, interleaved, per_call_us, scope, table
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import Experiment, ModelRouter, RouterConfig


def make_app() -> Starlette:
    async def predict(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")
    return Starlette(routes=[Route("/predict", predict)])


def naive_base_http(app: Any) -> Any:
    """What a naive implementation costs: BaseHTTPMiddleware doing the same hashing."""
    from starlette.middleware.base import BaseHTTPMiddleware

    from modelrouter.routing.assignment import Allocation, Bucketer

    bucket = Bucketer("bench")
    alloc = Allocation(["control", "treatment"], {"control": 0.5, "treatment": 0.5})

    async def dispatch(request: Any, call_next: Any) -> Any:
        unit = request.headers.get("x-user-id")
        request.state.variant = alloc.choose(bucket(unit)) if unit else 0
        start = time.perf_counter()
        response = await call_next(request)
        request.state.latency = time.perf_counter() - start
        return response

    return BaseHTTPMiddleware(app, dispatch=dispatch)


class PassThrough:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def record_cost_us(n: int, threads: int = 1) -> float:
    exp = Experiment({"control": 0, "treatment": 1},
                     RouterConfig(metrics={"click": "binary", "revenue": "continuous"}))
    decisions = [exp.assign(f"user-{i}").decision_id for i in range(10_000)]
    per = n // threads

    def work(k: int) -> None:
        for i in range(per):
            exp.record(decisions[(i + k) % 10_000], "revenue", 1.0)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    units = exp.store.snapshot().units
    assert units is not None and units.x["revenue"].sum() == per * threads  # exact totals
    return elapsed / (per * threads) * 1e6


def breakdown(rounds: int, n: int) -> None:
    """Where the A/B router's microseconds go, in-process (returning units)."""
    def routed() -> ModelRouter:
        return ModelRouter(make_app(), {"control": 0, "treatment": 1},
                           RouterConfig(metrics={"click": "binary"}))

    full, glue, no_reader = routed(), routed(), routed()
    for r in (glue, no_reader):  # routing replaced by a constant decision (seq -1: not recorded)
        fix_decision(r)
    fix_unit(no_reader)
    bare = make_app()
    res = interleaved({"bare": lambda: per_call_us(bare, n),
                       "full": lambda: per_call_us(full, n),
                       "glue": lambda: per_call_us(glue, n),
                       "no_reader": lambda: per_call_us(no_reader, n)}, rounds)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"\nBreakdown of what the A/B router adds (median of {rounds} rounds, us/request):\n")
    print(table(["part", "us / request"], [
        ["middleware's own work (state, send wrapper, timers, hand-off)",
         f"{med['no_reader'] - med['bare']:.2f}"],
        ["unit id reader (header)", f"{med['glue'] - med['no_reader']:.2f}"],
        ["routing + exposure + automatic metrics (store)", f"{med['full'] - med['glue']:.2f}"],
        ["total added over the bare app", f"{med['full'] - med['bare']:.2f}"]]))


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


def per_call_us_first(make: Any, n: int) -> float:
    """Mean microseconds of CPU per request when every request is a unit's first exposure
    (a fresh router of ``make()``, ``n`` distinct units, each request carrying ``x-pre``)."""
    app = make()
    scopes = []
    for i in range(n):
        sc = scope(user=f"new-{i}")
        sc["headers"] = [*sc["headers"], (b"x-pre", str(i % 97).encode())]
        scopes.append(sc)

    async def go() -> float:
        start = time.thread_time()
        for sc in scopes:
            await app(sc, receive, send)
        return (time.thread_time() - start) / n * 1e6

    return asyncio.run(go())


def covariates(rounds: int, n: int) -> None:
    """What covariate readers cost: returning units and first exposures, with and without."""
    metrics = {"click": {"kind": "binary", "covariates": ["pre"]}}

    def routed(read: bool) -> ModelRouter:
        return ModelRouter(make_app(), {"control": 0, "treatment": 1}, RouterConfig(
            metrics=metrics, covariate_headers={"pre": "x-pre"} if read else {}))

    plain, reading = routed(False), routed(True)
    for r in (plain, reading):  # every unit exposed once: the measured requests return
        per_call_us(r, 10_000)
    res = interleaved({"plain": lambda: per_call_us(plain, n),
                       "reading": lambda: per_call_us(reading, n),
                       "plain_first": lambda: per_call_us_first(lambda: routed(False), n),
                       "reading_first": lambda: per_call_us_first(lambda: routed(True), n)},
                      rounds)
    print(f"Covariates read from requests, {n:,} requests x {rounds} interleaved rounds "
          "(median (min..max), us/request):\n")
    print(table(["requests", "no reader", "covariate_headers", "difference"], [
        ["returning units", fmt(res["plain"]), fmt(res["reading"]),
         fmt([b - a for a, b in zip(res["plain"], res["reading"])])],
        ["first exposures", fmt(res["plain_first"]), fmt(res["reading_first"]),
         fmt([b - a for a, b in zip(res["plain_first"], res["reading_first"])])]]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--breakdown", action="store_true",
                        help="only split the router's cost into its parts")
    parser.add_argument("--covariates", action="store_true",
                        help="only measure what reading covariates from requests costs")
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args.rounds, args.calls)
        return
    if args.covariates:
        covariates(args.rounds, args.calls)
        return
    bare = make_app()
    passthrough = PassThrough(make_app())
    ab = ModelRouter(make_app(), {"control": 0, "treatment": 1},
                     RouterConfig(metrics={"click": "binary"}))
    n = args.calls
    naive = naive_base_http(make_app())
    res = interleaved({"bare": lambda: per_call_us(bare, n),
                       "pass": lambda: per_call_us(passthrough, n),
                       "ab": lambda: per_call_us(ab, n),
                       "naive": lambda: per_call_us(naive, max(1, n // 10))}, args.rounds)
    added = [a - p for a, p in zip(res["ab"], res["pass"])]
    print(f"In-process ASGI calls, {n:,} requests x {args.rounds} interleaved rounds "
          "(median (min..max)):\n")
    rows = [["bare Starlette app", fmt(res["bare"]), "1.00"],
            ["pass-through pure ASGI middleware", fmt(res["pass"]),
             f"{statistics.median(res['pass']) / statistics.median(res['bare']):.3f}"],
            ["modelrouter A/B", fmt(res["ab"]),
             f"{statistics.median(res['ab']) / statistics.median(res['bare']):.3f}"],
            ["BaseHTTPMiddleware doing the same hashing", fmt(res["naive"]),
             f"{statistics.median(res['naive']) / statistics.median(res['bare']):.3f}"]]
    print(table(["app", "us / request", "ratio to bare"], rows))
    med_added = statistics.median(added)
    print(f"\nmodelrouter A/B adds {fmt(added)} us over the pass-through "
          f"(issue 17: <= 2.5 us): {'pass' if med_added <= 2.5 else 'MISS'}")
    rec1 = [record_cost_us(200_000) for _ in range(5)]
    rec8 = [record_cost_us(200_000, threads=8) for _ in range(5)]
    print(f"record(): {fmt(rec1)} us per event single-threaded (issue 17: <= 1 us): "
          f"{'pass' if statistics.median(rec1) <= 1.0 else 'MISS'}; "
          f"{fmt(rec8)} us per event with 8 threads")


if __name__ == "__main__":
    main()
