"""``Analysis.to_dict()``: the whole analysis as strict JSON data, valid against the schema.

Property (hypothesis): for random small experiments (the scenarios of
``tests/analysis/test_fuzz.py``: user and request level, 2 and 3 variants, binary, continuous
and ratio metrics with values from denormals to 1e300, a segment dimension, a plan, guardrails,
0-2 recorded looks; and bandit traffic with a holdout) ``to_dict()`` never raises, dumps with
``json.dumps(..., allow_nan=False)`` as it is (no conversion needed), validates against the
shipped schema and has no part with status ``error``. The default run is derandomized
(``FAST_EXAMPLES`` each); ``-m slow`` runs ``SLOW_EXAMPLES`` random ones.

Cells of the composition matrix: memory store; A/B and bandit; 2 and 3 variants; user and
request level; fresh; valid and hostile values.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter import AnalysisError, ModelRouter, RouterConfig, UnknownMetricError
from modelrouter.analysis.document import SCHEMA_VERSION, part
from modelrouter.analysis.schema import analysis_schema
from tests.analysis.test_fuzz import (
    ADMIN,
    GUARDRAILS,
    METRICS,
    PLATFORMS,
    SETTINGS,
    BanditScenario,
    Scenario,
    bandit_scenarios,
    build_bandit,
    record,
    scenarios,
)
from tests.analysis.test_mode_switch_fuzz import SwitchScenario, switch_scenarios, switched
from tests.conftest import make_app

FAST_EXAMPLES = 25
SLOW_EXAMPLES = 300
SWITCH_EXAMPLES = 6  # ~0.4 s each: three phases through the real router
VALIDATOR = jsonschema.Draft202012Validator(analysis_schema())
OLD_KEYS = {"variants", "control", "data_source", "units", "requests", "metrics"}


def errors_in(doc: Any, path: str = "") -> list[str]:
    """Paths of parts with status ``error`` (a bug in the analysis)."""
    found = []
    if isinstance(doc, dict):
        if doc.get("status") == "error":
            found.append(f"{path}: {doc.get('reason')}")
        for k, v in doc.items():
            found += errors_in(v, f"{path}/{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += errors_in(v, f"{path}[{i}]")
    return found


def check_document(router: ModelRouter) -> dict[str, Any]:
    doc = router.analysis().to_dict()
    text = json.dumps(doc, allow_nan=False)  # as it is: NaN/inf are already None
    assert json.loads(text) == doc
    problems = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in VALIDATOR.iter_errors(doc)]
    assert not problems, problems
    assert not errors_in(doc), errors_in(doc)
    assert set(doc) >= OLD_KEYS and doc["schema_version"] == SCHEMA_VERSION
    return doc


def build(sc: Scenario, primary: str) -> ModelRouter:
    """tests/analysis/test_fuzz.py's experiment, with the primary metric of each kind."""
    names = ["control", "treatment", "other"][:sc.variants]
    config = RouterConfig(metrics=METRICS, level=sc.level,
                          segments={"platform": "x-platform"}, primary=primary,
                          plan={"max_units": 40, "looks": 3}, guardrails=GUARDRAILS,
                          admin_token=ADMIN, min_segment_units=2)
    r = ModelRouter(make_app(), {n: n for n in names}, config)
    for i, (platform, evs) in enumerate(sc.units):
        d = r.experiment.assign(f"u{i}" if sc.level == "user" else None,
                                (PLATFORMS[platform],))
        for metric, value in evs:
            record(r, d, metric, value)
    return r


PRIMARIES = st.sampled_from(["conv", "revenue", "rate"])


def check(sc: Scenario, primary: str = "revenue") -> None:
    r = build(sc, primary)
    for _ in range(sc.looks):
        with contextlib.suppress(AnalysisError):
            r.record_look()
    check_document(r)


def check_bandit(sc: BanditScenario) -> None:
    router = build_bandit(sc)
    try:
        doc = check_document(router)
        assert doc["bandit"]["status"] == "ok"
    finally:
        assert router.experiment.bandit is not None
        router.experiment.bandit.close()


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(scenarios, PRIMARIES)
def test_to_dict_is_strict_json_and_valid(sc: Scenario, primary: str) -> None:
    check(sc, primary)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(scenarios, PRIMARIES)
