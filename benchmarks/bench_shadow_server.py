"""Shadows through a real server: requests/s, latency and server CPU with and without shadows.

    python benchmarks/bench_shadow_server.py [--seconds 5] [--rounds 5] [--connections 16]
        [--baseline DIR]     # also the same apps on another modelrouter (``app@base`` rows)

The latency bar of issue 15 ("a shadow that sleeps 50 ms per call, and one that raises on
every call, leave the served responses unchanged and their latency within noise of no
shadow") measured as a client sees it: uvicorn (one worker, access log off, lifespan off)
serving each app of ``shadow_server_apps.py`` (no shadow; a sync shadow sleeping 50 ms; a
shadow raising on every call; an async shadow sleeping 50 ms; a whole ASGI app sleeping
50 ms, replayed), one fresh server per measurement, driven by ``wrk`` (Debian package ``wrk``)
from the same machine with ``x-user-id`` values cycling over 100,000 users (the Lua script of
``bench_server.py``). Per measurement: a 1 s warm-up, then the timed run; the server's CPU is
``utime + stime`` of the server process (all threads: shadow threads count) per completed
request. Apps are interleaved in every round (order rotating); the table gives medians
(min..max over rounds) and the median over rounds of each ratio to no shadow *of the same
round*. The machine is shared: read the ranges, not only the medians. ``--baseline DIR``
(a directory holding another ``modelrouter`` package, e.g. ``git archive <commit>
modelrouter | tar -x -C DIR``) adds each app served by that code (``app@base``, compared with
``noshadow@base`` of the same round; ``asgi_app`` only when the baseline has ASGI-app
shadows), interleaved in the same rounds: before/after numbers from one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import table
from bench_server import (
    LUA,
    Measurement,
    cpu_seconds,
    free_port,
    parse_latency,
    parse_wrk,
    wait_port,
    wrk,
)

HERE = Path(__file__).resolve().parent
APPS = ("noshadow", "sleepy", "raising", "async_sleepy", "asgi_app")


def start(app: str, port: int, code: str | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "--factory", f"shadow_server_apps:{app}",
           "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
           "warning", "--lifespan", "off", "--workers", "1"]
    env = {"PYTHONPATH": f"{code or HERE.parent}:{HERE}",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    import os

    return subprocess.Popen(cmd, cwd=HERE, env={**os.environ, **env})


def run_one(app: str, rnd: int, seconds: int, connections: int, script: str,
            baseline: str | None) -> Measurement:

    port = free_port()
    name, _, tag = app.partition("@")
    server = start(name, port, baseline if tag else None)
    try:
        wait_port(port)
        wrk(port, "/predict", 1, connections, script)  # warm-up
        cpu0 = cpu_seconds(server.pid)
        out = wrk(port, "/predict", seconds, connections, script)
        cpu1 = cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    rps, n, bad, _sock = parse_wrk(out)
    return Measurement(app, "predict", rnd, rps, parse_latency(out, "50"),
                       parse_latency(out, "99"), n, cpu1[0] - cpu0[0], bad, cpu1[1] - cpu0[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--apps", default=",".join(APPS))
    args = parser.parse_args()
    apps = tuple(args.apps.split(","))
    if args.baseline:
        apps += tuple(f"{a}@base" for a in apps if a != "asgi_app")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA.replace("USERS", str(args.users)))
        script = fh.name
    runs: dict[str, list[Measurement]] = {a: [] for a in apps}
    for k in range(args.rounds):
        for app in apps[k % len(apps):] + apps[:k % len(apps)]:
            runs[app].append(run_one(app, k, args.seconds, args.connections, script,
                                     args.baseline))
    Path(script).unlink()

    def span(values: list[float], digits: int = 1) -> str:
        return (f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}.."
                f"{max(values):.{digits}f})")

    def ratio(app: str, field: str) -> str:
        base = "noshadow@base" if app.endswith("@base") else "noshadow"
        pairs = zip(runs[app], runs[base], strict=True)
        return f"{statistics.median(getattr(a, field) / getattr(b, field) for a, b in pairs):.3f}"

    rows = [[app, span([m.rps for m in runs[app]], 0), ratio(app, "rps"),
             span([m.p50_ms for m in runs[app]], 2), ratio(app, "p50_ms"),
             span([m.p99_ms for m in runs[app]], 2), ratio(app, "p99_ms"),
             span([m.cpu_us for m in runs[app]], 0), ratio(app, "cpu_us"),
             str(sum(m.errors for m in runs[app]))] for app in apps]
    print(table(["app", "req/s", "ratio", "p50 ms", "ratio", "p99 ms", "ratio",
                 "server CPU us/req", "ratio", "non-2xx"], rows))
    print(f"{args.rounds} rounds x {args.seconds} s, {args.connections} connections, "
          "uvicorn 1 worker, wrk 1 thread, same machine (shared: noisy)")


if __name__ == "__main__":
    main()
