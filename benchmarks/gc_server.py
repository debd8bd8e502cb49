"""The cyclic garbage collector's work per request in a real server, bare and routed.

    python benchmarks/gc_server.py [--apps bare,passthrough,ab,bandit] [--seconds 5]
        [--rounds 2] [--users 100000]

One hypothesis for why the router's added server CPU (``bench_server.py``) is larger than its
cost with the caches cold in-process (``bench_cold.py``): its allocations on every request
could make the collector run more often, and each run then scans the server's live objects.
This counts it where it runs. Each app of ``server_apps.py`` is served as ``bench_server.py``
serves it (uvicorn, httptools, one worker), wrapped by ``counted``: ``gc.callbacks`` time
every collection (thread CPU time, per generation) and the wrapper answers ``/_gc`` with the
totals. wrk drives ``/ok`` with ``--users`` distinct ``x-user-id`` values (1 s of warm-up,
then ``--seconds``); the totals are read before and after the timed run, so each figure is
per timed request: collections per 1,000 requests by generation, and microseconds of
collection per request.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bench_server import LUA, free_port, parse_wrk, start_server, wait_port, wrk

ASGI = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def counted(app: ASGI) -> ASGI:
    """``app`` with the collector's work counted from now on, and ``/_gc`` answering the
    totals (``n``: collections, ``seconds``: their thread CPU time, both per generation)."""
    totals: dict[str, list[float]] = {"n": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
            return
        generation = info["generation"]
        totals["n"][generation] += 1
        totals["seconds"][generation] += time.thread_time() - started[0]

    gc.callbacks.append(callback)

    async def serve(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_gc":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps(totals).encode()})
            return
        await app(scope, receive, send)

    return serve


def totals(port: int) -> dict[str, list[float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_gc", timeout=10) as response:
        return dict(json.loads(response.read()))


def measure(app: str, seconds: int, script: str) -> tuple[int, list[float], list[float]]:
    """``(requests, collections per generation, seconds per generation)`` of one timed run."""
    port = free_port()
    server = start_server(app, port, "httptools", env={"MODELROUTER_BENCH_GC": "1"})
    try:
        wait_port(port)
        wrk(port, "/ok", 1, 32, script)
        before = totals(port)
        _, n, _, _ = parse_wrk(wrk(port, "/ok", seconds, 32, script))
        after = totals(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return (n, [a - b for a, b in zip(after["n"], before["n"], strict=True)],
            [a - b for a, b in zip(after["seconds"], before["seconds"], strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", default="bare,passthrough,ab,bandit")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    from _harness import table

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.replace("USERS", str(args.users)))
    rows = []
    for rnd in range(1, args.rounds + 1):
        for app in args.apps.split(","):
            n, runs, secs = measure(app, args.seconds, f.name)
            rows.append([app, str(rnd), f"{n:,}",
                         " / ".join(f"{x / n * 1000:.2f}" for x in runs),
                         f"{sum(secs) / n * 1e6:.3f}"])
    print(f"The collector in uvicorn (/ok, {args.users:,} users, wrk -c32, {args.seconds} s per "
          "run, interleaved rounds):\n")
    print(table(["app", "round", "requests", "collections / 1,000 requests (gen 0 / 1 / 2)",
                 "collector CPU us / request"], rows))


if __name__ == "__main__":
    main()
