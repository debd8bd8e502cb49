"""Where a routed server spends its time: py-spy (and perf stat) on uvicorn under wrk.

    python benchmarks/profile_server.py [--app ab] [--endpoint ok] [--seconds 5]
        [--rate 1000] [--native] [--svg /tmp/prof.svg] [--perf | --perf-only] [--code DIR]

Starts the app of ``server_apps.py`` exactly as ``bench_server.py`` does (uvicorn, httptools,
one worker), warms it up, then drives it with wrk while ``py-spy record`` samples the server
(``--format raw``: collapsed stacks) and, with ``--perf``, ``perf stat`` counts per request
its cycles, instructions and cache misses (where the machine has the counters), its CPU time,
context switches, page faults and system calls (tracepoints: all, and the event loop's and the
socket's by name); ``--perf-only`` runs perf stat alone, without py-spy, whose stops of the
server add context switches and CPU of their own. Needs ``pip install py-spy`` (and ptrace
rights: root, or ``--cap-add SYS_PTRACE`` in a container), except with ``--perf-only``.

It prints the server CPU per request of the run, then the share of the samples and the
sampled time per request (samples / rate / requests served while sampling) that each
modelrouter function takes *itself*: samples whose innermost modelrouter frame is that
function and that are not inside the wrapped app or the server's ``send`` (those belong to
the bare app as well). The sum is the router's own cost as the profiler sees it; a second
table lists the hottest lines anywhere (server and app included), for context. py-spy samples
a thread whenever it is not idle, also while it waits for a core inside a system call (a
socket write whose wake-up of wrk preempts the server, say), so server and kernel lines read
high; modelrouter code makes no system call, so its sampled time is close to its CPU time.
``--svg`` also writes a flame graph (a second py-spy run of the same length).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_server import ENDPOINTS, LUA, cpu_seconds, free_port, start_server, wait_port, wrk

OWN_FILES = ("modelrouter/",)
# frames below which the time belongs to the app or the server, not to the router
FOREIGN = ("starlette/", "server_apps.py", "uvicorn/", "asyncio/")


def own_costs(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(samples, modelrouter functions -> own samples, hottest lines -> self samples)."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1]] += n
        inner = None  # the innermost modelrouter frame, unless foreign code runs below it
        for frame in frames:
            if any(f in frame for f in OWN_FILES):
                inner = frame
            elif inner is not None and any(f in frame for f in FOREIGN):
                inner = None  # the app or the server's send, called by the router
        if inner is not None:
            name = inner.split(" (")[0]
            where = inner.split(" (")[-1].rsplit(":", 1)[0]
            own[f"{name} ({where})"] += n
    return total, own, leaf


# perf stat's events: hardware counters where the machine has them (this VM has none: "not
# supported"), then software events and system-call tracepoints, which every Linux kernel with
# tracefs gives: whether the router changes the kernel's work per request (it does not: the same
# recvfrom, two sendto and epoll_wait share, bare or routed, on the issue-17 machine)
PERF_EVENTS = ("cycles", "instructions", "cache-misses", "task-clock", "context-switches",
               "page-faults", "raw_syscalls:sys_enter", "syscalls:sys_enter_epoll_wait",
               "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_sendto",
               "syscalls:sys_enter_futex")


def perf_per_request(csv: str, served: float) -> list[tuple[str, str]]:
    """``perf stat -x,`` output as ``(event, value per request)``: task-clock in microseconds,
    the rest as counts; an event the machine lacks keeps perf's own word for it."""
    rows = []
    for line in csv.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[2]:
            continue
        value, unit, event = fields[0], fields[1], fields[2]
        try:
            x = float(value)
        except ValueError:
            rows.append((event, value.strip("<>")))
            continue
        if event == "task-clock":  # perf reports milliseconds
            rows.append((event + " (us)", f"{x * 1000 / served:.2f}" if unit == "msec"
                         else f"{x / served:.2f} {unit}"))
        else:
            rows.append((event, f"{x / served:.3f}"))
    return rows


