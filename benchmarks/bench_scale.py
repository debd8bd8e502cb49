"""Scale: record() throughput, analysis latency at 10k/100k/1M units.

    python benchmarks/bench_scale.py [--max-units 1000000] [--rounds 5]

Builds a user-level experiment with three metrics through the public API (assign, record),
then times ``analysis()`` (the snapshot under the lock) and ``compare()`` on it, medians over
rounds. Memory per unit is measured separately by benchmarks/bench_memory.py.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from _harness import table
from bench_middleware import record_cost_us

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis

METRICS = {"click": "binary", "revenue": "continuous",
           "dwell": {"kind": "continuous", "aggregate": "mean"}}


def build(n_units: int) -> Experiment:
    exp = Experiment({"control": 0, "treatment": 1}, RouterConfig(metrics=METRICS,
                                                                  max_pending=100_000))
    rng = random.Random(1)
    for i in range(n_units):
        d = exp.assign(f"user-{i}")
        if rng.random() < 0.1:
            exp.record(d, "click", 1)
            exp.record(d, "revenue", rng.expovariate(0.05))
        exp.record(d, "dwell", rng.gauss(30, 5))
    return exp


def record_rate(threads: int, per_thread: int) -> float:
    """record() events per second (totals checked exact by record_cost_us)."""
    return 1e6 / record_cost_us(threads * per_thread, threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-units", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in (10_000, 100_000, 1_000_000):
        if n > args.max_units:
            break
        exp = build(n)
        snap_ms, cmp_ms = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            a = Analysis.from_experiment(exp)
            t1 = time.perf_counter()
            a.compare("click")
            a.compare("revenue")
            a.compare("dwell")
            t2 = time.perf_counter()
            snap_ms.append((t1 - t0) * 1000)
            cmp_ms.append((t2 - t1) * 1000 / 3)
        total = [s + c for s, c in zip(snap_ms, cmp_ms)]
        rows.append([f"{n:,}", f"{statistics.median(snap_ms):.1f}",
                     f"{statistics.median(cmp_ms):.1f}", f"{statistics.median(total):.1f}",
                     f"{total[0]:.1f}"])
    print("Analysis latency, user-level experiment with 3 metrics (median of "
          f"{args.rounds}):\n")
    print(table(["units", "snapshot ms", "compare() ms per metric",
                 "analysis().compare() ms", "first analysis ms"], rows))
    print("\n(the first analysis after the store grew pays the page faults of fresh memory for "
          "its column copies; later ones reuse freed memory, as a dashboard or guardrail check "
          "does)")
    if rows and rows[-1][0] == "1,000,000":
        ok = float(rows[-1][3]) < 50
        print(f"\nanalysis().compare() at 1M units: {rows[-1][3]} ms (target < 50 ms): "
              f"{'pass' if ok else 'MISS'}")
    r1 = [record_rate(1, 200_000) for _ in range(3)]
    r8 = [record_rate(8, 25_000) for _ in range(3)]
    print("\nrecord() throughput (exact totals checked): "
          f"{statistics.median(r1):,.0f} events/s single-threaded, "
          f"{statistics.median(r8):,.0f} events/s with 8 threads")


if __name__ == "__main__":
    main()
