"""Where the server's CPU goes, by shared object and by C function: ``perf record`` on uvicorn.

    python benchmarks/perf_server.py [--app ab] [--endpoint ok] [--seconds 8]
        [--offered R] [--users 100000] [--call-graph] [--top 15]

Starts the app of ``server_apps.py`` as ``bench_server.py`` does (uvicorn, httptools, one
worker; the server on CPU 0 and wrk on CPU 1 where there are two), warms it up, then samples
the server process with ``perf record -e cpu-clock`` while wrk drives it: at saturation, or
paced to ``--offered`` requests/s (bench_server.py's fixed-rate Lua). ``cpu-clock`` is a
software timer, so it works on a VM without hardware counters (the issue-17 machine), and it
sees the kernel, CPython, libc and the router's compiled modules by symbol, which py-spy
(Python frames; C time charged to the calling line) cannot split.

It prints the server CPU per request over the sampled window (perf's sampling included: it
reads higher than bench_server.py's figure), then that time split by shared object and by
function (self time), in microseconds per request: a sample's share of all samples times the
CPU per request. With ``--call-graph`` (DWARF unwinding: CPython has no frame pointers; larger
files, lower default frequency) it also prints the inclusive time of the router's compiled
functions (``__pyx_`` symbols of ``modelrouter`` and the ``mr_`` C helpers): what each call
costs with everything it calls. Run it for ``--app bare`` and ``--app ab`` and compare
(docs/performance.md, tenth pass). Needs ``perf`` and wrk, and the rights to attach perf.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _fixed_rate import paced_script
from bench_server import ENDPOINTS, LUA, cpu_seconds, free_port, start_server, wait_port, wrk

# "    12.34%  libpython3.11.so.1.0   [.] _PyEval_EvalFrameDefault" (--sort dso,sym)
SELF_LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.+?)\s*$")
# "    63.51%     0.04%  [.] __pyx_f_..." (--children --sort sym)
CHILDREN_LINE = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(.+?)\s*$")
ROUTER_SYMBOL = re.compile(r"^(__pyx_\w*modelrouter\w*|mr_\w+)$")


def self_times(report: str, us_per_request: float) -> tuple[dict[str, float],
                                                              dict[tuple[str, str], float]]:
    """``perf report --sort dso,sym`` text as (shared object -> us/request, (shared object,
    function) -> us/request)."""
    by_dso: dict[str, float] = {}
    by_sym: dict[tuple[str, str], float] = {}
    for line in report.splitlines():
        m = SELF_LINE.match(line)
        if m is None:
            continue
        us = float(m.group(1)) / 100 * us_per_request
        dso, sym = m.group(2), m.group(3)
        by_dso[dso] = by_dso.get(dso, 0.0) + us
        by_sym[(dso, sym)] = by_sym.get((dso, sym), 0.0) + us
    return by_dso, by_sym


def router_inclusive(report: str, us_per_request: float) -> dict[str, float]:
    """``perf report --children --sort sym`` text as router function -> inclusive us/request."""
    out: dict[str, float] = {}
    for line in report.splitlines():
        m = CHILDREN_LINE.match(line)
        if m is not None and ROUTER_SYMBOL.match(m.group(3)):
            out[m.group(3)] = float(m.group(1)) / 100 * us_per_request
    return out


def top(rows: dict[str, float] | dict[tuple[str, str], float], n: int) -> list[tuple[str, float]]:
    """The n largest entries, keys as text."""
    items = [(k if isinstance(k, str) else f"{k[1]} ({k[0]})", v) for k, v in rows.items()]
    return sorted(items, key=lambda kv: -kv[1])[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", default="ab", choices=["bare", "ab", "bandit", "passthrough"])
    parser.add_argument("--endpoint", default="ok", choices=list(ENDPOINTS))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--offered", type=float, default=0.0,
                        help="wrk paced to this many requests/s (0: saturation)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--call-graph", action="store_true",
                        help="DWARF call graphs: the router's functions with their callees")
    parser.add_argument("--frequency", type=int, default=0,
                        help="samples per second (default 4999, 999 with --call-graph)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for tool in ("wrk", "perf"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    frequency = args.frequency or (999 if args.call_graph else 4999)
    tmp = Path(tempfile.mkdtemp(prefix="perf_server-"))
    data = tmp / "perf.data"
    lua = LUA.replace("USERS", str(args.users))
    script = tmp / "users.lua"
    script.write_text(paced_script(lua, args.offered) if args.offered else lua)
    two = shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) > 1
    port = free_port()
    server = start_server(args.app, port, "httptools", cpu="0" if two else None)
    path = ENDPOINTS[args.endpoint]
    graph = ["--call-graph", "dwarf,16384"] if args.call_graph else []
    try:
        wait_port(port)
        wrk(port, path, 1, args.connections, str(script))  # warm-up
        load = subprocess.Popen([*(["taskset", "-c", "1"] if two else []), "wrk", "-t1",
                                 f"-c{args.connections}", f"-d{args.seconds + 2}s", "-s",
                                 str(script), f"http://127.0.0.1:{port}{path}"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        cpu0 = cpu_seconds(server.pid)
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(frequency), *graph,
                        "-p", str(server.pid), "-o", str(data), "--", "sleep",
                        str(args.seconds)], check=True, capture_output=True)
        cpu1 = cpu_seconds(server.pid)
        out, _ = load.communicate()
    finally:
        server.terminate()
        server.wait(timeout=10)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        sys.exit(f"wrk reported no rate:\n{out}")
    rps = float(found.group(1))
    us = (cpu1[0] - cpu0[0]) / (rps * args.seconds) * 1e6
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort",
                             "dso,sym", "--stdio", "-g", "none"], capture_output=True,
                            text=True).stdout
    by_dso, by_sym = self_times(report, us)
    load_text = f"offered {args.offered:,.0f} req/s" if args.offered else "saturation"
    print(f"{args.app} /{args.endpoint}: {rps:,.0f} req/s ({load_text}), server CPU "
          f"{us:.1f} us/request with perf sampling at {frequency} Hz, {args.users:,} users\n")
    print("| shared object | us/request |\n|---|---:|")
    for name, v in top(by_dso, args.top):
        print(f"| {name} | {v:.2f} |")
    print("\n| function (self) | us/request |\n|---|---:|")
    for name, v in top(by_sym, args.top):
        print(f"| {name} | {v:.2f} |")
    if args.call_graph:
        children = subprocess.run(["perf", "report", "-i", str(data), "--children", "--sort",
                                   "sym", "--stdio", "-g", "none"], capture_output=True,
                                  text=True).stdout
        print("\n| router function (inclusive) | us/request |\n|---|---:|")
        for name, v in top(router_inclusive(children, us), args.top):
            print(f"| {name} | {v:.2f} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