def print_perf(perf_out: str, served: float) -> None:
    """The perf stat table (nothing without perf's output)."""
    if perf_out:
        print("\n| perf stat event (server process) | per request |\n|---|---:|")
        for event, value in perf_per_request(perf_out, served):
            print(f"| {event} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", default="ab", choices=["bare", "ab", "bandit"])
    parser.add_argument("--endpoint", default="ok", choices=list(ENDPOINTS))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    parser.add_argument("--svg", metavar="PATH", help="also write a py-spy flame graph")
    parser.add_argument("--perf", action="store_true", help="also run perf stat")
    parser.add_argument("--perf-only", action="store_true",
                        help="perf stat without py-spy (whose stops of the server add context "
                        "switches and CPU of their own)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--code", metavar="DIR", help="serve the modelrouter package in DIR "
                        "(e.g. an older commit's, from git archive) instead of this checkout's")
    args = parser.parse_args()
    args.perf = args.perf or args.perf_only
    spying = () if args.perf_only else ("py-spy",)
    for tool in ("wrk", *spying) + (("perf",) if args.perf else ()):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="profile_server-"))
    script = tmp / "users.lua"
    script.write_text(LUA.replace("USERS", "100000"))
    port = free_port()
    server = start_server(args.app, port, "httptools", args.code)
    path = ENDPOINTS[args.endpoint]
    try:
        wait_port(port)
        wrk(port, path, 1, args.connections, str(script))
        load = subprocess.Popen(["wrk", "-t1", f"-c{args.connections}",
                                 f"-d{args.seconds + 2}s", "-s", str(script),
                                 f"http://127.0.0.1:{port}{path}"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        cpu0 = cpu_seconds(server.pid)
        spy = ["py-spy", "record", "--pid", str(server.pid), "--rate", str(args.rate),
               "--duration", str(args.seconds), "--nonblocking"] + (
            ["--native"] if args.native else [])
        perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", ",".join(PERF_EVENTS), "-p", str(server.pid), "--",
             "sleep", str(args.seconds)], stderr=subprocess.PIPE, text=True) if args.perf else None
        if not args.perf_only:
            subprocess.run([*spy, "--format", "raw", "-o", str(tmp / "raw.txt")],
                           check=True, capture_output=True)
        perf_out = perf.communicate()[1] if perf is not None else ""
        cpu1 = cpu_seconds(server.pid)
        out, _ = load.communicate()
        if args.svg and not args.perf_only:
            subprocess.run([*spy, "-o", args.svg], check=True, capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    import re

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    served = rps * args.seconds  # requests in the sampled window
    cpu_us = (cpu1[0] - cpu0[0]) / served * 1e6
    if args.perf_only:
        print(f"{args.app} /{args.endpoint}: {rps:,.0f} req/s, server CPU ~{cpu_us:.1f} "
              f"us/request over {args.seconds} s")
        print_perf(perf_out, served)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    per = 1e6 / (args.rate * served)  # microseconds per request that one sample stands for
    total, own, leaf = own_costs(tmp / "raw.txt")
    print(f"{args.app} /{args.endpoint}: {rps:,.0f} req/s, server CPU ~{cpu_us:.1f} us/request "
          f"(py-spy {total} samples at {args.rate}/s over {args.seconds} s)\n")
    print("| modelrouter function (own time, callees in the app and server excluded) | share "
          "| us/request |\n|---|---:|---:|")
    router = sum(own.values())
    for name, n in own.most_common(args.top):
            print(f"| {name} | {n / total:.1%} | {n * per:.2f} |")
    print(f"| **all modelrouter code** | {router / total:.1%} | {router * per:.2f} |")
    print("\n| hottest lines anywhere (self) | share | us/request |\n|---|---:|---:|")
    for name, n in leaf.most_common(args.top):
        print(f"| {name} | {n / total:.1%} | {n * per:.2f} |")
    print_perf(perf_out, served)
    if args.svg:
        print(f"flame graph: {args.svg}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
