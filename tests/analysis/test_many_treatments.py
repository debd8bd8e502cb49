"""Several treatments against one control: each comparison at alpha / K (Bonferroni), one
verdict per treatment and an overall recommendation; the family-wise false-positive rate in
A/A stays at most alpha (measured over simulated group-sequential experiments)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from modelrouter import RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.analysis.sequential import make_look
from modelrouter.exceptions import AnalysisError
from modelrouter.web.messages import jsonable
from tests.analysis._sim import snapshot

VARIANTS = ("control", "b", "c", "d")
WEIGHTS = (0.25, 0.25, 0.25, 0.25)
CONFIG = RouterConfig(metrics={"click": "binary"}, primary="click",
                      plan={"max_units": 1000, "looks": 5},
                      guardrails={"latency_ms": None, "error": None})
LOOKS = 5
N = 4 * 1000  # every comparison reaches its planned maximum at the last look


def _analysis(variant: np.ndarray, click: np.ndarray, config: RouterConfig = CONFIG
              ) -> Analysis:
    return snapshot(config, variant, {}, {"click": click}, variants=VARIANTS, weights=WEIGHTS)


def _experiment(rng: np.random.Generator, rates: tuple[float, ...],
                config: RouterConfig = CONFIG) -> Analysis:
    """A group-sequential experiment: LOOKS official looks of every treatment recorded (with
    the production make_look), then the analysis at the planned maximum."""
    variant = rng.integers(0, len(VARIANTS), N)
    click = (rng.random(N) < np.asarray(rates)[variant]).astype(float)
    looks: tuple = ()
    for k in range(1, LOOKS):
        m = N * k // LOOKS
        a = _analysis(variant[:m], click[:m], config)
        a.snapshot = dataclasses.replace(a.snapshot, looks=looks)
        looks += tuple(make_look(a.data, "click", t, float(k)) for t in VARIANTS[1:])
    a = _analysis(variant, click, config)
    a.snapshot = dataclasses.replace(a.snapshot, looks=looks)
    return a


def _aa_rate(runs: int, seed: int) -> tuple[float, float, float]:
    """(P(any treatment declared better), P(any treatment significant either way), MC s.e. of
    the first) over ``runs`` A/A experiments with 3 treatments."""
    rng = np.random.default_rng(seed)
    better = either = 0
    for _ in range(runs):
        v = _experiment(rng, (0.2, 0.2, 0.2, 0.2)).verdict()
        assert v.comparisons == 3 and set(v.per_variant) == set(VARIANTS[1:])
        dirs = [p.direction for p in v.per_variant.values()
                if p.decision in ("ship", "harmful", "keep_testing")]
        better += "better" in dirs
        either += any(d is not None for d in dirs)
    rate = better / runs
    return rate, either / runs, math.sqrt(0.05 * 0.95 / runs)


def test_three_treatments_aa_family_wise_rate() -> None:
    # 300 A/A experiments, 3 treatments, 5 looks (O'Brien-Fleming, two-sided alpha 0.05 split
    # into 0.05/3 per comparison): P(any treatment declared better) <= alpha + 2 MC s.e.
    # (s.e. of a 5% rate over 300 runs: 0.0126)
    rate, either, se = _aa_rate(300, 20261202)
    assert rate <= 0.05 + 2 * se, (rate, se)
    assert either <= 0.05 + 2 * se, (either, se)


@pytest.mark.slow
def test_three_treatments_aa_family_wise_rate_at_scale() -> None:
    # 2,000 runs: MC s.e. of a 5% rate 0.0049
    rate, either, se = _aa_rate(2000, 7)
    assert rate <= 0.05 + 2 * se, (rate, se)
    assert either <= 0.05 + 2 * se, (either, se)


def test_one_real_winner_among_three_is_named() -> None:
    rng = np.random.default_rng(3)
    v = _experiment(rng, (0.2, 0.2, 0.27, 0.2)).verdict()
    assert v.decision == "ship" and v.recommended == "c" and v.variant == "c", v
    assert v.per_variant["c"].decision == "ship"
    assert all(v.per_variant[t].decision in ("no_effect", "keep_testing") for t in ("b", "d"))
    assert v.alpha_per_comparison == pytest.approx(0.05 / 3)
    assert "recommendation: ship c" in v.reasons[-1]
    d = json.loads(json.dumps(jsonable(v.to_dict()), allow_nan=False))
    assert d["recommended"] == "c" and set(d["per_variant"]) == {"b", "c", "d"}
    assert d["per_variant"]["c"]["decision"] == "ship"


def test_the_best_of_two_winners_is_recommended() -> None:
    # seed 7: b crossed earlier (with a larger estimate at its crossing look than c's), but c
    # has the better estimate from all data: c is recommended
    rng = np.random.default_rng(7)
    v = _experiment(rng, (0.2, 0.28, 0.34, 0.2)).verdict()
    assert v.per_variant["b"].decided_at_look < v.per_variant["c"].decided_at_look
    assert v.per_variant["b"].decision == v.per_variant["c"].decision == "ship"
    assert v.recommended == "c" and "best estimate" in v.reasons[-1]


def test_every_treatment_worse_is_harmful_and_undecided_keeps_testing() -> None:
    rng = np.random.default_rng(5)
    assert _experiment(rng, (0.3, 0.2, 0.2, 0.2)).verdict().decision == "harmful"
    variant = rng.integers(0, 4, 400)
    early = _analysis(variant, (rng.random(400) < 0.2).astype(float)).verdict()
    assert early.decision == "keep_testing" and early.recommended is None
    assert len(early.per_variant) == 3


def test_a_single_treatment_is_decided_at_the_split_alpha() -> None:
    rng = np.random.default_rng(6)
    a = _experiment(rng, (0.2, 0.2, 0.27, 0.2))
    v = a.verdict("c")
    assert v.per_variant == {} and v.variant == "c" and v.comparisons == 3
    assert v.alpha_per_comparison == pytest.approx(0.05 / 3)
    assert not v.notes and "Bonferroni" in v.reasons[-1]
    seq = a.sequential("click", "c", alpha=v.alpha_per_comparison)
    assert seq.decision == v.sequential.decision
    assert seq.test is not None and seq.test.design.alpha == pytest.approx(0.05 / 3)


def test_sequential_without_variant_points_to_the_per_variant_call() -> None:
    rng = np.random.default_rng(8)
    a = _experiment(rng, (0.2,) * 4)
    for call in (a.sequential, a.always_valid):
        with pytest.raises(AnalysisError, match=r"variant=\.\.\.\).*verdict\(\)"):
            call()
    av = a.always_valid("click", "b", alpha=0.05 / 3)
    assert av.alpha == pytest.approx(0.05 / 3)


def test_report_shows_the_primary_metric_of_every_treatment() -> None:
    rng = np.random.default_rng(9)
    text = _experiment(rng, (0.2, 0.2, 0.27, 0.2)).report()
    for t in ("b", "c", "d"):
        assert f"Primary metric: {t} (" in text, t
        assert f"click: {t} vs control" in text
    assert "recommendation: ship c" in text
