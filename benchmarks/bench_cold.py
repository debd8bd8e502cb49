"""The in-process request with its caches and branch predictors disturbed between requests, as a
server disturbs them: what the router adds where its code is not hot, timed on this CPU.

    python benchmarks/bench_cold.py [--rounds 9] [--calls 2000] [--code DIR] [--baseline DIR]
        [--runs 2] [--disturb 1]

Why: in a hot loop (``bench_middleware.py``) the router's code, data and branch history stay in
the core's caches from one request to the next; under a server the rest of the request
(uvicorn, httptools, asyncio, the app) runs through ~400 KB of other code between two of the
router's requests, so its code comes from further out and its branches are predicted from
another code's history. ``simulate_server.py`` models that with valgrind's caches and a simple
predictor; ``bench_server.py`` measures it, with a spread of 20-40 us between rounds on this
shared VM. This measures it on the CPU, in-process, with a spread of a few tenths of a us.

Before every request, of every app alike: 2 MiB of data written (the core's L2 is 1 MiB here,
so the code the last request ran is no longer in it, nor in L1) and a **disturbance** run: a
request through another Starlette app answering JSON, a JSON round trip, a regular expression,
a decimal product, a date formatted and a URL split (other code and other branches, as the
server's are; ``--disturb N``: N requests to the other app). Only the request itself is
timed (``perf_counter_ns`` around the ASGI call; the disturbance is outside the timer). The
apps: ``bare`` (a trivial Starlette endpoint), a pure pass-through ASGI middleware in front of
it (the floor any middleware pays), A/B and bandit (``ModelRouter`` in front of it, user
level, 2,000 distinct users, every one known after a warm-up), and ``A/B new``: the A/B
router where every timed request is a unit's first exposure (an id never seen, as nearly
every request of a server run over 100,000 users is), in interleaved rounds of ``--calls``
requests. Prints, per build, the bare request's time and what the others add
(median of the per-round differences, min..max).

``--code DIR`` times another built copy of the package (``git archive <commit> modelrouter |
tar -x -C DIR``, built in place); ``--baseline DIR`` times that copy and this checkout in
alternating processes (``--runs`` of each), for before/after. Wall time of one thread, with
the GIL held: a busy machine adds to both builds alike, the interleaving spreads it.
"""

from __future__ import annotations

import argparse
import asyncio
import decimal
import email.utils
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECTION = "results:"


