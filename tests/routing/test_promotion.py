"""promote(): a shadow candidate, held at weight 0 as an arm, becomes a served arm.

Cells covered: memory store; A/B (bandit refused, after a switch back); 2 served variants +
1 candidate, 1 served + 1 candidate, 3 served + 1 candidate; user and request level; fresh,
after configure/pause/rollback, restored from a snapshot; hostile values (NaN, 1e300, bool,
lone surrogates, huge strings). Redis across workers: tests/store/test_promotion_redis.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelrouter import Experiment, ModelRouter, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.exceptions import ConfigError

CFG = RouterConfig(metrics={"click": "binary"}, primary="click", plan={"mde": 0.05},
                   guardrail_check_every=10**9)


def exp(variants: dict[str, Any] | None = None, **kw: Any) -> Experiment:
    variants = variants or {"control": 0, "treatment": 1}
    return Experiment({**variants, "candidate": 9}, CFG.replace(**kw) if kw else CFG,
                      clock=lambda: 1000.0, candidates=("candidate",))


def drive(e: Experiment, n: int, start: int = 0, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    seen: dict[str, int] = {}
    for i in range(start, start + n):
        d = e.assign(f"u{i}")
        seen[d.variant] = seen.get(d.variant, 0) + 1
        e.record(d, "click", float(rng.random() < 0.1))
    return seen


def test_a_candidate_is_held_at_weight_zero_and_never_served() -> None:
    e = exp()
    assert e.allocation.weights == {"control": 0.5, "treatment": 0.5, "candidate": 0.0}
    assert "candidate" not in drive(e, 2000)
    a = Analysis.from_experiment(e)
    assert a.data.treatments == ("treatment",)
    srm = a.srm()
    assert srm.expected[2] == 0.0 and srm.observed[2] == 0 and not srm.alarm
    v = a.verdict()  # one treatment: no Bonferroni share, no 'candidate cannot be compared'
    assert v.alpha_per_comparison == pytest.approx(0.05)
    assert not any("candidate" in r for r in v.reasons)
    assert {g.variant for g in a.guardrails()} == {"treatment"}
    assert "candidate" not in a.to_dict()["treatments"]


def test_promote_is_a_new_epoch_with_its_propensities_and_an_event() -> None:
    e = exp()
    drive(e, 1000)
    event = e.promote("candidate", "canary", 0.1)
    assert event.kind == "promote" and event.from_stage == "shadow"
    assert (event.to_stage, event.to_share, event.epoch, event.at) == ("canary", 0.1, 1, 1000.0)
    assert e.allocation.epoch == 1
    w = e.allocation.weights
    assert w["candidate"] == pytest.approx(0.1)
    assert w["control"] == pytest.approx(0.45) and w["treatment"] == pytest.approx(0.45)
    assert e.store.epochs()[-1].weights == pytest.approx((0.45, 0.45, 0.1))
    seen = drive(e, 4000, start=1000)  # new units: ~10% candidate
    assert 0.08 < seen["candidate"] / 4000 < 0.12
    a = Analysis.from_experiment(e)
    assert a.data.treatments == ("treatment", "candidate")
    assert a.srm().pvalue > 0.001  # each unit against its first epoch's weights
    cur = e.stages.current["candidate"]
    assert (cur.stage, cur.share, cur.epoch, cur.stopped) == ("canary", 0.1, 1, True)


def test_promote_then_further_stages_and_ship() -> None:
    e = exp({"control": 0, "treatment": 1, "other": 2})
    e.promote("candidate", "canary", 0.05)
    e.promote("candidate", "ab", 0.5)
    assert e.allocation.weights["candidate"] == pytest.approx(0.5)
    assert sum(e.allocation.weights.values()) == pytest.approx(1.0)
    e.promote("candidate", "ship")
    assert e.allocation.weights == {"control": 0.0, "treatment": 0.0, "other": 0.0,
                                    "candidate": 1.0}
    assert [ev.to_stage for ev in e.stages.events] == ["canary", "ab", "ship"]
    assert {d for d in drive(e, 300)} == {"candidate"}


@pytest.mark.parametrize("args, match", [
    (("nope", "canary", 0.1), r"candidate \('nope'\) must be one of the shadows"),
    (("control", "canary", 0.1), r"candidate \('control'\) must be one of the shadows"),
    (("\ud800" * 1000, "canary", 0.1), r"must be one of the shadows"),
    (("candidate", "shadow", 0.1), r"stage \('shadow'\) must be one of"),
    (("candidate", "beta", 0.1), r"stage \('beta'\) must be one of"),
    (("candidate", "canary", 0.0), r"share \('0.0'\) must be a number in \(0, 1\)"),
    (("candidate", "canary", 1.0), r"share \('1.0'\) must be a number in \(0, 1\)"),
    (("candidate", "canary", math.nan), r"share \('nan'\)"),
    (("candidate", "canary", 1e300), r"share \('1e\+300'\)"),
    (("candidate", "canary", True), r"share \('True'\)"),
    (("candidate", "canary", "0.1"), r"share \('0.1'\)"),
    (("candidate", "ship", 0.5), r"share \('0.5'\) must be None or 1 for 'ship'"),
])
def test_bad_promotions_are_refused_before_anything_changes(args: tuple[Any, ...],
                                                           match: str) -> None:
    e = exp()
    before = (e.allocation, e.stages)
    with pytest.raises(ConfigError, match=match):
        e.promote(*args)
    assert (e.allocation, e.stages) == before and e.allocation.epoch == 0


def test_promote_twice_or_backwards_is_refused() -> None:
    e = exp()
    e.promote("candidate", "canary", 0.1)
    for stage, share in (("canary", 0.1), ("canary", 0.2), ("ab", 0.05)):
        with pytest.raises(ConfigError, match="already at canary"):
            e.promote("candidate", stage, share)
    assert e.allocation.epoch == 1 and len(e.stages.events) == 1


def test_promote_is_refused_in_bandit_mode_and_while_rolled_back() -> None:
    e = exp(reward="click")
    e.configure(mode="bandit")
    assert e.allocation.weights["candidate"] == 0.0  # inactive: the bandit leaves it out
    with pytest.raises(ConfigError, match="'bandit' mode"):
        e.promote("candidate")
    e.configure(mode="ab")
    e.rollback(["test"])
    with pytest.raises(ConfigError, match="guardrail rollback holds"):
        e.promote("candidate")
    e.resume()
    e.promote("candidate")
    assert e.allocation.weights["candidate"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="being rolled out"):
        e.configure(mode="bandit")


def test_weights_and_pause_cannot_move_a_candidate() -> None:
    e = exp()
    with pytest.raises(ConfigError, match=r"weights.candidate \(0.2\).*promote\(\)"):
        e.configure(weights={"control": 0.4, "treatment": 0.4, "candidate": 0.2})
    with pytest.raises(ConfigError, match="is a shadow candidate"):
        e.resume_arm("candidate")
    # weights of the served arms only: the candidate keeps its share
    e.configure(weights={"control": 0.7, "treatment": 0.3})
    assert e.allocation.weights == {"control": 0.7, "treatment": 0.3, "candidate": 0.0}
    e.promote("candidate", "canary", 0.1)
    e.configure(weights={"control": 0.5, "treatment": 0.4, "candidate": 0.1})
    assert e.allocation.weights["candidate"] == pytest.approx(0.1)


def test_weights_of_the_served_arms_after_a_promotion_share_the_rest() -> None:
    e = exp()
    e.promote("candidate", "canary", 0.2)
    e.configure(weights={"control": 0.25, "treatment": 0.75})
    assert e.allocation.weights == pytest.approx({"control": 0.2, "treatment": 0.6,
                                                  "candidate": 0.2})
    with pytest.raises(ConfigError, match="weights must sum to 1"):
        e.configure(weights={"control": 0.5, "treatment": 0.5, "candidate": 0.2})


def test_pausing_a_served_arm_leaves_the_candidate_at_its_stage_share() -> None:
    e = exp({"control": 0, "treatment": 1, "other": 2})
    e.promote("candidate", "canary", 0.1)
    e.pause_arm("treatment")
    w = e.allocation.weights
    assert w["candidate"] == pytest.approx(0.1) and w["treatment"] == 0.0
    assert w["control"] == pytest.approx(0.45) and w["other"] == pytest.approx(0.45)
    e.resume_arm("treatment")
    assert e.allocation.weights["candidate"] == pytest.approx(0.1)
    assert sum(e.allocation.weights.values()) == pytest.approx(1.0)


def test_a_rollback_after_promotion_holds_the_candidate_at_zero_too() -> None:
    e = exp()
    e.promote("candidate", "canary", 0.1)
    e.rollback(["latency"])
    assert e.allocation.weights == {"control": 1.0, "treatment": 0.0, "candidate": 0.0}
    e.resume()
    assert e.allocation.weights["candidate"] == pytest.approx(0.1)


def test_request_level_promotion() -> None:
    e = exp(level="request")
    e.promote("candidate", "ab", 0.5)
    seen: dict[str, int] = {}
    for _ in range(2000):
        d = e.assign(None)
        seen[d.variant] = seen.get(d.variant, 0) + 1
    assert 0.45 < seen["candidate"] / 2000 < 0.55


def test_snapshot_restores_the_stage_and_its_events(tmp_path: Path) -> None:
    e = exp()
    drive(e, 500)
    e.promote("candidate", "canary", 0.2)
    drive(e, 500, start=500)
    path = tmp_path / "s.mrs"
    e.save(str(path))
    fresh = exp()
    fresh.restore(str(path))
    assert fresh.stages == e.stages
    assert fresh.allocation.weights == pytest.approx(e.allocation.weights)
    assert fresh.allocation.epoch == e.allocation.epoch  # same weights: same epoch
    with pytest.raises(ConfigError, match="already at canary"):
        fresh.promote("candidate", "canary", 0.2)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    return None


def test_router_registers_shadows_as_held_arms_and_promote_serves_them() -> None:
    router = ModelRouter(_app, {"control": lambda x: "a"}, {"unit_header": "x-user"},
                         shadows={"candidate": lambda x: "b"})
    assert router.experiment.names == ("control", "candidate")
    assert router.experiment.allocation.weights == {"control": 1.0, "candidate": 0.0}
    a = router.analysis()
    assert a.data.treatments == () and a.to_dict()["rollout"]["current"]["candidate"][
        "stage"] == "shadow"
    router.promote("candidate", "canary", 0.25)
    d = [router.experiment.assign(f"u{i}") for i in range(2000)]
    served = [x for x in d if x.variant == "candidate"]
    assert 0.2 < len(served) / 2000 < 0.3 and served[0].predict(1) == "b"
    text = router.analysis().report()
    assert "Rollout of the shadow candidates:" in text and "promote: candidate shadow" in text
    with pytest.raises(ConfigError, match="is also a variant"):
        ModelRouter(_app, {"control": 1, "x": 2}, {"unit_header": "u"}, shadows={"x": 3})


def test_rollout_candidates_must_be_shadows() -> None:
    cfg = {"unit_header": "u", "rollout": {"treatment": [
        {"stage": "canary", "share": 0.1, "advance_if": "guardrails_pass"},
        {"stage": "ship"}]}}
    with pytest.raises(ConfigError, match="rollout.treatment: a rollout candidate must be a "
                                          "shadow"):
        ModelRouter(_app, {"control": 1, "treatment": 2}, cfg, shadows={"c": 3})
    with pytest.raises(ConfigError, match="unknown candidate 'zzz'"):
        ModelRouter(_app, {"control": 1}, {"unit_header": "u", "rollout": {"zzz": [
            {"stage": "shadow", "advance_if": "guardrails_pass"}, {"stage": "ship"}]}},
            shadows={"c": 3})
    with pytest.raises(ConfigError, match=r"rollout.c\[1\].advance_if reads the primary"):
        RouterConfig(unit_header="u", rollout={"c": [
            {"stage": "shadow", "advance_if": "guardrails_pass"},
            {"stage": "ab", "share": 0.5, "advance_if": "primary_better"}, {"stage": "ship"}]})
