"""A/A simulations through the router (issue 16, "Must hold"): the CUPED-adjusted fixed-horizon
``compare()``, group-sequential ``sequential()`` and always-valid ``always_valid()`` keep their
false-positive rate at alpha = 0.05 (bar: ``<= alpha + 2 MC SE``, MC SE
``sqrt(alpha (1 - alpha) / runs)``).

Cells: store memory, mode ab, variants 2 (and 3 or more for the fixed-horizon test), level user,
life fresh, input valid.

Each run (tests/analysis/_cuped_sim.py) routes units through a real Experiment, records each
unit's covariate (correlation 0.6 with the outcome) before its exposure, and reads the tests
the way a user does: ``record_look`` at each of the plan's looks (O'Brien-Fleming, 5 looks at
equal spacing, the last at the planned maximum), a rejection at any recorded look counting as a
rejection of the group-sequential test; ``always_valid()`` read right after each look, a
p-value <= alpha at any of them counting for the always-valid test; ``compare()`` once at the
end for the fixed horizon. Continuous metric ``y`` and binary metric ``c`` (rate 0.3), each
adjusted for its own covariate (every run checks that compare() says ``adjusted``).

Measured (seeded, so these are the numbers the tests see):

- 1,000 runs of 2,000 units (slow; MC SE of a rate near 0.05: 0.0069, bar 0.0638), false
  positive rate (its MC SE):

  ========================  ================  ===============
  test                      continuous ``y``  binary ``c``
  ========================  ================  ===============
  fixed horizon compare()   0.042 (0.0063)    0.057 (0.0073)
  sequential() (5 looks)    0.043 (0.0064)    0.056 (0.0073)
  always_valid() (5 reads)  0.005 (0.0022)    0.010 (0.0031)
  ========================  ================  ===============

- default: 40 runs of 1,000 units, 4 looks, the two metrics pooled (80 independent A/A
  tests per method; MC SE 0.024, bar 0.099; repeated peeking at 4 looks without correction
  would give about 0.13): fixed 0.050, sequential 0.0375, always-valid 0.0125.

Three variants (fixed horizon, each treatment against the control on those two arms, 1,500
units): 1,000 runs (slow), each metric and treatment on its own: ``y`` b 0.057, c 0.040;
``c`` b 0.052, c 0.059 (MC SE 0.006-0.0075, bar 0.0638); 60 runs (default), the two metrics
pooled per treatment (120 comparisons each, bar 0.090).

A plan sized for the adjusted test (``plan={"mde": 0.1, "sd": 1, "rho": 0.6}``: horizon and
mixing variance from the adjusted variance, 2,060 units in all, 5 looks ending there), the
primary ``y``: 1,000 runs (slow): fixed 0.057 (0.0073), sequential 0.058 (0.0074), always-valid
0.011 (0.0033); default: mde 0.2 (516 units), 4 looks, 50 runs: sequential 0.06, always-valid 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.analysis._cuped_sim import ALPHA, Run, rate, simulate


def _bar(trials: int) -> float:
    return ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / trials)


def _runs(runs: int, n: int, looks: int, seed: int, variants: tuple[str, ...] = ("a", "b"),
          plan: dict[str, object] | None = None) -> list[Run]:
    rng = np.random.default_rng(seed)
    out = [simulate(rng, r, n=n, looks=looks, rho=0.6, variants=variants, plan=plan)
           for r in range(runs)]
    assert all(all(r.adjusted.values()) for r in out)  # every comparison was adjusted
    return out


def _rates(res: list[Run], metrics: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    return {"fixed": rate([r.fixed[m][0] for r in res for m in metrics]),
            "sequential": rate([r.sequential[m] for r in res for m in metrics]),
            "always_valid": rate([r.always_valid[m] for r in res for m in metrics])}


def test_aa_false_positives_adjusted_tests() -> None:
    """40 runs x 2 metrics (80 A/A tests per method; bar 0.099)."""
    res = _runs(40, 1000, 4, seed=160)
    got = _rates(res, ("y", "c"))
    for method, (p, _se) in got.items():
        assert p <= _bar(80), (method, got)


def test_aa_false_positives_three_variants() -> None:
    """60 runs x 2 metrics per treatment (120 fixed-horizon A/A comparisons; bar 0.090)."""
    res = _runs(60, 1500, 1, seed=161, variants=("a", "b", "c"))
    for j in (0, 1):  # b vs a, c vs a (they share the control: each on its own)
        p, _se = rate([r.fixed[m][j] for r in res for m in ("y", "c")])
        assert p <= _bar(120), (j, p)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 4 minutes alone on 2 cores; more when they are shared
def test_aa_false_positives_slow() -> None:
    """1,000 runs of 2,000 units, 5 looks, each metric and method on its own (bar 0.0638)."""
    res = _runs(1000, 2000, 5, seed=1600)
    for m in ("y", "c"):
        got = _rates(res, (m,))
        print(m, {k: (round(p, 4), round(se, 4)) for k, (p, se) in got.items()})
        for method, (p, _se) in got.items():
            assert p <= _bar(1000), (m, method, got)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_aa_false_positives_three_variants_slow() -> None:
    """1,000 runs of 1,500 units, 3 variants: each metric and treatment on its own."""
    res = _runs(1000, 1500, 1, seed=1601, variants=("a", "b", "c"))
    for m in ("y", "c"):
        for j, v in enumerate(("b", "c")):
            p, se = rate([r.fixed[m][j] for r in res])
            print(m, v, "vs a", round(p, 4), round(se, 4))
            assert p <= _bar(1000), (m, v, p)


# the plan sized for the adjusted test (issue 16 part 3): mde 0.1 sd, rho 0.6 -> 2,060 units
# in all for 5 O'Brien-Fleming looks (1,158 saved), so looks every 412 units end at the maximum
PLAN_RHO: dict[str, object] = {"mde": 0.1, "sd": 1.0, "rho": 0.6}


def test_aa_false_positives_with_plan_rho() -> None:
    """The primary ``y`` under a plan with ``rho`` (horizon and mixing variance from the
    adjusted variance), mde 0.2 sd (516 units in all), 4 looks: 50 runs, sequential and
    always-valid (bar 0.112; 4 uncorrected looks would give about 0.13)."""
    res = _runs(50, 516, 4, seed=163, plan={**PLAN_RHO, "mde": 0.2})
    for method in ("sequential", "always_valid"):
        p, _se = rate([getattr(r, method)["y"] for r in res])
        assert p <= _bar(50), (method, p)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_aa_false_positives_with_plan_rho_slow() -> None:
    """1,000 runs of the plan sized with rho (bar 0.0638)."""
    res = _runs(1000, 2060, 5, seed=1603, plan=PLAN_RHO)
    got = {k: rate([getattr(r, k)["y"] if k != "fixed" else r.fixed["y"][0] for r in res])
           for k in ("fixed", "sequential", "always_valid")}
    print("plan rho", {k: (round(p, 4), round(se, 4)) for k, (p, se) in got.items()})
    for method, (p, _se) in got.items():
        assert p <= _bar(1000), (method, got)
