"""``GET {prefix}/stats`` answers the whole analysis, valid against the shipped JSON Schema.

Each test builds a real router (memory store, user level unless said; fresh), drives it
through the routing core (``router.experiment.assign`` / ``record``, the path the middleware
uses), then reads ``/stats`` over ASGI and validates the body with ``jsonschema`` (Draft
2020-12) against ``modelrouter/analysis/schema/analysis.v1.json``. Besides validity, each test
checks that the part it is about holds what the analysis API answers for the same snapshot
(the document must say what the report says) and that no part has status ``error``.

Cells of the composition matrix: memory store; A/B, bandit and switched modes; 2 and 3
variants; user and request level; fresh and after a rollback; before any data.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jsonschema
import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.analysis.schema import analysis_schema
from tests.conftest import make_app
from tests.web.conftest import ADMIN, BEARER, PREFIX, SECRET, Client

VALIDATOR = jsonschema.Draft202012Validator(analysis_schema())


def build(names: tuple[str, ...] = ("control", "treatment"), seed: int = 0,
          **config: Any) -> ModelRouter:
    config.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
    config.setdefault("secret", SECRET)
    config.setdefault("admin_token", ADMIN)
    config.setdefault("primary", "click")
    return ModelRouter(make_app(), {n: n for n in names}, RouterConfig(**config),
                       rng=random.Random(seed))


def drive(router: ModelRouter, n: int, rates: dict[str, float], seed: int = 0,
          start: int = 0, platforms: tuple[str, ...] = ()) -> None:
    """``n`` new units, one request each: a click with the variant's rate, revenue 0-3."""
    rng = np.random.default_rng(seed)
    exp = router.experiment
    for i in range(start, start + n):
        seg = (platforms[i % len(platforms)],) if platforms else ()
        d = exp.assign(f"u{i}", seg)
        exp.record(d, "click", int(rng.random() < rates[d.variant]))
        exp.record(d, "revenue", float(rng.integers(0, 4)))


def stats(router: ModelRouter) -> dict[str, Any]:
    """``/stats`` as JSON, after checking it is strict JSON and valid against the schema."""
    r = Client(router).get(f"{PREFIX}/stats", headers=BEARER)
    assert r.status == 200, r.body[:300]
    body: dict[str, Any] = json.loads(r.body, parse_constant=refuse)  # strict JSON only
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in VALIDATOR.iter_errors(body)]
    assert not errors, errors
    assert not list(statuses(body, "error")), list(statuses(body, "error"))
    assert body["schema_version"].startswith("1.")
    return body


def refuse(constant: str) -> Any:
    raise AssertionError(f"{constant} is not JSON")


