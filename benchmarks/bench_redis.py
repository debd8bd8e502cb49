"""Throughput of the Redis flush path (events per second), against a real redis-server.

Usage: ``python benchmarks/bench_redis.py [--url redis://...] [--events 200000] [--units 50000]``.
Without ``--url`` a throw-away ``redis-server`` is started on a free port. An event is one
hot-path call: an exposure or one feedback value. The benchmark buffers ``events`` events
(half exposures of ``units`` units, half values), then times ``flush()``: draining the buffer,
building the idempotent Lua batches and executing them. It also times the hot path itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found; pass --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", tempfile.mkdtemp()], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--units", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc, url = (None, args.url) if args.url else start_server()
    try:
        from modelrouter.config import RouterConfig
        from modelrouter.store.redis.store import RedisStore

        config = RouterConfig(metrics={"revenue": "continuous"}, store=url)
        results = []
        for r in range(args.rounds):
            # the background flusher waits an hour: only the timed flush() writes
            store = RedisStore(url, ("a", "b"), config.metrics, experiment=f"bench{r}",
                               max_buffer=10 * args.events, flush_events=10 * args.events,
                               flush_seconds=3600.0)
            m = store.metric_index["revenue"]
            half = args.events // 2
            t0 = time.perf_counter()
            for i in range(half):
                seq = store.expose(f"u{i % args.units}", i & 1, 0.5, 0)
                store.record_seq(seq, m, 1.0)
            hot = time.perf_counter() - t0
            t1 = time.perf_counter()
            store.flush()
            flush = time.perf_counter() - t1
            ops = int(store.stats()["flushed_events"])  # type: ignore[call-overload]
            store.close()
            results.append({"events": 2 * half, "hot_path_us_per_event": hot / (2 * half) * 1e6,
                            "flush_seconds": flush, "events_per_s": 2 * half / flush,
                            "redis_ops": ops, "ops_per_s": ops / flush})
        best = max(results, key=lambda x: x["events_per_s"])
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                          for k, v in best.items()}))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
