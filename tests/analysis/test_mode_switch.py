"""One analysis across A/B -> bandit -> A/B switches (issue 12 part 3), through the real
Experiment and the memory store.

The references are computed here, independently of the analysis code, from a per-request log
kept outside the store (arm, epoch, mode, propensity, values): per phase and arm a statsmodels
WLS fit with weights 1/propensity and HC0 errors (its coefficient is the Hajek mean, its HC0
variance the sandwich variance), or the ratio formula by numpy for per-event metrics, then the
phases combined with weights n_phase / n. The A/B phases are also checked against the plain
difference of means (numpy). Cells of the composition matrix: memory store; switched mode;
2 and 3 variants; user and request level; fresh.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm

from modelrouter import Analysis, AnalysisError, Experiment, RouterConfig

METRICS: dict[str, Any] = {"click": "binary", "revenue": "continuous",
                           "rating": {"kind": "continuous", "aggregate": "mean"}}


@dataclass
class Log:
    """One row per request, in time order."""

    arm: np.ndarray
    epoch: np.ndarray
    phase: np.ndarray
    p: np.ndarray
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]


def make(names: tuple[str, ...], level: str, seed: int, **config: Any) -> Experiment:
    config.setdefault("metrics", METRICS)
    config.setdefault("reward", "click")
    config.setdefault("mode", "ab")
    config.setdefault("refresh_seconds", None)
    config.setdefault("refresh_every", 50)
    config.setdefault("min_share", 0.1)
    config.setdefault("missing_reward", "omit")
    return Experiment({n: n for n in names}, RouterConfig(level=level, **config),
                      rng=random.Random(seed))


def run(exp: Experiment, phases: list[tuple[str, int]], seed: int,
        rate: Any = None, repeat: int = 1, segments: int = 0) -> Log:
    """Route each phase's requests in its mode (new unit per request at user level, each
    unit ``repeat`` times in a row), record click, revenue and 1-3 ratings per request.
    ``rate(phase, arm)``: the click probability."""
    rng = np.random.default_rng(seed)
    rate = rate or (lambda ph, arm: 0.2 + 0.05 * ph + 0.04 * arm)
    cols: dict[str, list[float]] = {k: [] for k in ("arm", "epoch", "phase", "p", "click",
                                                    "revenue", "rating_x", "rating_y")}
    t = 0
    for ph, (mode, n) in enumerate(phases):
        if exp.mode != mode:
            exp.configure(mode=mode)
        for _ in range(n):
            unit = f"s{seed}-u{t // repeat}"
            t += 1
            seg = (f"p{t % segments}",) if segments else ()
            d = exp.assign(unit if exp.store.unit_level else None, seg)
            arm = exp.names.index(d.variant)
            click = int(rng.random() < rate(ph, arm))
            revenue = 5.0 * click + float(rng.normal(0.3 * arm, 1.0))
            ratings = rng.normal(3.0 + 0.5 * arm, 1.0, size=int(rng.integers(1, 4)))
            exp.record(d, "click", click)
            exp.record(d, "revenue", revenue)
            for r in ratings:
                exp.record(d, "rating", float(r))
            if exp.bandit is not None:
                exp.bandit.wait_idle()
            for k, v in zip(cols, (arm, d.epoch, ph, d.propensity, click, revenue,
                                   ratings.sum(), ratings.size)):
                cols[k].append(v)
    a = {k: np.asarray(v) for k, v in cols.items()}
    ones = np.ones(a["arm"].size)
    return Log(a["arm"].astype(int), a["epoch"].astype(int), a["phase"].astype(int), a["p"],
               {"click": a["click"], "revenue": a["revenue"], "rating": a["rating_x"]},
               {"click": ones, "revenue": ones, "rating": a["rating_y"]})


def hajek(x: np.ndarray, y: np.ndarray, p: np.ndarray, ratio: bool) -> tuple[float, float]:
    """Mean and variance of one arm in one phase: statsmodels WLS (HC0) for plain means, the
    linearised ratio formula (numpy) for per-event means."""
    w = 1.0 / p
    if not ratio:
        fit = sm.WLS(x, np.ones((x.size, 1)), weights=w).fit(cov_type="HC0")
        return float(fit.params[0]), float(fit.cov_params()[0, 0])
    r = np.sum(w * x) / np.sum(w * y)
    return float(r), float(np.sum((w * (x - r * y)) ** 2) / np.sum(w * y) ** 2)


def reference(log: Log, metric: str, t: int, c: int) -> dict[str, Any]:
    """Phase-stratified difference, per-arm means and per-phase differences (see module)."""
    ratio = metric == "rating"
    x, y = log.x[metric], log.y[metric]
    n = log.arm.size
    out: dict[str, Any] = {"diff": 0.0, "var": 0.0, "mean": {t: 0.0, c: 0.0},
                           "arm_var": {t: 0.0, c: 0.0}, "phases": []}
    for ph in np.unique(log.phase):
        rows = log.phase == ph
        share = rows.sum() / n
        est = {}
        for a in (t, c):
            hit = rows & (log.arm == a)
            m, v = hajek(x[hit], y[hit], log.p[hit], ratio)
            est[a] = (m, v)
            out["mean"][a] += share * m
            out["arm_var"][a] += share ** 2 * v
        d, v = est[t][0] - est[c][0], est[t][1] + est[c][1]
        out["diff"] += share * d
        out["var"] += share ** 2 * v
        out["phases"].append((d, np.sqrt(v), share, int(rows.sum())))
    return out


PHASES = [("ab", 300), ("bandit", 400), ("ab", 300)]


@pytest.mark.parametrize("level", ["user", "request"])
@pytest.mark.parametrize("names", [("a", "b"), ("a", "b", "c")])
def test_combined_estimate_equals_the_independent_reference(level: str,
                                                            names: tuple[str, ...]) -> None:
    exp = make(names, level, seed=3)
    log = run(exp, PHASES, seed=3)
    analysis = Analysis.from_experiment(exp)
    for metric in METRICS:
        for t in range(1, len(names)):
            ref = reference(log, metric, t, 0)
            got = analysis.compare(metric, names[t])
            assert got.difference == pytest.approx(ref["diff"], rel=1e-9, abs=1e-12)
            assert got.std_err == pytest.approx(np.sqrt(ref["var"]), rel=1e-7)
            assert got.treatment.mean == pytest.approx(ref["mean"][t], rel=1e-9)
            assert got.control.mean == pytest.approx(ref["mean"][0], rel=1e-9)
            assert got.treatment.std_err == pytest.approx(np.sqrt(ref["arm_var"][t]), rel=1e-7)
            ci = got.confidence_interval()
            assert ci.low == pytest.approx(ref["diff"] - 1.959964 * np.sqrt(ref["var"]),
                                           rel=1e-5)
            # every phase on its own, with its share of the traffic
            assert len(got.phases) == 3
            for phase, (d, se, share, n) in zip(got.phases, ref["phases"]):
                assert phase.difference == pytest.approx(d, rel=1e-9, abs=1e-12)
                assert phase.std_err == pytest.approx(se, rel=1e-7)
                assert phase.weight == pytest.approx(share) and phase.n == n
            assert [p.mode for p in got.phases] == ["ab", "bandit", "ab"]
            # counts: every request of the two arms, in the summaries and the text
            for s, a in ((got.control, 0), (got.treatment, t)):
                assert s.units == int(np.sum(log.arm == a))
            assert got.phases[1].observed == "decisions"
            assert got.phases[0].observed == ("units" if level == "user" else "requests")
            assert f"{400:,} bandit decisions" in got.covers and f"{600:,} " in got.covers
    exp.bandit.close()


@pytest.mark.parametrize("level", ["user", "request"])
def test_ab_phases_are_the_plain_difference_of_means(level: str) -> None:
    exp = make(("a", "b"), level, seed=5, weights={"a": 0.7, "b": 0.3})
    log = run(exp, PHASES, seed=5)
    got = Analysis.from_experiment(exp).phases("revenue")
    for phase in (got[0], got[2]):
        rows = log.phase == phase.phase - 1
        xb = log.x["revenue"][rows & (log.arm == 1)]
        xa = log.x["revenue"][rows & (log.arm == 0)]
        assert phase.difference == pytest.approx(xb.mean() - xa.mean(), rel=1e-9)
        assert phase.control_mean == pytest.approx(xa.mean(), rel=1e-9)
        # the large-sample variance (n, not n - 1, in the denominators)
        se = np.sqrt(xa.var() / xa.size + xb.var() / xb.size)
        assert phase.std_err == pytest.approx(se, rel=1e-9)
        assert phase.estimator.startswith("difference of means")
    assert got[1].estimator.startswith("Hajek")
    exp.bandit.close()


@pytest.mark.parametrize("level", ["user", "request"])
def test_segment_filter_restricts_every_phase(level: str) -> None:
    exp = make(("a", "b"), level, seed=8, segments={"platform": "x-platform"})
    log = run(exp, PHASES, seed=8, segments=2)
    got = Analysis.from_experiment(exp).compare("revenue", segment={"platform": "p1"})
    keep = np.arange(log.arm.size) % 2 == 0  # request i was sent with "p{(i + 1) % 2}"
    sub = Log(log.arm[keep], log.epoch[keep], log.phase[keep], log.p[keep],
              {k: v[keep] for k, v in log.x.items()}, {k: v[keep] for k, v in log.y.items()})
    ref = reference(sub, "revenue", 1, 0)
    assert got.difference == pytest.approx(ref["diff"], rel=1e-9)
    assert got.std_err == pytest.approx(np.sqrt(ref["var"]), rel=1e-7)
    assert got.control.units + got.treatment.units == keep.sum()
    exp.bandit.close()


def test_a_per_event_metric_without_events_is_refused_by_name() -> None:
    exp = make(("a", "b"), "request", seed=9)
    run(exp, PHASES, seed=9)
    with pytest.raises(AnalysisError, match="no 'latency_ms' events recorded in 'a' in any "):
        Analysis.from_experiment(exp).compare("latency_ms")
    exp.bandit.close()


def test_result_says_what_it_covers_in_fields_dict_and_text() -> None:
    exp = make(("a", "b"), "request", seed=7)
    run(exp, PHASES, seed=7)
    analysis = Analysis.from_experiment(exp)
    got = analysis.compare("click")
    d = got.to_dict()
    assert d["observed"] == "requests and decisions" and d["covers"] == got.covers
    assert [p["mode"] for p in d["phases"]] == ["ab", "bandit", "ab"]
    assert d["phases"][1]["n"] == 400 and "phase-stratified" in d["estimator"]
    text = str(got)
    assert "requests and decisions" in text and "phase 2 (bandit, epochs" in text
    assert "covers: 600 requests of A/B epochs and 400 bandit decisions" in text
    # the per-variant table shows the same estimator's means, in summary() and to_dict()
    summaries = analysis.summary("click")
    assert summaries[1].mean == pytest.approx(got.treatment.mean, rel=1e-12)
    assert summaries[0].std_err == pytest.approx(got.control.std_err, rel=1e-12)
    row = analysis.to_dict()["metrics"]["click"]
    assert row["summary"][1]["mean"] == pytest.approx(got.treatment.mean, rel=1e-12)
    with pytest.raises(AnalysisError, match="phase-stratified"):
        analysis.compare("click", estimator="hajek")
    exp.bandit.close()


def test_pure_modes_say_what_they_cover() -> None:
    ab = make(("a", "b"), "user", seed=1, reward=None)
    run(ab, [("ab", 200)], seed=1)
    got = Analysis.from_experiment(ab).compare("revenue")
    assert got.observed == "units" and got.covers == "200 units of a and b (A/B)"
    assert got.phases == ()
    bandit = make(("a", "b"), "request", seed=1, mode="bandit")
    run(bandit, [("bandit", 300)], seed=1)
    got = Analysis.from_experiment(bandit).compare("click")
    assert got.observed == "decisions" and got.covers.startswith("300 bandit decisions")
    assert "decisions" in str(got).splitlines()[1] or "decisions" in str(got)
    bandit.bandit.close()


def test_returning_users_get_per_phase_results_not_a_mixed_estimate() -> None:
    exp = make(("a", "b"), "user", seed=2)
    run(exp, PHASES, seed=2, repeat=2)  # every user comes twice
    analysis = Analysis.from_experiment(exp)
    with pytest.raises(AnalysisError, match="exposed more than once.*analysis.phases"):
        analysis.compare("click")
    phases = analysis.phases("click")
    assert [p.mode for p in phases] == ["ab", "bandit", "ab"]
    assert phases[0].observed == "units" and phases[0].n == 150
    assert phases[1].observed == "decisions" and phases[1].n == 400
    exp.bandit.close()


def test_a_thin_phase_is_pooled_with_its_neighbour_and_said_so() -> None:
    exp = make(("a", "b"), "request", seed=4)
    run(exp, [("ab", 300), ("bandit", 12), ("ab", 300)], seed=4)
    got = Analysis.from_experiment(exp).compare("revenue")
    assert any("phases 2 + 3 were pooled" in n for n in got.notes)
    assert len(got.phases) == 3 and got.control.units + got.treatment.units == 612
    exp.bandit.close()


def test_sequential_counts_units_and_decisions_and_says_so() -> None:
    exp = make(("a", "b"), "user", seed=6, primary="click", plan={"max_units": 4000})
    run(exp, [("ab", 800)], seed=6)
    exp.record_look()  # look 1, after the A/B phase
    run(exp, [("bandit", 600)], seed=7)
    seq = Analysis.from_experiment(exp).sequential()
    assert seq.units == 1400 and seq.observed == "units and decisions"
    assert not seq.recorded and seq.look == 2
    assert "1,400 units and decisions in both groups" in seq.explain()
    exp.record_look()
    again = Analysis.from_experiment(exp).sequential()
    assert again.recorded
    assert any("no new units and decisions since recorded look 2 (1,400 units and decisions"
               in n for n in again.notes)
    exp.bandit.close()


# -- the scenario: A/B -> bandit -> A/B with a known true effect ----------------------
# Click rates drift between phases and the effect differs by phase (0.03, 0.08, 0.03 for b;
# half of it for c), so neither the bandit phase alone nor a pooled naive mean is right. The
# estimand is the average effect over the traffic: sum over phases of n_s / n x effect_s =
# (600 x 0.03 + 800 x 0.08 + 600 x 0.03) / 2000 = 0.05 for b (0.025 for c).
SCENARIO = [("ab", 600), ("bandit", 800), ("ab", 600)]
BASE, EFFECT, ARM_SCALE = (0.20, 0.30, 0.25), (0.03, 0.08, 0.03), (0.0, 1.0, 0.5)


def truth(arm: int) -> float:
    n = np.array([k for _, k in SCENARIO], dtype=float)
    return float(np.dot(n / n.sum(), np.array(EFFECT) * ARM_SCALE[arm]))


def simulate(level: str, names: tuple[str, ...], runs: int
             ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per treatment: the combined estimates, whether the 95% CI covered the truth, and the
    bandit phase's own estimates, over ``runs`` seeded experiments."""
    est = {t: np.empty(runs) for t in range(1, len(names))}
    cover = {t: np.empty(runs, dtype=bool) for t in est}
    bandit_only = {t: np.empty(runs) for t in est}
    for seed in range(runs):
        exp = make(names, level, seed=1000 + seed)
        run(exp, SCENARIO, seed=seed,
            rate=lambda ph, arm: BASE[ph] + EFFECT[ph] * ARM_SCALE[arm])
        analysis = Analysis.from_experiment(exp)
        for t in est:
            got = analysis.compare("click", names[t])
            ci = got.confidence_interval()
            est[t][seed] = got.difference
            cover[t][seed] = ci.low <= truth(t) <= ci.high
            bandit_only[t][seed] = got.phases[1].difference
        assert exp.bandit is not None
        exp.bandit.close()
    return {t: (est[t], cover[t], bandit_only[t]) for t in est}


