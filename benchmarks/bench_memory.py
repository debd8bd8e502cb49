"""Resident memory per unit of the in-memory store (RSS from /proc/self/statm).

Usage: ``python benchmarks/bench_memory.py [--units 1000000] [--custom 1] [--slope]``. Each run
is a fresh process measuring RSS before the store exists and after ``units`` units were exposed
and got one value of every metric. The unit ids (14 ASCII characters) are owned by the store, so
their ``str`` objects and dict entries are part of the figure. ``--custom 1`` gives 3 metrics in
all (1 declared + the automatic ``latency_ms`` and ``error``); ``--custom 3`` gives 5.

What the store holds per unit, 3 metrics (Python 3.11): fixed columns 25 B (variant 1, epoch 4,
propensity 8, first exposure 8, exposures 4), 16 B per metric (x and y as float64), the unit
id ``str`` (63 B for 14 ASCII characters), its pointer in the row -> id list (8 B) and the dict
entry that maps it to its row (~31 B with the table's spare capacity): the ``traced`` figure,
the bytes Python's allocators hand out (``tracemalloc``), ~210 B.

What the process pays is more, and depends on the C allocator. glibc's ``malloc`` raises its
mmap threshold each time a large block it had mapped is freed (up to 32 MiB): from then on, the
growing columns (1-16 MB each at 1-2M units) live in the main heap, where a block that cannot
grow in place is copied and leaves a hole. With glibc's defaults the RSS slope was 246-275 B
per added unit (3 metrics) for the same data structures, depending only on the process's layout
(the checkout's path, the build); with a fixed threshold (``MALLOC_MMAP_THRESHOLD_``, any value:
setting it turns the adjustment off) or jemalloc it is 214-220 (docs/performance.md,
thirteenth pass). ``--slope`` measures every case it can run: two fresh processes each,
``--units`` and twice as many, and the bytes per added unit between them (the offset of what
the imports freed and the store reuses cancels); ``traced`` runs once, with ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# the allocator cases of --slope: name -> environment added to the child processes
FIXED_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20)}  # glibc: mmap from 4 MiB, fixed
JEMALLOC = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2",
            "/usr/lib64/libjemalloc.so.2")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def allocator_cases() -> dict[str, dict[str, str]]:
    """The C allocators ``--slope`` compares: glibc as configured, glibc with a fixed mmap
    threshold, and jemalloc when its library is installed (``LD_PRELOAD``)."""
    cases = {"glibc defaults": {}, "glibc, fixed mmap threshold (4 MiB)": FIXED_THRESHOLD}
    found = next((lib for lib in JEMALLOC if Path(lib).exists()), None)
    if found is not None:
        cases["jemalloc"] = {"LD_PRELOAD": found}
    return cases


def child(units: int, custom: int, env: dict[str, str], traced: bool = False) -> dict:
    """One fresh process's measurement (``main`` without ``--slope``)."""
    return json.loads(subprocess.run(
        [sys.executable, __file__, "--units", str(units), "--custom", str(custom),
         *(["--traced"] if traced else [])],
        capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--custom", type=int, default=1, help="declared metrics (+2 automatic)")
    parser.add_argument("--slope", action="store_true", help="bytes per unit between --units "
                        "and twice as many units (two fresh processes): no import offset")
    parser.add_argument("--traced", action="store_true", help="also count the bytes "
                        "Python's allocators hold for the store (tracemalloc: slower fill)")
    args = parser.parse_args()
    if args.slope:
        out: dict = {"units": [args.units, 2 * args.units], "metrics": 2 + args.custom}
        for name, env in allocator_cases().items():
            runs = [child(n, args.custom, env) for n in (args.units, 2 * args.units)]
            grown = (runs[1]["rss_after_mb"] - runs[0]["rss_after_mb"]) * 2**20
            out[name] = {"bytes_per_unit_at_each": [r["bytes_per_unit"] for r in runs],
                         "bytes_per_added_unit": round(grown / args.units, 1)}
        out["traced"] = child(args.units, args.custom, {}, traced=True)["traced_per_unit"]
        print(json.dumps(out))
        return

    from modelrouter.config import RouterConfig
    from modelrouter.store.memory import MemoryStore

    config = RouterConfig(metrics={f"m{i}": "continuous" for i in range(args.custom)},
                          max_pending=1000)
    gc.collect()
    if args.traced:
        tracemalloc.start()
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
    held = tracemalloc.get_traced_memory()[0] if args.traced else 0
    tracemalloc.stop()
    out = {"units": args.units, "metrics": len(store.metric_names),
           "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
           "bytes_per_unit": round((after - before) / args.units, 1),
           "unit_id_str_bytes": sys.getsizeof("user-000000000"),
           "fill_seconds": round(elapsed, 2)}
    if args.traced:  # the store's own allocations (its ids included), no allocator overhead
        out["traced_per_unit"] = round(held / args.units, 1)
    snap_start = time.perf_counter()
    store.snapshot()
    out["snapshot_seconds"] = round(time.perf_counter() - snap_start, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
