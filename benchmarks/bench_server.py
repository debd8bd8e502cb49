"""Requests/s, p99 and server CPU per request through a real server: bare app vs modelrouter.

    python benchmarks/bench_server.py [--seconds 5] [--rounds 3] [--connections 32]
    python benchmarks/bench_server.py --quick        # a short smoke run (1 round of 2 s)
    python benchmarks/bench_server.py --rate 5000,10000 --endpoints ok --seconds 10
    python benchmarks/bench_server.py --rate auto    # a fixed offered load (see below)

Starts uvicorn (one worker, access log off, httptools when installed, lifespan off) on
127.0.0.1 for each app of ``server_apps.py`` (``bare``, ``ab``, ``bandit``) and each endpoint
(``/ok``: a trivial ``PlainTextResponse``; ``/model``: scikit-learn ``LogisticRegression.predict``
on one 64-feature row), one fresh server per measurement, and drives it with ``wrk`` (Debian
package ``wrk``) from the same machine, with a Lua script that sends ``x-user-id`` values
cycling over ``--users`` distinct ids (100,000 by default; each wrk run starts again at
``user-0``, so a run first meets units known from the warm-up, then new ones).

Per measurement: a 1 s warm-up run of wrk, then the timed run; the server's CPU time is
``utime + stime`` of the server process (``/proc/<pid>/stat``, all its threads: a bandit's
refresh thread counts) read just before and just after the timed run, divided by the requests
wrk completed in it. Apps are interleaved in every round (their order rotating from round to
round) so machine noise hits all of them alike; the tables show medians (min..max over rounds),
ratios to the bare app measured in the same run, and the CPU each routed app adds per request
(the median of the per-round differences to the bare app of the same round).

``--apps`` also takes two calibrations (``passthrough``: a pure ASGI middleware; ``spin``: one
that spends ~3.6 us of Python first) and the contract's floor (``floor_pass``, ``floor_lookup``,
``floor_state``, ``floor_send``: minimal compiled middlewares, each adding one part of what the
router must do per request; ``floor_fast``: the last in the router's cheaper call forms;
``floor_c.pyx``, compiled with pyximport, so Cython and a C compiler are needed: ``pip install
-e '.[bench]'``). The floor measures what the contract's per-request work alone adds under
this server (docs/performance.md, fifteenth pass).

CPU time per request is the figure that decides (issue 17): on a shared machine, req/s and p99
move with everything else that runs, CPU per request much less. Traffic goes to loopback only
and every run is bounded in time. ``--json PATH`` also writes every raw measurement.

By default wrk runs closed-loop, at saturation, where a slower server's CPU per request may
also grow with the wake-ups its slowdown causes. ``--rate R[,R...]`` measures instead at a fixed
offered load, the regime a service runs in (docs/performance.md, sixth pass: on this project's
machine it did not give the router a smaller figure): wrk paced to R requests/s
(``_fixed_rate.py``: one schedule of send slots shared by the connections, through wrk's Lua
``delay()``), the same R for every app, each rate in every round (warm-up paced too). Its
tables give the achieved req/s (a round further than 2% from R is flagged: the server or the
machine did not sustain R), server CPU per request from the threads' schedstat (nanoseconds;
``/proc/<pid>/stat`` counts 10 ms ticks, coarse when the server idles part of the time) with
its user/system split, the CPU added over bare (median, min..max of per-round differences),
p50/p99 and the server's CPU use; ``--rate auto`` offers 60% of the slowest routed app's req/s
in a 2 s saturation probe of each endpoint. Keep ``connections / R`` above the p99 latency, so
a connection is free at each slot.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from _fixed_rate import auto_rate, fmt_load, paced_script, parse_rates, rate_report, write
from _harness import span, table

HERE = Path(__file__).resolve().parent
ENDPOINTS = {"ok": "/ok", "model": "/model"}
APPS = ("bare", "ab", "bandit")
CALIBRATION = ("passthrough", "spin")  # server_apps.py: a known in-process cost, for scale
# server_apps.py: the contract's floor, stage by stage (floor_c.pyx): C objects, not coroutine
# functions, so uvicorn is told their interface instead of guessing it
FLOOR = ("floor_pass", "floor_lookup", "floor_state", "floor_send", "floor_fast")
LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", nil, {["x-user-id"] = "user-" .. (counter % USERS)})
end
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")
# goals of issue 17: added server CPU per request (us) and req/s ratio to bare, per endpoint
CPU_GOAL_US = 4.0
RPS_GOAL = {"ok": 0.93, "model": 0.98}


@dataclass(frozen=True)
class Measurement:
    """One timed wrk run against one fresh server."""

    app: str
    endpoint: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_s: float
    errors: int
    user_s: float = float("nan")
    offered: float = float("nan")  # --rate: the requests/s wrk was paced to (nan: saturation)
    sched_s: float = float("nan")  # CPU from the threads' schedstat (ns resolution)
    seconds: float = float("nan")  # length of the timed run

    @property
    def sched_us(self) -> float:
        """Server CPU per completed request from the scheduler's per-thread run time
        (``/proc/<pid>/task/*/schedstat``, nanoseconds): the same total as ``cpu_us`` without
        its 10 ms ticks, which matter when the server is idle part of the time (``--rate``)."""
        return self.sched_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def cpu_us(self) -> float:
        """Server CPU (user + system, all threads) per completed request, microseconds."""
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def user_us(self) -> float:
        """Server user-mode CPU per completed request, microseconds (the system part holds
        the kernel's socket work and wake-ups of the load generator, which grow as the
        server slows: see README, Performance)."""
        return self.user_s / self.requests * 1e6 if self.requests else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """``(utime + stime, utime)`` of process ``pid`` (every thread), in seconds (``proc(5)``)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    user = int(fields[11]) / CLK_TCK  # fields 14 and 15 of proc(5)
    return user + int(fields[12]) / CLK_TCK, user


def sched_seconds(pid: int) -> float:
    """CPU time of process ``pid``'s live threads from ``/proc/<pid>/task/*/schedstat`` (its
    first field: nanoseconds on a CPU); a thread that exits meanwhile is not counted."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def parse_wrk(out: str) -> tuple[float, int, int, int]:
    """``(requests/s, requests, non-2xx responses, socket errors)`` of a wrk run's output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    return (rps, n, int(bad.group(1)) if bad else 0,
            sum(int(g) for g in sock.groups()) if sock else 0)


def parse_latency(text: str, label: str) -> float:
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000.0 if unit == "us" else value * 1000.0 if unit == "s" else value


def start_server(app: str, port: int, http: str, code: str | None = None,
                 cpu: str | None = None, prefix: Sequence[str] = (),
                 env: Mapping[str, str] | None = None,
                 quiet: bool = False) -> subprocess.Popen[bytes]:
    """uvicorn serving ``server_apps:<app>`` (a factory) with one worker on ``port``; ``code``:
    a directory holding another ``modelrouter`` package to serve instead of this checkout's.

    BLAS runs single-threaded (``OPENBLAS_NUM_THREADS=1`` and friends), as in a one-worker
    model server: its idle threads would otherwise add noise to the CPU figures. ``cpu``: the
    CPU list the server is pinned to (``taskset -c``), or None. ``prefix``: a command the
    server runs under (simulate_server.py: valgrind); ``env``: variables added to the server's
    environment; ``quiet``: its standard error discarded."""
    cmd = [*pin(cpu), *prefix, sys.executable, "-m", "uvicorn", "--factory",
           f"server_apps:{app}", "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
           "--log-level", "warning", "--http", http, "--lifespan", "off", "--workers", "1",
           *(["--interface", "asgi3"] if app.split("@")[0] in FLOOR else [])]
    path = [code] if code else []
    variables = {**os.environ,
                 "PYTHONPATH": os.pathsep.join([*path, str(HERE.parent), str(HERE)]),
                 "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 **(env or {})}
    return subprocess.Popen(cmd, cwd=HERE, env=variables,
                            stderr=subprocess.DEVNULL if quiet else None)


def pin(cpu: str | None) -> list[str]:
    """The ``taskset`` prefix that pins a command to the CPU list ``cpu`` (none for None)."""
    return ["taskset", "-c", cpu] if cpu else []


def wrk(port: int, path: str, seconds: int, connections: int, script: str,
        cpu: str | None = None) -> str:
    """One wrk run (one thread, ``--latency``, pinned to ``cpu`` when given); its report."""
    return subprocess.run([*pin(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                           "--latency", "-s", script, f"http://127.0.0.1:{port}{path}"],
                          capture_output=True, text=True, check=True,
                          timeout=seconds + 30).stdout


def run_one(app: str, endpoint: str, rnd: int, seconds: int, connections: int, script: str,
            http: str, baseline: str | None = None,
            cpus: tuple[str | None, str | None] = (None, None),
            offered: float = float("nan")) -> Measurement:
    """Measure ``app`` (``"ab"``, or ``"ab@base"``: the same app on the ``baseline`` code);
    ``cpus``: the CPU lists the server and wrk are pinned to (None: not pinned); ``offered``:
    the rate ``script`` paces wrk to (nan: not paced), recorded with the measurement."""
    port = free_port()
    factory, _, tag = app.partition("@")
    server = start_server(factory, port, http, baseline if tag else None, cpus[0])
    try:
        wait_port(port)
        wrk(port, ENDPOINTS[endpoint], 1, connections, script, cpus[1])  # warm-up
        cpu0, sched0, t0 = cpu_seconds(server.pid), sched_seconds(server.pid), time.monotonic()
        out = wrk(port, ENDPOINTS[endpoint], seconds, connections, script, cpus[1])
        cpu1, sched1, t1 = cpu_seconds(server.pid), sched_seconds(server.pid), time.monotonic()
    finally:
        server.terminate()
        server.wait(timeout=10)
    rps, n, bad, sock = parse_wrk(out)
    return Measurement(app, endpoint, rnd, rps, parse_latency(out, "50"),
                       parse_latency(out, "99"), n, cpu1[0] - cpu0[0], bad + sock,
                       cpu1[1] - cpu0[1], offered, sched1 - sched0, t1 - t0)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def report(results: list[Measurement], apps: list[str], endpoints: list[str]) -> str:
    """The tables (markdown) and the goal checks of issue 17."""
    lines: list[str] = []
    for ep in endpoints:
        by_app = {a: sorted((m for m in results if m.app == a and m.endpoint == ep),
                            key=lambda m: m.round) for a in apps}
        base = by_app.get("bare", [])
        base_rps = statistics.median(m.rps for m in base) if base else float("nan")
        base_p99 = statistics.median(m.p99_ms for m in base) if base else float("nan")
        rows = []
        for a in apps:
            ms = by_app[a]
            if not ms:
                continue
            rps = [m.rps for m in ms]
            added = [m.cpu_us - b.cpu_us for m, b in zip(ms, base)] if a != "bare" else []
            added_user = ([m.user_us - b.user_us for m, b in zip(ms, base)] if a != "bare"
                          else [])
            rows.append([a, span(rps, 0), f"{statistics.median(rps) / base_rps:.3f}",
                         span([m.p99_ms for m in ms], 2),
                         f"{statistics.median(m.p99_ms for m in ms) / base_p99:.2f}",
                         span([m.cpu_us for m in ms], 1),
                         span(added, 1) if added else "",
                         span(added_user, 1) if added_user else "",
                         str(sum(m.errors for m in ms))])
        lines.append(f"\nendpoint /{ep}:\n")
        lines.append(table(["app", "requests/s", "ratio to bare", "p99 ms", "p99 ratio",
                            "server CPU us/request", "added CPU us/request",
                            "added user CPU us/request", "errors"], rows))
        for a in apps:
            if a == "bare" or not by_app[a] or not base:
                continue
            added_med = statistics.median(m.cpu_us - b.cpu_us
                                          for m, b in zip(by_app[a], base))
            ratio = statistics.median(m.rps for m in by_app[a]) / base_rps
            lines.append(f"{a} /{ep}: added CPU {added_med:+.1f} us/request (goal <= "
                         f"{CPU_GOAL_US:g}): {'pass' if added_med <= CPU_GOAL_US else 'MISS'}; "
                         f"req/s ratio {ratio:.3f} (goal >= {RPS_GOAL[ep]}): "
                         f"{'pass' if ratio >= RPS_GOAL[ep] else 'MISS'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto",
                        help="uvicorn's HTTP parser (auto: httptools when installed)")
    parser.add_argument("--users", type=int, default=100_000,
                        help="distinct x-user-id values cycled by wrk")
    parser.add_argument("--apps", default=",".join(APPS), help="comma-separated subset of "
                        f"{','.join(APPS + CALIBRATION + FLOOR)}")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS),
                        help=f"comma-separated subset of {','.join(ENDPOINTS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round of 2 s (overrides --seconds/--rounds)")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement here")
    parser.add_argument("--baseline", metavar="DIR",
                        help="a directory holding another modelrouter package (e.g. `git "
                        "archive <commit> modelrouter | tar -x -C DIR`): its routed apps run "
                        "as ab@base and bandit@base in the same rounds, for before/after tables")
    parser.add_argument("--pin", metavar="SERVER:WRK", help="pin the server and wrk to these "
                        "CPU lists (taskset -c), e.g. 0:1, so the load generator never shares "
                        "the server's core and the scheduler does not move either")
    parser.add_argument("--rate", metavar="R[,R...]|auto", help="fixed offered load instead of "
                        "saturation: wrk paced to R requests/s in total (each rate measured in "
                        "every round); auto: 60%% of the slowest routed app's req/s in a 2 s "
                        "saturation probe, per endpoint")
    args = parser.parse_args()
    try:
        rates = parse_rates(args.rate) if args.rate is not None else None
    except ValueError as exc:
        sys.exit(str(exc))
    cpus: tuple[str | None, str | None] = (None, None)
    if args.pin:
        server_cpu, sep, wrk_cpu = args.pin.partition(":")
        if not sep or not server_cpu or not wrk_cpu or shutil.which("taskset") is None:
            sys.exit("--pin needs SERVER:WRK CPU lists (e.g. 0:1) and taskset (util-linux)")
        cpus = (server_cpu, wrk_cpu)
    if args.quick:
        args.seconds, args.rounds = 2, 1
    http = args.http if args.http != "auto" else ("httptools" if _has("httptools") else "h11")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    apps = [a for a in args.apps.split(",") if a]
    endpoints = [e for e in args.endpoints.split(",") if e]
    if "bare" not in apps:
        apps.insert(0, "bare")  # every ratio is to the bare app of the same round
    unknown = (set(apps) - set(APPS) - set(CALIBRATION) - set(FLOOR)
               | set(endpoints) - set(ENDPOINTS))
    if unknown:
        sys.exit(f"unknown app or endpoint: {sorted(unknown)}")
    if args.baseline:
        if not (Path(args.baseline) / "modelrouter" / "__init__.py").is_file():
            sys.exit(f"--baseline {args.baseline}: no modelrouter package there")
        apps += [f"{a}@base" for a in apps if a != "bare" and a not in FLOOR]
    if set(apps) & set(FLOOR):  # compiled here, once, before any server imports it
        sys.path[:0] = [str(HERE.parent), str(HERE)]
        import server_apps

        server_apps.floor_module()
    load0 = os.getloadavg()
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmp:
        lua = LUA.replace("USERS", str(args.users))
        script = Path(tmp, "saturate.lua")
        script.write_text(lua)
        started = time.monotonic()
        if args.rate is None:
            plan = {ep: [(float("nan"), str(script))] for ep in endpoints}
        else:
            by_ep = rates_by_endpoint(rates, apps, endpoints, args, str(script), http, cpus)
            plan = {ep: [(r, write(Path(tmp, f"{ep}-{r:g}.lua"), paced_script(lua, r)))
                         for r in by_ep[ep]] for ep in endpoints}
        for rnd in range(args.rounds):
            for ep in endpoints:
                order = apps[rnd % len(apps):] + apps[:rnd % len(apps)]
                for rate, path in plan[ep]:
                    for app in order:
                        m = run_one(app, ep, rnd, args.seconds, args.connections, path, http,
                                    args.baseline, cpus, rate)
                        paced = f" (offered {rate:,.0f})" if args.rate is not None else ""
                        print(f"  round {rnd + 1} /{ep} {app}: {m.rps:,.0f} req/s{paced}, p99 "
                              f"{m.p99_ms:.2f} ms, {m.cpu_us:.1f} us CPU/request",
                              file=sys.stderr)
                        results.append(m)
    pinned = f", server on CPU {cpus[0]} and wrk on CPU {cpus[1]}" if args.pin else ""
    if args.rate is None:
        print(f"uvicorn ({http}, 1 worker{pinned}), {args.users:,} distinct users, wrk -t1 "
              f"-c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds "
              f"({time.monotonic() - started:.0f} s), medians (min..max over rounds); load "
              f"average at the end {os.getloadavg()[0]:.2f}:")
        print(report(results, apps, endpoints))
    else:
        print(f"uvicorn ({http}, 1 worker{pinned}), {args.users:,} distinct users, wrk -t1 "
              f"-c{args.connections} -d{args.seconds}s paced to a fixed offered rate, "
              f"{args.rounds} interleaved rounds ({time.monotonic() - started:.0f} s), medians "
              f"(min..max over rounds); server CPU from the threads' schedstat, user from "
              f"/proc/<pid>/stat, system = the difference; load average (1/5/15 min) at the "
              f"start {fmt_load(load0)}, at the end {fmt_load(os.getloadavg())}:")
        print(rate_report(results, apps, endpoints, {ep: [r for r, _ in plan[ep]]
                                                     for ep in endpoints}))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**asdict(m), "cpu_us": m.cpu_us} for m in results], indent=1))


def rates_by_endpoint(rates: list[float] | None, apps: list[str], endpoints: list[str],
                      args: argparse.Namespace, script: str, http: str,
                      cpus: tuple[str | None, str | None]) -> dict[str, list[float]]:
    """The offered rates of each endpoint: ``rates``, or (``--rate auto``: ``rates`` None)
    ``auto_rate`` of a 2 s saturation run of each routed app (every app when none is)."""
    if rates is not None:
        return {ep: rates for ep in endpoints}
    probe = [a for a in apps if a not in ("bare", *CALIBRATION, *FLOOR)] or apps
    out: dict[str, list[float]] = {}
    for ep in endpoints:
        rps = [run_one(a, ep, -1, 2, args.connections, script, http, args.baseline, cpus).rps
               for a in probe]
        out[ep] = [auto_rate(rps)]
        probed = ", ".join(f"{a} {r:,.0f}" for a, r in zip(probe, rps))
        print(f"  --rate auto /{ep}: saturated {probed} req/s -> offered {out[ep][0]:,.0f} "
              "req/s", file=sys.stderr)
    return out

if __name__ == "__main__":
    main()
