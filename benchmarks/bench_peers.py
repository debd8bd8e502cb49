"""Per-decision cost against peers, same run: GrowthBook (assignment), MABWiser (Thompson).

    pip install growthbook mabwiser   # the `bench` extra
    python benchmarks/bench_peers.py [--rounds 7] [--n 20000]

Rows: GrowthBook's Python SDK assigning a (new) user to a 2-way experiment; modelrouter's hash
assignment alone and its full routing step (assignment + exposure counted in the store);
MABWiser's ThompsonSampling ``predict`` (2 and 10 arms) against modelrouter's bandit decision;
MABWiser ``partial_fit`` of one observation against modelrouter's feedback update (posterior
and statistics). Medians over interleaved rounds with min..max; the targets from the issue
are printed as pass/miss.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from _harness import fmt, interleaved, table

from modelrouter import Experiment, RouterConfig
from modelrouter.routing.assignment import Allocation, Bucketer


def per_call(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    n = args.n
    users = [f"user-{i}" for i in range(n)]
    cands: dict[str, Callable[[], float]] = {}

    try:
        from growthbook import Experiment as GBExperiment
        from growthbook import GrowthBook

        gb = GrowthBook(attributes={"id": "x"})
        gb_exp = GBExperiment(key="exp-2026-11", variations=[0, 1])

        def gb_assign(i: int) -> object:
            gb.set_attributes({"id": users[i]})
            return gb.run(gb_exp).variationId

        cands["GrowthBook SDK: assign a user"] = lambda: per_call(gb_assign, n)
    except ImportError:
        print("growthbook not installed: skipping its row")

    bucketer = Bucketer("exp-2026-11")
    alloc = Allocation(["control", "treatment"], {"control": 0.5, "treatment": 0.5})
    cands["modelrouter: hash assignment"] = lambda: per_call(
        lambda i: alloc.choose(bucketer(users[i])), n)
    exp = Experiment({"control": 0, "treatment": 1}, RouterConfig(metrics={"click": "binary"}))
    cands["modelrouter: assign + count exposure"] = lambda: per_call(
        lambda i: exp.assign(users[i]), n)

    bandit_rows: list[tuple[str, str, str]] = []
    for k in (2, 10):
        arms = [f"arm{j}" for j in range(k)]
        bexp = Experiment({a: j for j, a in enumerate(arms)},
                          RouterConfig(mode="bandit", reward="click", level="request",
                                       metrics={"click": "binary"}, max_pending=n * 100))
        decisions = [bexp.assign(None) for _ in range(n)]
        cands[f"modelrouter bandit: decision ({k} arms)"] = (
            lambda bexp=bexp: per_call(lambda i: bexp.assign(None), n))
        cands[f"modelrouter bandit: feedback update ({k} arms)"] = (
            lambda bexp=bexp, decisions=decisions: per_call(
                lambda i: bexp.record(decisions[i], "click", i % 2), n))
        try:
            from mabwiser.mab import MAB, LearningPolicy

            mab = MAB(arms, LearningPolicy.ThompsonSampling(), seed=1)
            mab.fit(decisions=[arms[j % k] for j in range(200)],
                    rewards=[j % 2 for j in range(200)])
            m = max(1, n // 20)  # MABWiser is slow: fewer calls, same per-call measure
            cands[f"MABWiser TS: predict ({k} arms)"] = (
                lambda mab=mab, m=m: per_call(lambda i: mab.predict(), m))
            cands[f"MABWiser TS: partial_fit one ({k} arms)"] = (
                lambda mab=mab, m=m, arms=arms: per_call(
                    lambda i: mab.partial_fit([arms[i % len(arms)]], [i % 2]), m))
            bandit_rows.append((str(k), f"MABWiser TS: predict ({k} arms)",
                                f"MABWiser TS: partial_fit one ({k} arms)"))
        except ImportError:
            print("mabwiser not installed: skipping its rows")

    res = interleaved(cands, args.rounds)
    print(f"\nPer-call cost, {args.rounds} interleaved rounds, median (min..max):\n")
    print(table(["operation", "us / call"], [[name, fmt(v)] for name, v in res.items()]))
    med = {name: statistics.median(v) for name, v in res.items()}
    gb_name = "GrowthBook SDK: assign a user"
    if gb_name in med:
        ours = med["modelrouter: assign + count exposure"]
        print(f"\nassignment + exposure vs GrowthBook: {ours / med[gb_name]:.2f} of its cost "
              f"(target <= 0.5): {'pass' if ours <= 0.5 * med[gb_name] else 'MISS'}")
    for k, predict, fit in bandit_rows:
        ours_d = med[f"modelrouter bandit: decision ({k} arms)"]
        ours_u = med[f"modelrouter bandit: feedback update ({k} arms)"]
        print(f"{k} arms: decision {med[predict] / ours_d:.1f}x cheaper than MABWiser predict; "
              f"update {med[fit] / ours_u:.1f}x cheaper than partial_fit (target >= 20x): "
              f"{'pass' if med[fit] >= 20 * ours_u else 'MISS'}")


if __name__ == "__main__":
    main()
