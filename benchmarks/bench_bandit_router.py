"""Per-request decision cost of bandit mode (2 and 10 arms) against A/B mode, same run.

    python benchmarks/bench_bandit_router.py [--rounds 9] [--calls 20000]

Direct ASGI calls of a trivial ASGI app behind ModelRouter (no network, no Starlette routing),
user-level units from the x-user-id header, interleaved rounds so machine noise hits every
candidate alike. Also: the routing core alone (``Experiment.route``) for each mode, the cost of
a feedback that trains the posterior (``record``), and of one background refresh with 10 arms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from _harness import fmt, interleaved, per_call_us, table

from modelrouter import Experiment, ModelRouter, RouterConfig


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def config(mode: str, **extra: Any) -> RouterConfig:
    return RouterConfig(mode=mode, reward="click", metrics={"click": "binary"},
                        refresh_seconds=None, refresh_every=10**9, **extra)


def router(mode: str, arms: int, **extra: Any) -> ModelRouter:
    return ModelRouter(app, {f"m{i}": i for i in range(arms)}, config(mode, **extra))


def core_us(exp: Experiment, n: int) -> float:
    units = [f"user-{i}" for i in range(10_000)]
    route = exp.route
    start = time.perf_counter()
    for i in range(n):
        route(units[i % 10_000])
    return (time.perf_counter() - start) / n * 1e6


def record_us(n: int) -> float:
    exp = Experiment({"a": 0, "b": 1}, config("bandit", level="request"), rng=random.Random(1))
    decisions = [exp.assign(None).decision_id for _ in range(n)]
    start = time.perf_counter()
    for d in decisions:
        exp.record(d, "click", 1)
    return (time.perf_counter() - start) / n * 1e6


def refresh_ms(arms: int, k: int = 20) -> float:
    exp = Experiment({f"m{i}": i for i in range(arms)}, config("bandit", level="request"),
                     rng=random.Random(2))
    for i in range(5000):
        exp.record(exp.assign(None), "click", int(i % 7 == 0))
    times = []
    for _ in range(k):
        start = time.perf_counter()
        exp.state.refresh_bandit(force=True)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    candidates = {"A/B, 2 arms": router("ab", 2), "bandit, 2 arms": router("bandit", 2),
                  "A/B, 10 arms": router("ab", 10), "bandit, 10 arms": router("bandit", 10),
                  "bandit, 2 arms, sticky": router("bandit", 2, sticky_seconds=600.0),
                  "bandit, 2 arms, holdout 10%": router("bandit", 2, holdout=0.1)}
    asgi = interleaved({k: (lambda r=r: per_call_us(r, args.calls))
                        for k, r in candidates.items()}, args.rounds)
    core = interleaved({k: (lambda r=r: core_us(r.experiment, args.calls))
                        for k, r in candidates.items()}, args.rounds)
    base = {"2": statistics.median(asgi["A/B, 2 arms"]),
            "10": statistics.median(asgi["A/B, 10 arms"])}
    base_core = {"2": statistics.median(core["A/B, 2 arms"]),
                 "10": statistics.median(core["A/B, 10 arms"])}
    rows = []
    for name in candidates:
        arms = "10" if "10 arms" in name else "2"
        a, c = statistics.median(asgi[name]), statistics.median(core[name])
        rows.append([name, fmt(asgi[name]), f"{a - base[arms]:+.2f}", f"{c:.2f}",
                     f"{c - base_core[arms]:+.2f}"])
    print(f"Per-request cost, us (median of {args.rounds} interleaved rounds of {args.calls:,} "
          "direct ASGI calls; user-level units)\n")
    print(table(["mode", "ASGI us/request (min..max)", "vs A/B same arms", "route() us",
                 "route() vs A/B"], rows))
    print(f"\nrecord() of a reward that trains the posterior: {record_us(50_000):.2f} us")
    print(f"one refresh (load counters, P(best) by quadrature, install epoch), 10 arms: "
          f"{refresh_ms(10):.2f} ms; 2 arms: {refresh_ms(2):.2f} ms")


if __name__ == "__main__":
    main()
