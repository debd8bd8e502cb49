"""Boundary computation time and A/A false-positive rates, printed as markdown tables.

Run: ``python benchmarks/bench_sequential.py [--runs 20000] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np

from modelrouter.stats import mixing_variance, msprt_pvalues, spending_boundaries


def timing_table(rounds: int) -> str:
    rows = ["| looks | median | min .. max |", "|---:|---:|---:|"]
    for k in (5, 10, 20):
        rates = np.arange(1, k + 1) / k
        spending_boundaries(rates)  # warm-up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            spending_boundaries(rates)
            times.append((time.perf_counter() - start) * 1e3)
        rows.append(f"| {k} | {statistics.median(times):.1f} ms | "
                    f"{min(times):.1f} .. {max(times):.1f} ms |")
    return "\n".join(rows)


def aa_table(runs: int, seed: int = 2024, p: float = 0.05, units: int = 10_000,
             batch: int = 100) -> str:
    """A/A runs of a binary metric, 50/50 split, ``units`` in total, checked in several ways."""
    rng = np.random.default_rng(seed)
    per, looks = batch // 2, units // batch
    n = per * np.arange(1, looks + 1)
    xa = rng.binomial(per, p, (runs, looks)).cumsum(axis=1)
    xb = rng.binomial(per, p, (runs, looks)).cumsum(axis=1)
    pa, pb = xa / n, xb / n
    pooled = (xa + xb) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    z = np.abs(np.divide(pb - pa, se, out=np.zeros(se.shape), where=se > 0))

    five = np.linspace(looks / 5, looks, 5).astype(int) - 1  # 5 equally spaced looks
    rates = (five + 1) / looks
    of = spending_boundaries(rates).z
    pocock = spending_boundaries(rates, spending="pocock").z
    var = (pa * (1 - pa) + pb * (1 - pb)) / n
    tau2 = mixing_variance(horizon_variance=2 * p * (1 - p) / n[-1])
    msprt = np.array([msprt_pvalues(pb[i] - pa[i], var[i], tau2)[-1] <= 0.05
                      for i in range(runs)])

    cases = [
        ("Fixed horizon: one z-test at the end", 1, z[:, -1] >= 1.959964),
        ("Naive peeking: z-test at 5 looks, 1.96 each", 5, np.any(z[:, five] >= 1.959964, 1)),
        ("O'Brien-Fleming spending boundaries (exact)", 5, np.any(z[:, five] >= of, 1)),
        ("Pocock spending boundaries (exact)", 5, np.any(z[:, five] >= pocock, 1)),
        (f"Naive peeking after every {batch} units", looks, np.any(z >= 1.959964, 1)),
        (f"Always-valid mSPRT after every {batch} units", looks, msprt),
    ]
    rows = ["| procedure (alpha = 0.05) | looks | false-positive rate | MC s.e. |",
            "|---|---:|---:|---:|"]
    for name, k, hit in cases:
        rate = float(np.mean(hit))
        rows.append(f"| {name} | {k} | {rate:.2%} | {math.sqrt(rate * (1 - rate) / runs):.2%} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000, help="A/A simulations")
    parser.add_argument("--rounds", type=int, default=30, help="timing repetitions")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}\n")
    print("### Time to compute Lan-DeMets O'Brien-Fleming boundaries (equal spacing)\n")
    print(timing_table(args.rounds))
    print(f"\n### A/A false positives: binary metric p = 0.05, 10,000 units split 50/50, "
          f"{args.runs:,} simulated experiments\n")
    print(aa_table(args.runs))


if __name__ == "__main__":
    main()
