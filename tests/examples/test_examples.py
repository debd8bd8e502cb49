"""The seed scenarios in examples/ run end to end through the middleware (fast sizes)."""

from __future__ import annotations

import io
import runpy
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> dict[str, Any]:
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


def test_fraud_scenario_is_blocked_by_latency_guardrail_and_rolled_back() -> None:
    out = io.StringIO()
    a = _load("fraud.py")["main"](users=2000, seed=7, out=out)
    v = a.verdict()
    assert v.decision == "blocked_by_guardrail"
    assert any(r.startswith("guardrail failed: latency_ms") for r in v.reasons)
    assert [e.kind for e in a.rollback_events] == ["rollback"]
    # after the rollback the treatment gets no new units
    assert a.snapshot.epochs[-1].weights == (1.0, 0.0)
    latency = [g for g in a.guardrails() if g.metric == "latency_ms"][0]
    assert latency.status == "fail" and latency.low > 0.10
    assert "verdict: BLOCKED_BY_GUARDRAIL" in out.getvalue()


def test_segment_scenario_flags_mobile_and_fails_latency_on_mobile() -> None:
    out = io.StringIO()
    a = _load("segments.py")["main"](users=9000, seed=11, out=out)
    seg = a.segments("click", by="platform")
    assert seg.overall.difference > 0
    assert [r.segment for r in seg.flagged] == [{"platform": "mobile"}]
    assert seg.heterogeneity.pvalue < 0.001
    assert all(not r.opposes_overall and r.difference > 0 for r in seg
               if r.segment["platform"] != "mobile")
    failed = [(g.metric, g.where) for g in a.guardrails() if g.status == "fail"]
    assert failed == [("latency_ms", "platform=mobile")]
    assert a.verdict().decision == "blocked_by_guardrail"
    text = out.getvalue()
    assert "platform=mobile moves against the overall result" in text
