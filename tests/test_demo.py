"""The demo runs end to end through the real middleware (small size in the default run)."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import pytest

from modelrouter.cli import main
from modelrouter.demo import run_demo
from modelrouter.stats import inflation_factor, sample_size_proportions, spending_boundaries


def test_demo_end_to_end_small() -> None:
    out = io.StringIO()
    result = run_demo(users=300, seed=3, stream=out, progress=True)
    text = out.getvalue()
    assert "users [" in text and "300/300" in text
    assert "verdict:" in text and "Sequential test of 'click'" in text
    assert "click by platform" in text and "p-value" in text
    snap = result.router.experiment.store.snapshot()
    assert snap.n_units == 300
    assert int(snap.requests.sum()) == result.requests
    assert snap.units is not None
    # every feedback event, late ones included, reached the store
    assert int(snap.units.y["click"].sum() + snap.units.y["revenue"].sum()) == result.feedback
    assert result.late_feedback > 0
    assert len(snap.looks) == 4  # the demo records the planned interim looks
    # the SVM really is the better model on held-out digits
    assert result.accuracy["treatment"] > result.accuracy["control"]


def test_cli_plan_reproduces_seed_table(capsys) -> None:  # type: ignore[no-untyped-def]
    # the seed table uses the unpooled variance under H0 (a Wald test)
    assert main(["plan", "--baseline", "0.05", "--mde", "0.005", "--per-day", "1000",
                 "--null-variance", "unpooled"]) == 0
    out = capsys.readouterr().out
    assert "31,231" in out and "62,462" in out and "62.5 days" in out
    # the default plans the pooled two-proportion z-test compare() runs (Fleiss)
    assert main(["plan", "--baseline", "0.05", "--mde", "0.005", "--per-day", "1000"]) == 0
    out = capsys.readouterr().out
    expected = sample_size_proportions(0.05, 0.055)
    assert f"{expected.n_per_group:,}" in out and "pooled variance under H0" in out


def test_cli_plan_for_means_with_sequential_looks(capsys) -> None:  # type: ignore[no-untyped-def]
    from statsmodels.stats.power import NormalIndPower

    assert main(["plan", "--mde", "0.5", "--sd", "4", "--sided", "1"]) == 0
    out = capsys.readouterr().out
    # statsmodels: z-test power for effect size d = 0.5 / 4, one-sided, alpha 0.05, power 0.8
    n = NormalIndPower().solve_power(effect_size=0.5 / 4, alpha=0.05, power=0.8,
                                     alternative="larger")
    assert f"units per group: {math.ceil(n):,}" in out
    assert main(["plan", "--baseline", "0.05", "--mde", "0.005", "--looks", "4"]) == 0
    seq = capsys.readouterr().out
    # the CLI is wiring: the same numbers as the Python API (whose inflation factors are
    # checked against Jennison & Turnbull and rpact in tests/stats/test_power.py)
    design = spending_boundaries([0.25, 0.5, 0.75, 1.0])
    expected = sample_size_proportions(0.05, 0.055, sequential=design)
    assert f"inflation factor {inflation_factor(design, 0.8):.4f}" in seq
    assert f"units per group: {expected.n_per_group:,}" in seq
    assert expected.n_per_group > 31_231  # more than the fixed design


@pytest.mark.parametrize(("argv", "message"), [
    (["plan", "--baseline", "5", "--mde", "0.5"], "p1 (5.0) must be in (0, 1)"),
    (["plan", "--mde", "0.5"], "give --baseline (a rate), --sd (a mean) or --ratio"),
    (["plan", "--mde", "0.1", "--ratio", "3,2,12"], "--ratio ('3,2,12') must be five numbers"),
    (["plan", "--mde", "0.1", "--ratio", "3,2,a,2,4"], "must be five numbers"),
    (["plan", "--mde", "0.1", "--ratio", "3,0,12,2,4"], "mean_y (0.0) must be a positive"),
    (["plan", "--mde", "0.1", "--ratio", "3,2,12,2,4", "--sd", "1"], "without --baseline"),
    (["plan", "--mde", "0", "--sd", "1"], "delta (0.0) must be a non-zero number"),
    (["plan", "--baseline", "0.1", "--mde", "0.01", "--looks", "0"], "--looks (0)"),
])
def test_cli_plan_errors_are_one_line_not_a_traceback(argv: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_dash_m_modelrouter_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "modelrouter", "plan", "--baseline", "0.05",
                          "--mde", "0.005"], capture_output=True, text=True, check=True)
    assert f"{sample_size_proportions(0.05, 0.055).n_per_group:,}" in out.stdout


def test_demo_progress_goes_to_its_own_stream() -> None:
    report, progress = io.StringIO(), io.StringIO()
    run_demo(users=120, seed=4, stream=report, progress=True, progress_stream=progress)
    assert "\r" not in report.getvalue() and "verdict:" in report.getvalue()
    assert "120/120" in progress.getvalue()


def test_cli_plan_allocation_ratio_matches_the_python_helper(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--baseline", "0.05", "--mde", "0.005",
                 "--allocation-ratio", "2"]) == 0
    out = capsys.readouterr().out
    expected = sample_size_proportions(0.05, 0.055, ratio=2.0)
    assert f"control {expected.n_per_group:,}, treatment {expected.n_treatment:,}" in out
    assert f"total (2 groups): {expected.n_total:,}" in out


def test_cli_plan_ratio_metric_matches_the_python_helper(
        capsys: pytest.CaptureFixture[str]) -> None:
    from modelrouter.stats import sample_size_ratio

    assert main(["plan", "--mde", "0.05", "--ratio", "3,2,12,2,4", "--allocation-ratio", "2",
                 "--looks", "3"]) == 0
    out = capsys.readouterr().out
    expected = sample_size_ratio(0.05, 3.0, 2.0, 12.0, 2.0, 4.0, ratio=2.0,
                                 sequential=spending_boundaries([1 / 3, 2 / 3, 1.0]))
    assert "ratio metric 1.5" in out
    assert f"control {expected.n_per_group:,}, treatment {expected.n_treatment:,}" in out
    assert f"total (2 groups): {expected.n_total:,}" in out