def check_scenario(level: str, names: tuple[str, ...], runs: int, k_se: float,
                   min_coverage: float) -> None:
    """Bias within ``k_se`` MC s.e., coverage >= ``min_coverage``, for every treatment."""
    for t, (est, cover, bandit_only) in simulate(level, names, runs).items():
        mc_se = est.std(ddof=1) / np.sqrt(runs)
        assert abs(est.mean() - truth(t)) <= k_se * mc_se, (t, est.mean(), truth(t), mc_se)
        assert cover.mean() >= min_coverage, (t, cover.mean())
        # the old answer (bandit decisions only) estimates the bandit phase's effect instead
        assert abs(bandit_only.mean() - EFFECT[1] * ARM_SCALE[t]) <= 4 * (
            bandit_only.std(ddof=1) / np.sqrt(runs))


@pytest.mark.parametrize("level", ["user", "request"])
def test_switch_scenario_estimate_and_coverage_fast(level: str) -> None:
    """40 runs, 2 variants: the mean estimate within 4 MC s.e. of the truth (MC s.e. of the
    mean ~0.0037 at an estimate s.e. of ~0.023) and coverage >= 85% (at a true 95%, 40 runs
    fall below 34 covering with probability < 1%)."""
    check_scenario(level, ("a", "b"), runs=40, k_se=4.0, min_coverage=0.85)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["user", "request"])
