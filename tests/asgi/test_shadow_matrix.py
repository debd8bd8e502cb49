"""Shadows in every routing cell: the pairs are always (the arm actually served, the shadow).

For each cell the test serves requests through the real middleware, recomputes every pair from
its own inputs and the model of the arm each response names, and compares the shadow's paired
analysis with ``compare_shadow`` on those pairs (its tests check it against statsmodels and
scipy). Cells: memory store; A/B, bandit and switched at run time (A/B -> bandit -> A/B);
2 and 3 variants; user and request level; fresh, after pause_arm, after a guardrail-style
rollback and resume; valid input plus requests without a unit id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.stats.paired_comparison import ShadowPair, compare_shadow
from modelrouter.testing import ASGIClient
from tests.asgi.test_shadow import APP, Threshold, drain

ARMS = {"control": Threshold(0.5), "treatment": Threshold(0.6), "third": Threshold(0.7)}


def _router(n_arms: int, **cfg: Any) -> ModelRouter:
    arms = dict(list(ARMS.items())[:n_arms])
    config = RouterConfig(salt="matrix", paths=["/predict"], metrics={"click": "binary"},
                          **cfg)
    return ModelRouter(APP, arms, config, shadows={"cand": Threshold(0.55)})


def _run(router: ModelRouter, n: int, between: Callable[[int], None] | None = None,
         seed: int = 0) -> list[tuple[str, float, str, int]]:
    """n requests (users u0..u59, every 7th without a unit id); returns (decision id, x,
    variant, prediction) of each; ``between(i)`` runs before request i."""
    client = ASGIClient(router)
    xs = np.random.default_rng(seed).uniform(0, 1, n)

    async def go() -> list[tuple[str, float, str, int]]:
        out = []
        for i, x in enumerate(xs):
            if between is not None:
                between(i)
            headers = {} if i % 7 == 3 else {"x-user-id": f"u{i % 60}"}
            r = await client.get(f"/predict?x={float(x)!r}", headers=headers)
            assert r.status == 200
            body = r.json()
            out.append((body["decision_id"], float(x), body["variant"], body["prediction"]))
        await drain(router)
        return out

    return asyncio.run(go())


def _check(router: ModelRouter, seen: list[tuple[str, float, str, int]]) -> None:
    for _, x, variant, prediction in seen:
        assert prediction == ARMS[variant].predict([[x]])[0]  # the served arm answered
    seen = [s for s in seen if s[0]]  # uncounted decisions (no unit id) are not shadowed
    truth = {did: int(x > 0.52) for did, x, _, _ in seen}
    for did, _, _, _ in seen:
        router.record_label(did, truth[did])
    pairs = []
    for did, x, _, prediction in seen:
        pairs.append(ShadowPair(prediction, int(x > 0.55), 1.0, 1.0, truth[did]))
    ref = compare_shadow(pairs, shadow="cand", kind="label")
    got = router.analysis().shadow("cand")
    assert (got.n_pairs, got.errors, got.agreement, got.accuracy) == (
        ref.n_pairs, ref.errors, ref.agreement, ref.accuracy)
    assert got.n_pairs == len(seen) > 0
    router.shadows.shutdown()  # type: ignore[union-attr]


@pytest.mark.parametrize("n_arms", [2, 3])
@pytest.mark.parametrize("level", ["user", "request"])
def test_ab_cells(n_arms: int, level: str) -> None:
    router = _router(n_arms, level=level, missing_unit="random")
    _check(router, _run(router, 150))


@pytest.mark.parametrize("n_arms", [2, 3])
def test_bandit_and_switched_cells(n_arms: int) -> None:
    router = _router(n_arms, mode="bandit", reward="click", refresh_every=10)
    seen = _run(router, 120, seed=1)
    assert {v for _, _, v, _ in seen} <= set(list(ARMS)[:n_arms])

    def switch(i: int) -> None:  # A/B -> bandit -> A/B while shadowing
        if i == 40:
            router.configure(mode="ab")
        elif i == 80:
            router.configure(mode="bandit")
        elif i == 110:
            router.configure(mode="ab")
    seen += _run(router, 150, switch, seed=2)
    _check(router, seen)


def test_after_pause_rollback_and_resume() -> None:
    router = _router(3)

    def change(i: int) -> None:
        if i == 30:
            router.pause_arm("third")
        elif i == 60:
            router.experiment.rollback(["a guardrail broke"])
        elif i == 90:
            router.resume("checked")
    seen = _run(router, 140, change, seed=3)
    held = [v for _, _, v, _ in seen[60:90]]
    assert all(v == "control" for v in held)  # the rollback served the control only
    assert "third" not in {v for _, _, v, _ in seen[30:60]}
    _check(router, seen)


def test_a_promoted_candidate_is_not_its_own_shadow() -> None:
    """After promote("cand", canary 0.4) the requests it serves are not shadowed; the others
    still are, paired with the arm that served them (cell: after a control-plane change)."""
    arms = {"control": Threshold(0.5), "treatment": Threshold(0.6)}
    router = ModelRouter(APP, arms, RouterConfig(salt="promo", paths=["/predict"]),
                         shadows={"cand": Threshold(0.55)})
    before = _run(router, 60, seed=4)
    router.promote("cand", stage="canary", share=0.4)
    after = _run(router, 200, seed=5)
    served_by_cand = [s for s in after if s[2] == "cand"]
    assert served_by_cand  # the canary serves some users
    for _, x, _, prediction in served_by_cand:
        assert prediction == int(x > 0.55)
    others = [s for s in before + after if s[0] and s[2] != "cand"]
    got = router.analysis().shadow("cand")
    assert got.n_pairs == len(others)
    for did, _, _, _ in served_by_cand:
        assert not router.record_label(did, 1)  # not a shadowed decision: counted unknown
    _check(router, others)
