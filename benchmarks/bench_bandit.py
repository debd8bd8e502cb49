"""Bandit numerics benchmark: refresh, choose, update costs and a regret table.

Run: ``python benchmarks/bench_bandit.py [--rounds 15] [--runs 30]``. Prints markdown tables;
timings are medians over rounds with min..max. MABWiser's ThompsonSampling joins the regret
table when ``mabwiser`` is importable (optional benchmark dependency).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from modelrouter.bandit import (
    BetaBernoulli,
    NormalInverseGamma,
    ThompsonAllocator,
    simulate_bernoulli,
)

RATES = [0.031, 0.038]
N_REQUESTS = 10_000


def _timeit(fn: Callable[[], object], number: int, rounds: int) -> tuple[float, float, float]:
    """Seconds per call: (median, min, max) over rounds of ``number`` calls."""
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - start) / number)
    return statistics.median(per_call), min(per_call), max(per_call)


def _fmt(t: tuple[float, float, float], unit: str) -> str:
    scale = {"ms": 1e3, "us": 1e6}[unit]
    med, lo, hi = (x * scale for x in t)
    return f"{med:.3g} {unit} | {lo:.3g}..{hi:.3g}"


def _beta_posterior(k: int, seed: int = 0) -> BetaBernoulli:
    """A posterior as it looks mid-experiment: ~1,000 rewards per arm at 3-4% rates."""
    rng = np.random.default_rng(seed)
    post = BetaBernoulli(k)
    post.successes[:] = rng.integers(25, 45, k)
    post.failures[:] = 1000 - post.successes
    return post


def timing_table(rounds: int) -> list[str]:
    rows = ["| operation | arms | median | min..max |", "|---|---|---|---|"]

    def row(name: str, k: int, fn: Callable[[], object], number: int, unit: str) -> None:
        rows.append(f"| {name} | {k} | {_fmt(_timeit(fn, number, rounds), unit)} |")

    uniforms = iter(np.random.default_rng(3).random(10_000_000).tolist())
    for k in (2, 10):
        for method in ("quadrature", "mc"):
            alloc = ThompsonAllocator(_beta_posterior(k), method=method, seed=1)  # type: ignore[arg-type]
            row(f"refresh ({method}, Beta)", k, alloc.refresh, 20, "ms")
        nig = NormalInverseGamma(k, mu0=1.0)
        nig.update_batch(np.arange(10 * k) % k, np.random.default_rng(2).normal(1.0, 1.0, 10 * k))
        row("refresh (quadrature, NIG)", k, ThompsonAllocator(nig, seed=1).refresh, 20, "ms")
        top_two = ThompsonAllocator(_beta_posterior(k), policy="top-two", seed=1)
        row("refresh (top-two, Beta)", k, top_two.refresh, 20, "ms")
        alloc = ThompsonAllocator(_beta_posterior(k), seed=1)
        row("allocator.choose(u)", k, lambda a=alloc: a.choose(next(uniforms)), 20_000, "us")
        weights = alloc.weights
        row("weights.choose(u)", k, lambda w=weights: w.choose(next(uniforms)), 20_000, "us")
        row("next(uniforms) alone (loop overhead)", k, lambda: next(uniforms), 20_000, "us")
        per_request = ThompsonAllocator(_beta_posterior(k), policy="thompson-per-request", seed=1)
        row("draw() per-request policy", k, per_request.draw, 5_000, "us")
        beta = BetaBernoulli(k)
        row("BetaBernoulli.update", k, lambda b=beta: b.update(1, 1), 20_000, "us")
        gauss = NormalInverseGamma(k)
        row("NormalInverseGamma.update", k, lambda g=gauss: g.update(1, 0.5), 20_000, "us")
        counting = ThompsonAllocator(BetaBernoulli(k), seed=1)
        row("allocator.update", k, lambda a=counting: a.update(0, 0), 20_000, "us")
    return rows


def _mabwiser_run(seed: int, refresh_every: int = 100) -> tuple[float, float] | None:
    """MABWiser ThompsonSampling, batched the same way: per-request draws, update every N."""
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    # the same potential outcomes as simulate_bernoulli(seed=seed): first draw of its stream
    traffic = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    rewards = traffic.random((N_REQUESTS, 2)) < np.asarray(RATES)
    rng = np.random.default_rng(seed + 10_000)
    mab = MAB(arms=[0, 1], learning_policy=LearningPolicy.ThompsonSampling(), seed=seed)
    arms = np.empty(N_REQUESTS, dtype=int)
    first = rng.integers(0, 2, refresh_every)  # uniform first batch, as the prior gives
    arms[:refresh_every] = first
    mab.fit(decisions=first.tolist(), rewards=rewards[np.arange(refresh_every), first].tolist())
    for start in range(refresh_every, N_REQUESTS, refresh_every):
        stop = min(start + refresh_every, N_REQUESTS)
        batch = np.array([mab.predict() for _ in range(stop - start)])
        arms[start:stop] = batch
        mab.partial_fit(decisions=batch.tolist(),
                        rewards=rewards[np.arange(start, stop), batch].astype(int).tolist())
    rates = np.asarray(RATES)
    regret = float(np.sum(rates.max() - rates[arms]))
    return float(np.mean(arms == 1)), regret


def regret_table(runs: int) -> list[str]:
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in range(runs):
        fixed = simulate_bernoulli(RATES, N_REQUESTS, fixed_weights=[0.5, 0.5], seed=seed)
        results.setdefault("fixed 50/50", []).append((fixed.share_best, fixed.regret))
        for policy in ("thompson", "thompson-per-request", "top-two"):
            r = simulate_bernoulli(RATES, N_REQUESTS, policy=policy, refresh_every=100,
                                   min_share=0.01, seed=seed)
            results.setdefault(f"modelrouter {policy}", []).append((r.share_best, r.regret))
        mab = _mabwiser_run(seed)
        if mab is not None:
            results.setdefault("MABWiser ThompsonSampling", []).append(mab)
    base = statistics.median(r for _, r in results["fixed 50/50"])
    rows = [
        f"Seeds' scenario: rates {RATES}, {N_REQUESTS:,} requests, refresh every 100 rewards, "
        f"1% floor, {runs} seeded runs (same traffic per seed for every policy).",
        "",
        "| policy | share to best (median, min..max) | regret (median, min..max) | "
        "regret / fixed |",
        "|---|---|---|---|",
    ]
    for name, rs in results.items():
        shares = [s for s, _ in rs]
        regrets = [r for _, r in rs]
        rows.append(
            f"| {name} | {statistics.median(shares):.3f} ({min(shares):.3f}..{max(shares):.3f}) "
            f"| {statistics.median(regrets):.1f} ({min(regrets):.1f}..{max(regrets):.1f}) "
            f"| {statistics.median(regrets) / base:.2f} |"
        )
    if "MABWiser ThompsonSampling" not in results:
        rows.append("| MABWiser ThompsonSampling | skipped: mabwiser not installed | | |")
    rows += ["", "Top-two with 2 arms and beta = 0.5 is exactly 50/50 by construction (the "
             "challenger is always the other arm): it identifies the best arm, it does not "
             "minimise regret."]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds")
    parser.add_argument("--runs", type=int, default=30, help="simulated runs for regret")
    args = parser.parse_args()
    print(f"# bench_bandit ({platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()})\n")
    print("## Costs\n")
    print("\n".join(timing_table(args.rounds)))
    print("\n## Regret\n")
    print("\n".join(regret_table(args.runs)))


if __name__ == "__main__":
    main()