def test_switch_scenario_estimate_and_coverage(level: str) -> None:
    """The issue's bar on its scenario (2 variants): 200 runs, the mean estimate within 3 MC
    s.e. of the truth (MC s.e. ~0.0017) and 95% CI coverage >= 93% (MC s.e. of a 95%
    coverage over 200 runs: 1.5%)."""
    check_scenario(level, ("a", "b"), runs=200, k_se=3.0, min_coverage=0.93)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["user", "request"])
def test_switch_scenario_three_variants(level: str) -> None:
    """3 variants, both treatments: 600 runs, the mean estimate within 3 MC s.e. of the truth
    and coverage >= 95% - 3 MC s.e. (= 92.3%; MC s.e. of a 95% coverage over 600 runs:
    0.9%). Measured 92.8% for b at user level (the per-phase intervals cover 95.0%, 94.0%,
    94.2%; the combined standard error is 3% below the spread of the estimates over these
    runs), 200-run cells between 91.0% and 96.5% (docs/statistics.md, "Mode switches")."""
    check_scenario(level, ("a", "b", "c"), runs=600, k_se=3.0,
                   min_coverage=0.95 - 3 * float(np.sqrt(0.95 * 0.05 / 600)))


def test_bandit_units_back_in_an_ab_phase_are_counted_in_a_note() -> None:
    exp = make(("a", "b"), "user", seed=11)
    run(exp, [("ab", 100), ("bandit", 100)], seed=11)
    exp.configure(mode="ab")
    for t in range(100, 130):  # 30 units first routed by the bandit come back under A/B
        d = exp.assign(f"s11-u{t}")
        exp.record(d, "revenue", 1.0)
    got = Analysis.from_experiment(exp).compare("revenue")
    assert any(n.startswith("30 units first exposed in a bandit epoch were exposed again")
               for n in got.notes), got.notes
    assert got.control.units + got.treatment.units == 200  # their A/B requests are not in it
    exp.bandit.close()