def child(calls: int, rounds: int, users: int, disturb_with: int = 1) -> dict[str, list[float]]:
    """The timed process: per-round mean us per request of each app."""
    import numpy as np
    from _harness import _receive, _send, scope
    from bench_middleware import PassThrough, make_app
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from modelrouter import ModelRouter, RouterConfig

    metrics = {"click": "binary"}
    apps: dict[str, Any] = {
        "bare": make_app(),
        "pass": PassThrough(make_app()),
        "ab": ModelRouter(make_app(), {"control": 0, "treatment": 1},
                          RouterConfig(metrics=metrics)),
        "bandit": ModelRouter(make_app(), {"control": 0, "treatment": 1},
                              RouterConfig(metrics=metrics, mode="bandit", reward="click")),
        "abnew": ModelRouter(make_app(), {"control": 0, "treatment": 1},
                             RouterConfig(metrics=metrics)),
    }

    async def other(request: Any) -> JSONResponse:
        return JSONResponse({"items": [1, 2, 3], "q": request.query_params.get("q")})

    noise_app = Starlette(routes=[Route("/other", other)])
    noise_scope = scope(path="/other", user=None)
    document = {f"k{i}": [i, str(i), {"x": i / 3}] for i in range(40)}
    pattern = re.compile(r"(\w+)=(\d+)")
    block = np.zeros(2 * 1024 * 1024 // 8)  # 2 MiB: twice this core's L2

    async def disturb() -> None:
        np.add(block, 1.0, out=block)
        for _ in range(disturb_with):
            s = dict(noise_scope)
            s["state"] = {}
            await noise_app(s, _receive, _send)
        json.loads(json.dumps(document))
        pattern.findall("a=1 b=2 c=3 d=4")
        _ = decimal.Decimal("1.1") * decimal.Decimal("3.3")
        email.utils.formatdate(0)
        urllib.parse.urlsplit("http://a/b?c=d#e")

    scopes = [scope(user=f"user-{i}") for i in range(users)]
    # abnew's timed requests: ids never seen, fresh for every round (made outside the timer)
    fresh = iter([scope(user=f"new-{i}") for i in range(rounds * calls)])

    async def run(app: Any, n: int, cold: bool, new: bool = False) -> float:
        total = 0
        clock = time.perf_counter_ns
        for i in range(n):
            if cold:
                await disturb()
            s = dict(next(fresh) if new else scopes[i % users])
            s["state"] = {}
            start = clock()
            await app(s, _receive, _send)
            total += clock() - start
        return total / n / 1_000

    for app in apps.values():  # every unit known, the journal folded
        asyncio.run(run(app, users + 500, cold=False))
    out: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            out[name].append(asyncio.run(run(app, calls, cold=True, new=name == "abnew")))
    return out


def measure(code: str | None, calls: int, rounds: int, users: int,
            disturb_with: int = 1) -> dict[str, list[float]]:
    """Run :func:`child` in a fresh process on the package in ``code`` (None: this checkout)."""
    root = str(HERE.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*([code] if code else []), root,
                                                        str(HERE)])}
    out = subprocess.run([sys.executable, __file__, "--child", "--calls", str(calls),
                          "--rounds", str(rounds), "--users", str(users),
                          "--disturb", str(disturb_with)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.split(SECTION, 1)[1]))


def added(result: dict[str, list[float]], app: str) -> list[float]:
    """Per-round us ``app`` adds over ``bare`` (the rounds are interleaved)."""
    return [x - b for x, b in zip(result[app], result["bare"], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--code", metavar="DIR", help="time the modelrouter package in DIR")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also time the package in DIR, in alternating processes")
    parser.add_argument("--runs", type=int, default=2, help="processes per build (--baseline)")
    parser.add_argument("--disturb", type=int, default=1,
                        help="requests to the other app in each disturbance (default 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.calls, args.rounds, args.users, args.disturb)
        print(SECTION + json.dumps(result))
        return
    from _harness import fmt, table

    builds = {"this": args.code}
    if args.baseline:
        builds = {"baseline": args.baseline, **builds}
    runs: dict[str, list[dict[str, list[float]]]] = {name: [] for name in builds}
    for _ in range(args.runs if args.baseline else 1):
        for name, code in builds.items():
            runs[name].append(measure(code, args.calls, args.rounds, args.users, args.disturb))
    print(f"Per request, caches and predictors disturbed before each ({args.calls:,} requests "
          f"x {args.rounds} interleaved rounds per process, {args.users:,} users; us, median "
          "(min..max) of the rounds):\n")
    rows = []
    for name, results in runs.items():
        label = builds[name] or "this checkout"
        for k, result in enumerate(results, 1):
            rows.append([f"{name} ({label}), run {k}", fmt(result["bare"]),
                         fmt(added(result, "pass")), fmt(added(result, "ab")),
                         fmt(added(result, "abnew")), fmt(added(result, "bandit"))])
    print(table(["build", "bare", "pass-through adds", "A/B adds", "A/B new unit adds",
                 "bandit adds"], rows))
    if args.baseline:
        print()
        for app in ("ab", "abnew", "bandit"):
            before = statistics.median(x for r in runs["baseline"] for x in added(r, app))
            after = statistics.median(x for r in runs["this"] for x in added(r, app))
            print(f"{app}: adds {before:.2f} us (baseline) -> {after:.2f} us "
                  f"({(after - before) / before:+.0%}), medians over all rounds")


if __name__ == "__main__":
    main()