def test_to_dict_is_strict_json_and_valid_slow(sc: Scenario, primary: str) -> None:
    check(sc, primary)


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(bandit_scenarios)
def test_bandit_to_dict_is_strict_json_and_valid(sc: BanditScenario) -> None:
    check_bandit(sc)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(bandit_scenarios)
def test_bandit_to_dict_is_strict_json_and_valid_slow(sc: BanditScenario) -> None:
    check_bandit(sc)


@settings(max_examples=SWITCH_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(switch_scenarios)
def test_switched_to_dict_is_strict_json_and_valid(sc: SwitchScenario) -> None:
    with switched(sc) as r:
        doc = check_document(r)
        assert doc["phases"]["modes"] == ["ab", "bandit"]


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(switch_scenarios)
def test_switched_to_dict_is_strict_json_and_valid_slow(sc: SwitchScenario) -> None:
    with switched(sc) as r:
        check_document(r)


def router(**config: Any) -> ModelRouter:
    config.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
    return ModelRouter(make_app(), {"control": 0, "treatment": 1}, RouterConfig(**config))


def test_old_keys_and_the_metrics_argument_are_kept() -> None:
    r = router(primary="click")
    for i in range(10):
        d = r.experiment.assign(f"u{i}")
        r.experiment.record(d, "click", i % 2)
    a = r.analysis()
    doc = a.to_dict(["click"])
    assert list(doc["metrics"]) == ["click"]
    assert doc["units"] == 10 and doc["variants"] == ["control", "treatment"]
    assert doc["metrics"]["click"]["comparisons"]["treatment"]["pvalue"] == pytest.approx(
        a.compare("click").pvalue, rel=1e-12)
    with pytest.raises(UnknownMetricError, match="nope"):
        a.to_dict(["nope"])  # the caller's mistake, not a state of the experiment


def test_without_primary_plan_or_bandit_the_parts_say_not_applicable() -> None:
    doc = check_document(router())
    assert doc["primary"] is None and doc["verdict"]["decision"] == "invalid"
    assert doc["sequential"]["treatment"] == {
        "status": "not_applicable", "reason": "no primary metric: set RouterConfig(primary=...)"}
    assert doc["bandit"]["status"] == "not_applicable"
    doc = check_document(router(primary="click"))
    assert doc["sequential"]["treatment"]["status"] == "not_applicable"
    assert "plan" in doc["always_valid"]["treatment"]["reason"]


def test_part_statuses() -> None:
    def refused() -> Any:
        raise AnalysisError("no units yet")

    def broken() -> Any:
        raise ZeroDivisionError("float division by zero")

    assert part(lambda: {"x": 1}) == {"status": "ok", "x": 1}
    assert part(refused) == {"status": "not_enough_data", "reason": "no units yet"}
    assert part(broken) == {"status": "error",
                            "reason": "ZeroDivisionError: float division by zero"}


def test_present_segments_are_the_distinct_rows_in_code_order() -> None:
    """The segment combinations the document iterates over equal numpy's ``np.unique(...,
    axis=0)`` of the unit columns (the reference), for one and two dimensions, including
    codes too spread for the fast path."""
    import numpy as np

    from tests.analysis._sim import snapshot

    rng = np.random.default_rng(4)
    for n, highs in ((500, (3,)), (2000, (4, 5)), (300, (1, 1)), (2000, (2, 40)),
                     (300, (120, 120, 120))):  # the last: 1.7M combinations, np.unique
        dims = {f"d{i}": f"x-d{i}" for i in range(len(highs))}
        config = RouterConfig(metrics={"click": "binary"}, segments=dims)
        cols = {d: rng.integers(0, h, n) for d, h in zip(dims, highs)}
        a = snapshot(config, rng.integers(0, 2, n), cols, {"click": rng.integers(0, 2, n)})
        ref = np.unique(np.column_stack([cols[d] for d in dims]), axis=0)
        got = a.data.present_segments(list(dims))
        assert got == [{d: f"{d}{int(c)}" for d, c in zip(dims, row)} for row in ref]
