"""Throughput of the Redis flush path (events per second), against a real redis-server.

Usage: ``python benchmarks/bench_redis.py [--url redis://...] [--events 200000] [--units 50000]``.
Without ``--url`` a throw-away ``redis-server`` is started on a free port. An event is one
hot-path call: an exposure or one feedback value. The benchmark buffers ``events`` events
(half exposures of ``units`` units, half values), then times ``flush()``: draining the buffer,
building the idempotent Lua batches and executing them. It also times the hot path itself.

``--labels N`` times the shadow labels' hand-over between two stores instead: one push of N
labels for the other store's decisions (``push_labels``), then its pops until none is left
(``take_labels``), in microseconds per label (the owner has polled once, so labels go to its
hash, as they do after a worker's first flush).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
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
    parser.add_argument("--labels", type=int, default=0)
    args = parser.parse_args()
    proc, url = (None, args.url) if args.url else start_server()
    try:
        if args.labels:
            print(json.dumps(bench_labels(url, args.labels, args.rounds)))
            return
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


def bench_labels(url: str, n: int, rounds: int) -> dict[str, float]:
    """Medians over ``rounds`` of the push and take time per label (see the docstring)."""
    from modelrouter.config import RouterConfig
    from modelrouter.store.redis.store import RedisStore

    config = RouterConfig(metrics={"click": "binary"}, store=url)
    stores = [RedisStore(url, ("a", "b"), config.metrics, experiment="labels",
                         flush_seconds=3600.0) for _ in range(2)]
    owner = "0123abcd-"
    stores[0].take_labels(owner)  # the owner's first poll registers its hash
    push, take = [], []
    for r in range(rounds):
        items = [(owner, f"{owner}{r:x}-{i:x}", str(i)) for i in range(n)]
        t0 = time.perf_counter()
        stores[1].push_labels(items)
        t1 = time.perf_counter()
        got = 0
        while batch := stores[0].take_labels(owner):
            got += len(batch)
        t2 = time.perf_counter()
        if got != n:
            sys.exit(f"took {got} labels of {n}")
        push.append((t1 - t0) / n * 1e6)
        take.append((t2 - t1) / n * 1e6)
    for s in stores:
        s.close()
    return {"labels": n, "push_us_per_label": round(statistics.median(push), 2),
            "take_us_per_label": round(statistics.median(take), 2)}


if __name__ == "__main__":
    main()
