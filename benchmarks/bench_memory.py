"""Resident memory per unit of the in-memory store (RSS from /proc/self/statm).

Usage: ``python benchmarks/bench_memory.py [--units 1000000] [--custom 1] [--slope]``. Each run
is a fresh process measuring RSS before the store exists and after ``units`` units were exposed
and got one value of every metric. The unit ids (14 ASCII characters) are owned by the store, so
their ``str`` objects and dict entries are part of the figure. ``--custom 1`` gives 3 metrics in
all (1 declared + the automatic ``latency_ms`` and ``error``); ``--custom 3`` gives 5.

Measured (Python 3.11, 1M units): 229 bytes/unit with 3 metrics, 277 with 5. Where it goes:
fixed columns 25 B (variant 1, epoch 4, propensity 8, first exposure 8, exposures 4), 16 B
per metric (x and y as float64), the unit id ``str`` (63 B for 14 ASCII characters) and the
dict entry that maps it to its row (~70-90 B with the table's spare capacity).

The figure is an RSS difference, so memory the imports freed and the store reuses hides in it:
one checkout measured 237-264 bytes/unit at 1M units from run to run and build to build (issue
17, fourth pass). The slope between ``--units 1000000`` and ``--units 2000000`` cancels that
offset: 230 bytes per added unit with 3 metrics there. ``--slope`` measures that: two fresh
processes, ``--units`` and twice as many, and the bytes per unit between them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--custom", type=int, default=1, help="declared metrics (+2 automatic)")
    parser.add_argument("--slope", action="store_true", help="bytes per unit between --units "
                        "and twice as many units (two fresh processes): no import offset")
    args = parser.parse_args()
    if args.slope:
        runs = [json.loads(subprocess.run(
            [sys.executable, __file__, "--units", str(n), "--custom", str(args.custom)],
            capture_output=True, text=True, check=True).stdout)
            for n in (args.units, 2 * args.units)]
        grown = (runs[1]["rss_after_mb"] - runs[0]["rss_after_mb"]) * 2**20
        print(json.dumps({"units": [r["units"] for r in runs], "metrics": runs[0]["metrics"],
                          "bytes_per_unit_at_each": [r["bytes_per_unit"] for r in runs],
                          "bytes_per_added_unit": round(grown / args.units, 1)}))
        return

    from modelrouter.config import RouterConfig
    from modelrouter.store.memory import MemoryStore

    config = RouterConfig(metrics={f"m{i}": "continuous" for i in range(args.custom)},
                          max_pending=1000)
    gc.collect()
    before = rss_bytes()
    store = MemoryStore(("a", "b"), config.metrics, max_pending=config.max_pending)
    metrics = range(len(store.metric_names))
    start = time.perf_counter()
    for i in range(args.units):  # ids built here, so the store is their only owner (counted)
        seq = store.expose(f"user-{i:09d}", i & 1, 0.5, 0)
        for m in metrics:
            store.record_seq(seq, m, 1.0)
    elapsed = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    out = {"units": args.units, "metrics": len(store.metric_names),
           "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
           "bytes_per_unit": round((after - before) / args.units, 1),
           "unit_id_str_bytes": sys.getsizeof("user-000000000"),
           "fill_seconds": round(elapsed, 2)}
    snap_start = time.perf_counter()
    store.snapshot()
    out["snapshot_seconds"] = round(time.perf_counter() - snap_start, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
