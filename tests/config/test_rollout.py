"""The declarative rollout: the issue's example parses, every malformed input is a ConfigError
naming the field and the value, and random inputs never raise anything else."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter.config.rollout import GATES, Rollout, StageSpec
from modelrouter.exceptions import ConfigError

VARIANTS = ["control", "treatment"]
SHADOWS = ["candidate"]
ISSUE: dict[str, list[dict[str, Any]]] = {"candidate": [
    {"stage": "shadow", "min_units": 2000, "advance_if": "no_worse"},
    {"stage": "canary", "share": 0.05, "min_units": 5000, "advance_if": "guardrails_pass"},
    {"stage": "ab", "share": 0.5, "advance_if": "primary_better"},
    {"stage": "ship"}]}


def parse(spec: object) -> Rollout:
    return Rollout.parse(spec, VARIANTS, SHADOWS, control="control")


def test_issue_example() -> None:
    r = parse(ISSUE)
    stages = r["candidate"].stages
    assert [s.stage for s in stages] == ["shadow", "canary", "ab", "ship"]
    assert stages[0] == StageSpec("shadow", None, 2000, None, stages[0].advance_if, None)
    assert stages[0].advance_if is not None
    assert stages[0].advance_if.param("margin") == 0.0
    assert stages[0].advance_if.param("alpha") == 0.05
    assert stages[1].share == 0.05 and stages[1].rollback_to == "previous"
    assert stages[2].advance_if is not None and stages[2].advance_if.name == "primary_better"
    assert stages[3] == StageSpec("ship")
    assert "candidate" in r and len(r) == 1
    assert "canary, share=0.05" in repr(r)
    assert parse(r.to_dict()) == r  # round trip through the config's own shape
    assert parse(None) == Rollout() == parse({})


def test_gate_parameters_and_repeated_served_stages() -> None:
    r = parse({"candidate": [
        {"stage": "shadow", "share": 0.2, "advance_if": {"name": "agreement_at_least",
                                                         "rate": 0.9}},
        {"stage": "canary", "share": 0.01, "advance_if": {"name": "no_worse", "margin": 0.01}},
        {"stage": "canary", "share": 0.05, "max_units": 10_000, "advance_if": "guardrails_pass",
         "rollback_to": "control"},
        {"stage": "ab", "share": 0.05, "advance_if": "primary_better"},
        {"stage": "ship"}]})
    s = r["candidate"].stages
    assert s[0].advance_if is not None and s[0].advance_if.params == (("rate", 0.9),)
    assert s[1].advance_if is not None and s[1].advance_if.param("margin") == 0.01
    assert s[2].rollback_to == "control" and s[2].max_units == 10_000
    served = Rollout.parse({"treatment": [{"stage": "canary", "share": 0.1,
                                           "advance_if": "guardrails_pass"},
                                          {"stage": "ship"}]}, VARIANTS, SHADOWS)
    assert served["treatment"].stages[0].stage == "canary"


def _stages(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"candidate": [*stages, {"stage": "ship"}]}


SHADOW = {"stage": "shadow", "advance_if": "no_worse"}
CANARY = {"stage": "canary", "share": 0.05, "advance_if": "guardrails_pass"}

BAD: list[tuple[object, str]] = [
    ([], "rollout ([]) must be a mapping"),
    ({"nobody": [SHADOW, {"stage": "ship"}]}, "rollout.nobody: unknown candidate 'nobody'"),
    ({"control": [CANARY, {"stage": "ship"}]}, "the control ('control') cannot be a candidate"),
    ({"treatment": [SHADOW, {"stage": "ship"}]},
     "rollout.treatment[0].stage ('shadow'): 'treatment' is a served variant"),
    ({"candidate": "shadow"}, "rollout.candidate ('shadow') must be a list of stages"),
    ({"candidate": []}, "rollout.candidate ([]) must be a non-empty list"),
    ({"candidate": [{"stage": "ship"}]}, "at least one stage before 'ship'"),
    ({"candidate": [SHADOW]}, "rollout.candidate[0].stage ('shadow'): the last stage must be"),
    ({"candidate": [{"stage": "ship"}, SHADOW, {"stage": "ship"}]},
     "rollout.candidate[0].stage ('ship'): 'ship' must be the last stage"),
    (_stages({"stage": "prod", "advance_if": "no_worse"}),
     "rollout.candidate[0].stage ('prod') must be one of 'shadow', 'canary', 'ab', 'ship'"),
    (_stages({"advance_if": "no_worse"}), "rollout.candidate[0]: missing 'stage'"),
    (_stages(CANARY, SHADOW), "rollout.candidate[1].stage ('shadow') comes after 'canary'"),
    (_stages({"stage": "ab", "share": 0.5, "advance_if": "primary_better"}, CANARY),
     "rollout.candidate[1].stage ('canary') comes after 'ab'"),
    (_stages(SHADOW, SHADOW), "rollout.candidate[1].stage ('shadow'): at most one"),
    (_stages({**CANARY, "share": 0}), "rollout.candidate[0].share (0) must be in (0, 1]"),
    (_stages({**CANARY, "share": 1.5}), "rollout.candidate[0].share (1.5) must be in (0, 1]"),
    (_stages({**CANARY, "share": "5%"}), "rollout.candidate[0].share ('5%') must be"),
    (_stages({**CANARY, "share": True}), "rollout.candidate[0].share (True) must be"),
    (_stages({"stage": "canary", "advance_if": "no_worse"}),
     "rollout.candidate[0]: stage 'canary' needs 'share'"),
    (_stages(CANARY, {**CANARY, "share": 0.01}),
     "rollout.candidate[1].share (0.01) must be larger than the share of the stage before"),
    (_stages({**CANARY, "share": 0.5}, {"stage": "ab", "share": 0.1,
                                        "advance_if": "primary_better"}),
     "rollout.candidate[1].share (0.1) must be larger"),
    (_stages({**SHADOW, "min_units": 0}), "rollout.candidate[0].min_units (0) must be > 0"),
    (_stages({**SHADOW, "min_units": 2000.0}),
     "rollout.candidate[0].min_units (2000.0) must be an integer"),
    (_stages({**SHADOW, "min_units": -5}), "rollout.candidate[0].min_units (-5) must be > 0"),
    (_stages({**SHADOW, "min_units": 10, "max_units": 5}),
     "rollout.candidate[0].max_units (5) must be >= 10"),
    (_stages({"stage": "shadow"}), "rollout.candidate[0]: stage 'shadow' needs 'advance_if'"),
    (_stages({**SHADOW, "advance_if": "looks_good"}),
     "rollout.candidate[0].advance_if ('looks_good') must be one of 'no_worse'"),
    (_stages({**SHADOW, "advance_if": {"margin": 1}}),
     "rollout.candidate[0].advance_if: a gate mapping needs 'name'"),
    (_stages({**SHADOW, "advance_if": {"name": "nope"}}),
     "rollout.candidate[0].advance_if.name ('nope') must be one of"),
    (_stages({**SHADOW, "advance_if": 3}), "rollout.candidate[0].advance_if (3) must be a gate"),
    (_stages({**SHADOW, "advance_if": "primary_better"}),
     "rollout.candidate[0].advance_if ('primary_better') must be a gate of a stage in ['ab']"),
    (_stages({**CANARY, "advance_if": "agreement_at_least"}),
     "stage 'canary' cannot use it"),
    (_stages({**SHADOW, "advance_if": {"name": "agreement_at_least"}}),
     "gate 'agreement_at_least' needs parameter 'rate'"),
    (_stages({**SHADOW, "advance_if": {"name": "agreement_at_least", "rate": 1.2}}),
     "rollout.candidate[0].advance_if.rate (1.2) must be in (0, 1]"),
    (_stages({**SHADOW, "advance_if": {"name": "no_worse", "margin": -0.1}}),
     "rollout.candidate[0].advance_if.margin (-0.1) must be >= 0"),
    (_stages({**SHADOW, "advance_if": {"name": "no_worse", "alpha": 1}}),
     "rollout.candidate[0].advance_if.alpha (1) must be in (0, 1)"),
    (_stages({**SHADOW, "advance_if": {"name": "no_worse", "margn": 0.1}}),
     "rollout.candidate[0].advance_if.margn: unknown parameter of gate 'no_worse'"),
    (_stages({**SHADOW, "rollback_to": "previous"}),
     "rollout.candidate[0].rollback_to: only 'canary' and 'ab' stages roll back"),
    (_stages({**CANARY, "rollback_to": "nowhere"}),
     "rollout.candidate[0].rollback_to ('nowhere') must be one of 'previous', 'control'"),
    (_stages({**CANARY, "shares": 0.1}), "rollout.candidate[0].shares: unknown stage field"),
    ({"candidate": [SHADOW, {"stage": "ship", "share": 1}]},
     "rollout.candidate[1].share (1) must be absent: the 'ship' stage takes no field"),
    ({"candidate": [SHADOW, "ship"]}, "rollout.candidate[1] ('ship') must be a mapping"),
]


@pytest.mark.parametrize(("spec", "message"), BAD)
def test_malformed_inputs_name_the_field_and_value(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(spec)


def test_every_gate_is_documented_in_the_module() -> None:
    import modelrouter.config.rollout as mod

    assert mod.__doc__ is not None
    for name, rule in GATES.items():
        assert f"``{name}``" in mod.__doc__
        for param in rule.params:
            assert f"``{param}``" in mod.__doc__


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 10_000), st.floats(-2, 2),
                  st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from(["shadow", "canary", "ab", "ship", "no_worse",
                                   "guardrails_pass", "primary_better", "agreement_at_least",
                                   "previous", "control", "", "x"]))
_keys = st.sampled_from(["stage", "share", "min_units", "max_units", "advance_if",
                         "rollback_to", "name", "margin", "alpha", "rate", "other"])
_tree = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=6)), max_leaves=25)
_candidates = st.sampled_from(["candidate", "treatment", "control", "nobody", "", 3])


@settings(max_examples=80, deadline=None)
@given(st.one_of(_tree, st.dictionaries(_candidates, _tree, max_size=2),
                 st.dictionaries(_candidates, st.lists(st.dictionaries(_keys, _tree,
                                                                       max_size=5),
                                                       max_size=5), max_size=2)))
def test_random_inputs_only_raise_config_error(spec: object) -> None:
    try:
        r = parse(spec)
    except ConfigError as exc:
        assert str(exc)
        return
    for cand in r.candidates:  # whatever passed is a well-formed rollout
        assert cand.stages[-1].stage == "ship" and len(cand.stages) >= 2
        assert parse(r.to_dict()) == r


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 3), _keys, _tree, st.booleans())
def test_one_field_changed_in_the_issue_example(index: int, key: str, value: object,
                                                drop: bool) -> None:
    """Near-valid inputs: the issue's rollout with one field replaced or removed."""
    stages = [dict(s) for s in ISSUE["candidate"]]
    if drop:
        stages[index].pop(key, None)
    else:
        stages[index][key] = value
    try:
        r = parse({"candidate": stages})
    except ConfigError as exc:
        assert "rollout.candidate" in str(exc)
        return
    assert [s.stage for s in r["candidate"].stages][-1] == "ship"


def test_router_config_field_parses_round_trips_and_needs_primary_and_plan() -> None:
    from modelrouter import RouterConfig

    cfg = RouterConfig(metrics={"click": "binary"}, primary="click", plan={"mde": 0.02},
                       rollout=ISSUE)
    assert isinstance(cfg.rollout, Rollout) and cfg.rollout == parse(ISSUE)
    data = cfg.as_dict()["rollout"]
    assert RouterConfig.from_dict({**{k: v for k, v in cfg.as_dict().items()
                                      if k in ("metrics", "primary", "plan")},
                                   "rollout": data}).rollout == cfg.rollout
    assert RouterConfig().rollout is None and "rollout" not in repr(RouterConfig())
    with pytest.raises(ConfigError, match=re.escape("rollout.candidate[2].advance_if reads "
                                                    "the primary metric")):
        RouterConfig(metrics={"click": "binary"}, rollout=ISSUE)
    with pytest.raises(ConfigError, match=re.escape("rollout.candidate[1].share (2)")):
        RouterConfig(rollout={"candidate": [
            {"stage": "canary", "share": 0.1, "advance_if": "guardrails_pass"},
            {"stage": "canary", "share": 2, "advance_if": "guardrails_pass"},
            {"stage": "ship"}]})