def statuses(doc: Any, wanted: str, path: str = "") -> Any:
    """Paths of every part with ``status == wanted``."""
    if isinstance(doc, dict):
        if doc.get("status") == wanted:
            yield path
        for k, v in doc.items():
            yield from statuses(v, wanted, f"{path}/{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from statuses(v, wanted, f"{path}[{i}]")


def test_the_schema_is_a_valid_2020_12_schema_and_rejects_wrong_documents() -> None:
    jsonschema.Draft202012Validator.check_schema(analysis_schema())
    router = build(plan={"max_units": 400})
    drive(router, 120, {"control": 0.2, "treatment": 0.5})
    good = stats(router)
    # the schema is not vacuous: each of these corruptions is refused
    corruptions = [
        ("verdict", lambda d: d["verdict"].update(decision="maybe")),
        ("status", lambda d: d["srm"].update(status="fine")),
        ("pvalue", lambda d: d["metrics"]["click"]["comparisons"]["treatment"].update(
            pvalue="small")),
        ("missing part", lambda d: d.pop("guardrails")),
        ("version", lambda d: d.update(schema_version="2.0")),
        ("unavailable with extra keys", lambda d: d.update(
            bandit={"status": "not_applicable", "reason": "x", "weights": {}})),
        ("sequential", lambda d: d["sequential"]["treatment"].update(statistic="z")),
    ]
    for name, corrupt in corruptions:
        bad = copy.deepcopy(good)
        corrupt(bad)
        assert not VALIDATOR.is_valid(bad), name


def test_before_any_data_every_part_says_not_enough_data() -> None:
    router = build(plan={"max_units": 400}, segments={"platform": "x-platform"},
                   guardrails={"revenue": {"max_decrease": 1.0}})
    body = stats(router)
    assert body["units"] == 0 and body["verdict"]["decision"] == "invalid"
    assert body["verdict"]["srm_pvalue"] is None  # no check ran: not "p = 1"
    assert body["srm"]["status"] == "not_enough_data" and "no units" in body["srm"]["reason"]
    for section in ("sequential", "always_valid"):
        assert body[section]["treatment"]["status"] == "not_enough_data"
    assert body["segments"]["platform"]["treatment"]["status"] == "not_enough_data"
    assert body["metrics"]["click"]["comparisons"] == {
        "error": router.analysis().to_dict()["metrics"]["click"]["comparisons"]["error"]}
    assert body["bandit"]["status"] == "not_applicable"
    assert body["phases"]["switched"] is False and body["rollback_events"] == []


def test_ab_holds_the_verdict_sequential_always_valid_and_srm_of_the_analysis() -> None:
    router = build(plan={"max_units": 400, "looks": 3})
    drive(router, 150, {"control": 0.2, "treatment": 0.45})
    router.record_look()
    drive(router, 60, {"control": 0.2, "treatment": 0.45}, seed=1, start=150)
    body = stats(router)
    a = router.analysis()
    v = a.verdict()
    assert body["verdict"]["decision"] == v.decision
    assert body["verdict"]["reasons"] == list(v.reasons)
    seq, av = a.sequential(), a.always_valid()
    s = body["sequential"]["treatment"]
    assert s["status"] == "ok" and s["statistic"] == pytest.approx(seq.statistic, rel=1e-12)
    assert s["boundary"] == pytest.approx(seq.boundary, rel=1e-12)
    assert s["look"] == seq.look == 2 and len(s["repeated_cis"]) == len(seq.repeated_cis)
    assert body["always_valid"]["treatment"]["pvalue"] == pytest.approx(av.pvalue, rel=1e-12)
    assert body["srm"]["pvalue"] == pytest.approx(a.srm().pvalue, rel=1e-12)
    cmp_ = a.compare("click")
    assert body["verdict"]["comparison"]["ci_low"] == pytest.approx(
        cmp_.confidence_interval().low, rel=1e-12)
    assert body["guardrails"]["status"] == "ok"  # the automatic latency/error guardrails


def test_three_variants_have_per_treatment_verdicts_and_tests() -> None:
    names = ("control", "b", "c")
    router = build(names, plan={"max_units": 600})
    drive(router, 240, {"control": 0.2, "b": 0.5, "c": 0.25})
    body = stats(router)
    v = router.analysis().verdict()
    assert body["treatments"] == ["b", "c"]
    assert set(body["verdict"]["per_variant"]) == {"b", "c"}
    assert body["verdict"]["per_variant"]["b"]["decision"] == v.per_variant["b"].decision
    assert body["verdict"]["recommended"] == v.recommended
    assert body["verdict"]["alpha_per_comparison"] == pytest.approx(0.025)
    for t in ("b", "c"):
        s = body["sequential"][t]
        assert s["status"] == "ok" and s["variant"] == t
        assert s["statistic"] == pytest.approx(
            router.analysis().sequential(variant=t, alpha=0.025).statistic, rel=1e-12)
        assert body["metrics"]["click"]["comparisons"][t]["treatment"]["variant"] == t


def test_bandit_state_weights_p_best_and_epoch() -> None:
    names = ("control", "b", "c")
    router = build(names, level="request", reward="click", mode="bandit", refresh_every=30,
                   refresh_seconds=None, missing_reward="omit")
    exp = router.experiment
    rng = np.random.default_rng(3)
    rates = {"control": 0.1, "b": 0.3, "c": 0.12}
    for _ in range(400):
        d = exp.assign(None)
        exp.record(d, "click", int(rng.random() < rates[d.variant]))
    body = stats(router)
    assert body["bandit"]["status"] == "ok" and body["mode"] == "bandit"
    # /stats may see a refresh the next analysis does not (or the reverse): compare one
    # analysis's document with its own bandit()
    a = router.analysis()
    doc = a.to_dict()
    assert VALIDATOR.is_valid(doc)
    b, ref = doc["bandit"], a.bandit()
    assert b["epoch"] == ref.epoch == doc["phases"]["epochs"][-1]["epoch"]
    assert sum(b["p_best"].values()) == pytest.approx(1.0, abs=1e-6)
    assert b["weights"] == pytest.approx(ref.weights)
    assert b["decisions"] == ref.decisions
    assert body["level"] == "request"


def test_segments_per_dimension_and_treatment() -> None:
    router = build(segments={"platform": "x-platform"}, min_segment_units=5)
    drive(router, 200, {"control": 0.2, "treatment": 0.4}, platforms=("web", "ios"))
    body = stats(router)
    seg = body["segments"]["platform"]["treatment"]
    ref = router.analysis().segments("click", "platform")
    assert seg["status"] == "ok" and seg["by"] == ["platform"]
    assert [r["segment"] for r in seg["segments"]] == [dict(r.segment) for r in ref]
    assert [r["pvalue"] for r in seg["segments"]] == pytest.approx([r.pvalue for r in ref])


def test_failing_guardrail_blocks_and_is_counted() -> None:
    router = build(guardrails={"revenue": {"max_decrease": 0.1}})
    exp = router.experiment
    for i in range(300):
        d = exp.assign(f"u{i}")
        exp.record(d, "click", i % 2)
        exp.record(d, "revenue", 5.0 if d.variant == "control" else 1.0)
        exp.record(d, "revenue", 0.5 * (i % 3))
    body = stats(router)
    g = body["guardrails"]
    assert g["status"] == "ok" and g["counts"]["fail"] >= 1
    failed = [r for r in g["results"] if r["status"] == "fail"]
    assert {r["metric"] for r in failed} == {"revenue"}
    assert body["verdict"]["decision"] == "blocked_by_guardrail"


def test_rollback_events_are_listed_and_block_the_verdict() -> None:
    router = build(metrics={"click": "binary"}, rollback=True, guardrail_check_every=10**9)
    exp = router.experiment
    rng = np.random.default_rng(1)
    noise = rng.lognormal(np.log(50.0), 0.4, 1500)
    for i in range(1500):
        d = exp.assign(f"u{i}")
        exp.record(d, "latency_ms", noise[i] * (1.3 if d.variant == "treatment" else 1.0))
        exp.record(d, "error", 0)
        exp.record(d, "click", int(rng.random() < 0.3))
        if (i + 1) % 300 == 0:
            exp.check_guardrails()
    assert exp.rollback_events  # the 30% slower treatment was rolled back
    body = stats(router)
    (event,) = body["rollback_events"]
    assert event["kind"] == "rollback" and event["weights_after"]["treatment"] == 0.0
    assert body["verdict"]["decision"] == "blocked_by_guardrail"
    assert len(body["phases"]["epochs"]) == 2  # the rollback started an epoch


def test_after_a_mode_switch_the_phases_are_estimated() -> None:
    router = build(level="request", reward="click", mode="ab", refresh_every=50,
                   refresh_seconds=None, missing_reward="omit", min_share=0.1)
    exp = router.experiment
    rng = np.random.default_rng(5)
    rates = {"control": 0.2, "treatment": 0.3}

    def run(n: int) -> None:
        for _ in range(n):
            d = exp.assign(None)
            exp.record(d, "click", int(rng.random() < rates[d.variant]))

    run(300)
    router.configure(mode="bandit")
    run(300)
    router.configure(mode="ab")
    run(200)
    body = stats(router)
    ph = body["phases"]
    assert ph["switched"] is True and ph["modes"] == ["ab", "bandit"]
    est = ph["estimates"]["treatment"]
    ref = router.analysis().phases("click")
    assert est["status"] == "ok" and [p["mode"] for p in est["estimates"]] == [
        p.mode for p in ref]
    assert [p["difference"] for p in est["estimates"]] == pytest.approx(
        [p.difference for p in ref], rel=1e-12)
    assert body["metrics"]["click"]["comparisons"]["treatment"]["estimator"] == \
        router.analysis().compare("click").estimator


def test_stats_json_round_trips_the_analysis_exactly() -> None:
    """``to_dict()`` is already strict JSON data: dumping it refuses nothing."""
    router = build(plan={"max_units": 400})
    drive(router, 1, {"control": 0.0, "treatment": 0.0})  # one unit: most numbers undefined
    doc = router.analysis().to_dict()
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert stats(router) == doc


def test_a_crossing_with_futility_bounds_has_its_adjusted_estimate_and_bounds() -> None:
    router = build(plan={"looks": 4, "futility_spending": "obrien-fleming", "mde": 0.2,
                         "baseline": 0.2})
    drive(router, 80, {"control": 0.1, "treatment": 0.9})
    router.record_look()
    body = stats(router)
    s = body["sequential"]["treatment"]
    seq = router.analysis().sequential()
    assert seq.crossing is not None and seq.adjusted is not None and seq.futility is not None
    assert s["crossing"]["look"] == seq.crossing.look and s["crossing"]["direction"] == "better"
    assert s["adjusted"]["estimate"] == pytest.approx(seq.adjusted.estimate, rel=1e-12)
    assert s["futility"]["bounds"] == [x if np.isfinite(x) else None
                                       for x in seq.futility.bounds]
    assert s["rejected_at"] == 1 and body["verdict"]["decided_at_look"] == 1
