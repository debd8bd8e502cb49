"""Stopping time of the always-valid test with and without CUPED (issue 16, "Must hold": an
adjusted always-valid test stops earlier on average than the unadjusted one, at no lower power).

Cells: store memory, mode ab, variants 2, level user, life fresh, input valid.

Each run (tests/analysis/_cuped_sim.py) routes units through a real Experiment with a true
effect in the treatment; every unit's covariate (correlation 0.6 with the outcome) is recorded
before its exposure. Each metric exists twice on the same values: adjusted (``y``, ``c``: they
declare the covariate) and unadjusted (``y_raw``, ``c_raw``: no covariate), so the two tests
see exactly the same units. One look is recorded at the first reading (it freezes the plan's
horizon, hence the default mixing variance, the same for both since the horizon comes from the
control's unadjusted spread), then ``always_valid()`` is read every 200 units, as a dashboard
would; a test stops at its first rejection. ``stop`` is the number of units then (the maximum
when it never rejects: the mean is the expected sample size with stopping at the maximum);
power is the share of runs that rejected by the maximum.

The assertions, on paired differences (same runs): the adjusted mean stopping units are
smaller than the unadjusted ones by more than 2 MC SE of the paired difference, and the
adjusted power is not lower than the unadjusted by more than 2 MC SE of the paired
difference.

Measured (seeded; units in both arms; MC SE in brackets):

- 1,000 runs of up to 4,000 units, effect 0.1 (slow): continuous ``y``: mean stop 2,341 (35)
  adjusted vs 3,006 (34) unadjusted, paired difference -665 (29); median 2,200 vs 3,400;
  power 0.858 (0.011) vs 0.608 (0.015). Binary ``c`` (latent effect 0.1 on a 30% rate): mean
  3,045 (34) vs 3,464 (28), difference -419 (29); median 3,600 vs 4,000; power 0.592 (0.016)
  vs 0.373 (0.015).
- 30 runs of up to 2,000 units, effect 0.2 (default): ``y`` 793 vs 1,200 (difference -407,
  MC SE 83), power 1.00 vs 0.90; ``c`` 1,053 vs 1,433 (-380, MC SE 73), power 0.97 vs 0.83.
  Before the fix of the sequential tests' standard error (commit 4aa9951: they used the
  unadjusted one) this run gave ``c`` -47 (MC SE 81) and failed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.analysis._cuped_sim import Run, simulate

EVERY = 200


def _measure(runs: int, n: int, effect: float, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    res: list[Run] = [simulate(rng, r, n=n, looks=5, rho=0.6, effect=effect, raw=True,
                               every=EVERY) for r in range(runs)]
    assert all(r.adjusted["y"] and r.adjusted["c"] for r in res)
    assert not any(r.adjusted["y_raw"] or r.adjusted["c_raw"] for r in res)
    out = {}
    for m in ("y", "c"):
        adj = np.array([r.stop[m] for r in res], dtype=float)
        raw = np.array([r.stop[f"{m}_raw"] for r in res], dtype=float)
        p_adj = np.array([r.always_valid[m] for r in res], dtype=float)
        p_raw = np.array([r.always_valid[f"{m}_raw"] for r in res], dtype=float)
        d, dp = adj - raw, p_adj - p_raw
        out[m] = {
            "runs": runs, "mean_adj": adj.mean(), "mean_raw": raw.mean(),
            "se_adj": adj.std(ddof=1) / math.sqrt(runs),
            "se_raw": raw.std(ddof=1) / math.sqrt(runs),
            "median_adj": float(np.median(adj)), "median_raw": float(np.median(raw)),
            "diff": d.mean(), "se_diff": d.std(ddof=1) / math.sqrt(runs),
            "power_adj": p_adj.mean(), "power_raw": p_raw.mean(),
            "se_power_adj": math.sqrt(p_adj.mean() * (1 - p_adj.mean()) / runs),
            "se_power_raw": math.sqrt(p_raw.mean() * (1 - p_raw.mean()) / runs),
            "power_diff": dp.mean(), "se_power_diff": dp.std(ddof=1) / math.sqrt(runs)}
    return out


def _check(got: dict[str, dict[str, float]]) -> None:
    for m, g in got.items():
        assert g["diff"] < -2 * g["se_diff"], (m, g)  # stops earlier on average
        assert g["power_diff"] >= -2 * max(g["se_power_diff"], 1e-9), (m, g)  # not less power


def test_adjusted_always_valid_stops_earlier() -> None:
    """30 runs of up to 2,000 units, effect 0.2 (latent for the binary metric)."""
    _check(_measure(30, 2000, 0.2, seed=162))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 6 minutes on a loaded 2-core machine
def test_adjusted_always_valid_stops_earlier_slow() -> None:
    """1,000 runs of up to 4,000 units, effect 0.1."""
    got = _measure(1000, 4000, 0.1, seed=1620)
    for m, g in got.items():
        print(m, {k: round(v, 4) for k, v in g.items()})
    _check(got)
