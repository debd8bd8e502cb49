"""Requests/s and latency percentiles through a real server: bare app vs modelrouter.

    python benchmarks/bench_server.py [--seconds 5] [--rounds 3] [--connections 32]

Starts uvicorn (one worker, access log off, httptools when installed) on 127.0.0.1 for each
app in turn and drives it with ``wrk`` (Debian package ``wrk``) from the same machine, with a
Lua script that sends a different ``x-user-id`` on every request. Apps are interleaved over
rounds so machine noise hits all of them alike; the table shows medians (min..max) and ratios
to the bare app measured in the same run. Traffic goes to loopback only and every run is
bounded in time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import table

HERE = Path(__file__).resolve().parent
LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/predict", {["x-user-id"] = "user-" .. (counter % 100000)})
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def parse_latency(text: str, label: str) -> float:
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000.0 if unit == "us" else value * 1000.0 if unit == "s" else value


def run_one(app: str, seconds: int, connections: int, script: str, http: str
            ) -> tuple[float, float, float]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"server_apps:{app}", "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", "--log-level", "warning", "--http", http,
           "--lifespan", "off"]
    server = subprocess.Popen(cmd, cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    try:
        wait_port(port)
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d1s", "-s", script,
                        f"http://127.0.0.1:{port}/predict"], capture_output=True, check=True)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                              "-s", script, f"http://127.0.0.1:{port}/predict"],
                             capture_output=True, text=True, check=True, timeout=seconds + 30
                             ).stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, parse_latency(out, "50"), parse_latency(out, "99")


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto",
                        help="uvicorn's HTTP parser (auto: httptools when installed)")
    parser.add_argument("--users", type=int, default=100_000,
                        help="distinct x-user-id values cycled by wrk")
    args = parser.parse_args()
    http = args.http if args.http != "auto" else ("httptools" if _has("httptools") else "h11")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    sys.path.insert(0, str(HERE))
    import server_apps

    apps = ["bare", "ab"] + (["bandit"] if server_apps.bandit is not None else [])
    results: dict[str, list[tuple[float, float, float]]] = {a: [] for a in apps}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA.replace("100000", str(args.users)))
    try:
        for _ in range(args.rounds):
            for app in apps:
                results[app].append(run_one(app, args.seconds, args.connections, fh.name,
                                            http))
    finally:
        os.unlink(fh.name)
    med = {a: [statistics.median(x[i] for x in r) for i in range(3)] for a, r in results.items()}
    rows = []
    for a in apps:
        rps = [x[0] for x in results[a]]
        rows.append([a, f"{med[a][0]:,.0f} ({min(rps):,.0f}..{max(rps):,.0f})",
                     f"{med[a][0] / med['bare'][0]:.3f}", f"{med[a][1]:.2f}", f"{med[a][2]:.2f}",
                     f"{med[a][2] / med['bare'][2]:.2f}"])
    print(f"uvicorn ({http}, {args.users:,} distinct users), 1 worker, "
          f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds, "
          "medians:\n")
    print(table(["app", "requests/s (min..max)", "ratio to bare", "p50 ms", "p99 ms",
                 "p99 ratio"], rows))
    targets = {"ab": 0.95, "bandit": 0.93}
    for a, target in targets.items():
        if a in med:
            ratio = med[a][0] / med["bare"][0]
            p99 = med[a][2] / med["bare"][2]
            print(f"{a}: throughput ratio {ratio:.3f} (target >= {target}): "
                  f"{'pass' if ratio >= target else 'MISS'}; p99 ratio {p99:.2f} "
                  f"(target <= 1.10): {'pass' if p99 <= 1.10 else 'MISS'}")


if __name__ == "__main__":
    main()
