"""The demo runs end to end through the real middleware (small size in the default run)."""

from __future__ import annotations

import io

from modelrouter.cli import main
from modelrouter.demo import run_demo


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
    assert main(["plan", "--baseline", "0.05", "--mde", "0.005", "--per-day", "1000"]) == 0
    out = capsys.readouterr().out
    assert "31,231" in out and "62,462" in out and "62.5 days" in out
