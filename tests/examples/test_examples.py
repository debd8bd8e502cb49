"""The seed scenarios in examples/ run end to end through the middleware (fast sizes)."""

from __future__ import annotations

import io
import runpy
from pathlib import Path
from typing import Any

import jsonschema

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


def test_shadow_rollout_goes_from_shadow_to_ship_through_the_middleware() -> None:
    """examples/shadow_rollout.py: the better candidate is shadowed, canaried, tested and
    shipped by the background rollout monitor; every transition is in the analysis, the
    report, GET /stats and the dashboard (issue 15 parts 3 and 4)."""
    from modelrouter.analysis.schema import analysis_schema
    from modelrouter.testing import ASGIClient

    out = io.StringIO()
    admin = "admin-token-0123456789abcdef"
    router = _load("shadow_rollout.py")["run"](users=8000, seed=3, out=out, admin_token=admin)
    events = router.experiment.stages.events
    assert [(e.kind, e.from_stage, e.to_stage) for e in events] == [
        ("advance", "shadow", "canary"), ("advance", "canary", "ab"), ("ship", "ab", "ship")]
    assert events[0].numbers["units"] >= 400 and events[1].numbers["units"] >= 500
    assert events[2].numbers["pvalue"] <= 0.05 and events[2].numbers["difference"] > 0
    assert router.experiment.allocation.weights == {"control": 0.0, "candidate": 1.0}
    a = router.analysis()
    shadow = a.shadow("candidate")
    assert shadow.accuracy is not None and shadow.accuracy.difference > 0  # labels paired
    assert a.verdict().decision == "ship"
    doc = a.to_dict()
    jsonschema.Draft202012Validator(analysis_schema()).validate(doc)
    assert [e["kind"] for e in doc["rollout"]["events"]] == ["advance", "advance", "ship"]
    assert "Rollout of the shadow candidates:" in a.report()
    assert "ship: candidate ab (0.5) -> ship (1)" in out.getvalue()
    client = ASGIClient(router)
    bearer = {"authorization": f"Bearer {admin}"}
    stats = client.run("GET", "/_modelrouter/stats", headers=bearer)
    assert stats.status == 200 and stats.json()["rollout"]["current"]["candidate"][
        "stage"] == "ship"
    page = client.run("GET", "/_modelrouter/dashboard", headers=bearer).text
    assert 'id="rollout"' in page and "ship: candidate ab (0.5) -&gt; ship (1)" in page

