"""Bandit mode through the real Experiment: routing, training, refresh, switch, pause, config.

Refreshes run in the router's background thread; the tests make them deterministic by calling
``experiment.bandit.wait_idle()`` after each feedback, i.e. waiting at every refresh point
until the worker has installed the new weights.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import numpy as np
import pytest

from modelrouter import Analysis, ConfigError, Experiment, ModelRouter, RouterConfig
from modelrouter.store.decisions import HOLDOUT
from modelrouter.testing import ASGIClient

SEEDS_RATES = [0.031, 0.038]


def make(names: tuple[str, ...] = ("a", "b"), seed: int = 0, **config: Any) -> Experiment:
    config.setdefault("metrics", {"click": "binary"})
    config.setdefault("reward", "click")
    config.setdefault("mode", "bandit")
    config.setdefault("level", "request")
    config.setdefault("refresh_seconds", None)  # refresh on counts only: deterministic
    return Experiment({n: n for n in names}, RouterConfig(**config), rng=random.Random(seed))


def drive(exp: Experiment, rates: Any, n: int, seed: int) -> np.ndarray:
    """Route ``n`` requests, record a Bernoulli click for each at once; return the arms.
    ``rates`` is (arms,) or a callable t -> (arms,)."""
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    arms = np.empty(n, dtype=np.intp)
    for t in range(n):
        d, _ = exp.route(None)
        i = exp.names.index(d.variant)
        r = rates(t) if callable(rates) else rates
        exp.record(d, "click", int(u[t] < r[i]))
        exp.bandit.wait_idle()
        arms[t] = i
    return arms


def _seeds(runs: int) -> tuple[float, float]:
    shares, ratios = [], []
    for seed in range(runs):
        exp = make(seed=seed, refresh_every=100, min_share=0.01, missing_reward="omit")
        arms = drive(exp, SEEDS_RATES, 10_000, seed)
        worse = float(np.mean(arms == 0))
        shares.append(1.0 - worse)
        # regret / regret of 50/50 = (n_worse * gap) / (n / 2 * gap)
        ratios.append(2.0 * worse)
        exp.bandit.close()
    return float(np.median(shares)), float(np.median(ratios))


def test_seeds_scenario_through_the_experiment_fast() -> None:
    share, ratio = _seeds(5)
    assert share >= 0.70 and ratio <= 0.6


@pytest.mark.slow
def test_seeds_scenario_through_the_experiment() -> None:
    share, ratio = _seeds(50)
    assert share >= 0.70 and ratio <= 0.6


def test_three_arms_converge_to_the_best() -> None:
    exp = make(("a", "b", "c"), seed=3, refresh_every=100)
    arms = drive(exp, [0.02, 0.03, 0.06], 6000, seed=3)
    assert np.mean(arms[-1000:] == 2) > 0.8
    b = Analysis.from_experiment(exp).bandit()
    assert b.best == "c" and b.p_best["c"] > 0.95
    assert b.weights["c"] == pytest.approx(exp.allocation.weights["c"])
    assert b.regret < b.regret_uniform
    assert set(b.to_dict()["weights"]) == {"a", "b", "c"} and "c" in b.summary()


def test_decision_carries_propensity_epoch_and_mode() -> None:
    exp = make(("a", "b", "c"), holdout=0.3, min_share=0.05)
    st = exp.allocation.state  # type: ignore[attr-defined]  # a BanditAllocation
    d = exp.assign(None)
    assert d.mode == "bandit" and d.epoch == st.epoch
    w = st.weights.probabilities
    assert d.propensity == pytest.approx(0.3 / 3 + 0.7 * w[exp.names.index(d.variant)])
    assert sum(exp.allocation.propensities) == pytest.approx(1.0)
    assert exp.store.snapshot().epochs[-1].mode == "bandit"


def test_asgi_request_state_has_the_propensity() -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["modelrouter"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    router = ModelRouter(app, {"a": 1, "b": 2}, RouterConfig(
        mode="bandit", reward="click", metrics={"click": "binary"}, level="request"))
    client = ASGIClient(router)
    for _ in range(20):
        assert client.run("GET", "/predict").status == 200
    assert all(d.mode == "bandit" and 0 < d.propensity <= 1 for d in seen)
    snap = router.experiment.store.snapshot()
    assert sum(n for n, _ in snap.decisions.values()) == 20
    lat = sum(m["latency_ms"].n * m["latency_ms"].mean_y for _, m in snap.decisions.values())
    assert lat == 20  # the middleware's latency reached the decision-level sums


def test_holdout_decisions_never_train() -> None:
    exp = make(holdout=0.5, refresh_every=10_000)
    decisions = [exp.assign(None) for _ in range(400)]
    for d in decisions:
        exp.record(d, "click", 1)
    snap = exp.store.snapshot()
    held = sum(n for k, (n, _) in snap.decisions.items() if k[3] & HOLDOUT)
    assert 150 < held < 250
    counters = exp.store.peek_training()
    assert counters["successes"].sum() == 400 - held and counters["failures"].sum() == 0


def test_missing_reward_zero_counts_failure_until_the_reward_arrives() -> None:
    exp = make(refresh_every=10_000)  # missing_reward="zero" is the default
    ds = [exp.assign(None) for _ in range(50)]
    c = exp.store.peek_training()
    assert c["failures"].sum() == 50 and c["successes"].sum() == 0
    exp.record(ds[7], "click", 1)  # a delayed reward updates the arm that was served
    arm = exp.names.index(ds[7].variant)
    c = exp.store.peek_training()
    assert c["successes"][arm] == 1 and c["failures"].sum() == 49
    exp.record(ds[7], "click", 1)  # "any": a second click changes nothing
    assert exp.store.peek_training()["successes"].sum() == 1


def test_missing_reward_omit_counts_only_recorded_rewards() -> None:
    exp = make(refresh_every=10_000, missing_reward="omit")
    ds = [exp.assign(None) for _ in range(50)]
    assert exp.store.peek_training()["failures"].sum() == 0
    exp.record(ds[3], "click", 0)
    exp.record(ds[4], "click", 1)
    c = exp.store.peek_training()
    assert c["failures"].sum() == 1 and c["successes"].sum() == 1


def test_reward_cost_makes_a_continuous_reward() -> None:
    exp = make(metrics={"click": "binary", "cost": "continuous"}, reward_cost={"cost": 0.5},
               refresh_every=10_000, missing_reward="omit")
    d = exp.assign(None)
    exp.record(d, "cost", 1.0)  # no reward yet: "omit" leaves it out
    assert exp.store.peek_training()["n"].sum() == 0
    exp.record(d, "click", 1)
    c = exp.store.peek_training()
    assert c["n"].sum() == 1 and c["sum"].sum() == pytest.approx(0.5)  # 1 - 0.5 * 1
    exp.record(d, "cost", 1.0)  # a later cost updates the same decision: 1 - 0.5 * 2
    assert exp.store.peek_training()["sum"].sum() == pytest.approx(0.0)


def test_user_level_feedback_by_unit_trains_the_latest_decision() -> None:
    exp = make(level="user", refresh_every=10_000)
    d1 = exp.assign("u1")
    d2 = exp.assign("u1")
    exp.record_unit("u1", "click", 1)
    c = exp.store.peek_training()
    assert c["successes"].sum() == 1 and c["failures"].sum() == 1
    assert c["successes"][exp.names.index(d2.variant)] == 1
    assert d1.decision_id != d2.decision_id


def test_sticky_units_keep_their_arm_within_the_ttl() -> None:
    now = [1000.0]
    cfg = RouterConfig(mode="bandit", reward="click", metrics={"click": "binary"},
                       sticky_seconds=60.0, sticky_max_units=1000, refresh_seconds=None)
    exp = Experiment({"a": 1, "b": 2, "c": 3}, cfg, rng=random.Random(1), clock=lambda: now[0])
    first = {u: exp.assign(u) for u in (f"u{i}" for i in range(100))}
    again = {u: exp.assign(u) for u in first}
    assert all(again[u].variant == first[u].variant for u in first)
    assert all(again[u].propensity == first[u].propensity for u in first)
    now[0] += 120.0  # past the TTL: fresh draws, some arms change
    later = {u: exp.assign(u) for u in first}
    assert any(later[u].variant != first[u].variant for u in first)


def test_pause_and_resume_an_arm() -> None:
    exp = make(("a", "b", "c"))
    exp.pause_arm("b")
    assert exp.allocation.weights["b"] == 0.0
    assert all(exp.assign(None).variant != "b" for _ in range(300))
    exp.resume_arm("b")
    assert exp.allocation.weights["b"] > 0
    with pytest.raises(ConfigError, match="variant \\('zzz'\\)"):
        exp.pause_arm("zzz")


def test_switch_to_ab_restores_the_ab_weights_and_back() -> None:
    exp = make(weights={"a": 0.7, "b": 0.3}, mode="ab")
    assert exp.mode == "ab" and exp.allocation.weights == {"a": 0.7, "b": 0.3}
    exp.configure(mode="bandit")
    assert exp.mode == "bandit" and exp.assign(None).mode == "bandit"
    exp.configure(mode="ab")
    assert exp.allocation.weights == {"a": 0.7, "b": 0.3} and exp.assign(None).mode == "ab"
    modes = [e.mode for e in exp.store.snapshot().epochs]
    assert modes == ["ab", "bandit", "ab"]
    assert [e.epoch for e in exp.store.snapshot().epochs] == [0, 1, 2]


def test_switching_modes_under_concurrent_load_loses_and_duplicates_nothing() -> None:
    exp = make(mode="ab", refresh_every=50)
    n_threads, per_thread = 6, 1500
    results: list[list[tuple[str, str, int, int]]] = [[] for _ in range(n_threads)]
    stop = threading.Event()

    def worker(k: int) -> None:
        rng = random.Random(k)
        for _ in range(per_thread):
            d = exp.assign(None)
            click = int(rng.random() < 0.3)
            exp.record(d, "click", click)
            results[k].append((d.decision_id, d.mode, d.epoch, click))

    def switcher() -> None:
        mode = "ab"
        while not stop.is_set():
            mode = "bandit" if mode == "ab" else "ab"
            exp.configure(mode=mode)
            stop.wait(0.002)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    s = threading.Thread(target=switcher)
    s.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    s.join()
    exp.bandit.wait_idle()
    rows = [r for part in results for r in part]
    total = n_threads * per_thread
    assert len({r[0] for r in rows}) == total  # every decision id once
    snap = exp.store.snapshot()
    assert int(snap.requests.sum()) == total
    assert sum(n for n, _ in snap.groups.values()) == total
    modes = {e.epoch: e.mode for e in snap.epochs}
    assert all(modes[epoch] == mode for _, mode, epoch, _ in rows)  # mode known per epoch
    assert len({e.epoch for e in snap.epochs}) == len(snap.epochs)  # one counter, no reuse
    bandit_rows = [r for r in rows if r[1] == "bandit"]
    assert 0 < len(bandit_rows) < total
    assert sum(n for n, _ in snap.decisions.values()) == len(bandit_rows)
    clicks = sum(m["click"].n * m["click"].mean_x for _, m in snap.decisions.values())
    assert round(clicks) == sum(r[3] for r in bandit_rows)
    per_epoch: dict[int, int] = {}
    for (_v, epoch, _s, _t), (n, _m) in snap.decisions.items():
        per_epoch[epoch] = per_epoch.get(epoch, 0) + n
    expected: dict[int, int] = {}
    for _, _mode, epoch, _ in bandit_rows:
        expected[epoch] = expected.get(epoch, 0) + 1
    assert per_epoch == expected


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "bandit", "reward": None}, r"reward \(None\)"),
    ({"reward": "purchase"}, r"reward \('purchase'\) is not a declared metric"),
    ({"reward": "latency_ms"}, r"reward \('latency_ms'\)"),
    ({"min_share": 0.6}, r"min_share \(0.6\)"),
    ({"min_share": -0.1}, r"min_share \(-0.1\)"),
    ({"prior": {"alpha0": 0}}, r"prior.alpha0 \(0\)"),
    ({"prior": {"mu0": 1.0}}, r"prior.mu0"),
    ({"refresh_every": 0}, r"refresh_every \(0\)"),
    ({"refresh_seconds": -1}, r"refresh_seconds \(-1\)"),
    ({"bandit_policy": "greedy"}, r"bandit_policy \('greedy'\)"),
    ({"missing_reward": "drop"}, r"missing_reward \('drop'\)"),
    ({"holdout": 1.0}, r"holdout \(1.0\)"),
    ({"sticky_seconds": 0}, r"sticky_seconds \(0\)"),
    ({"reward_cost": {"nope": 1.0}}, r"reward_cost.nope"),
    ({"reward_cost": {"latency_ms": float("nan")}}, r"reward_cost.latency_ms \(nan\)"),
])
def test_bad_config_names_field_and_value(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"metrics": {"click": "binary"}, "reward": "click", "mode": "bandit"}
    with pytest.raises(ConfigError, match=message):
        RouterConfig(**{**base, **kwargs})


def test_floor_times_arms_above_one_is_refused_with_the_arm_count() -> None:
    cfg = RouterConfig(mode="bandit", reward="click", metrics={"click": "binary"},
                       min_share=0.4)
    with pytest.raises(ConfigError, match=r"min_share \(0.4\).*3 arms"):
        Experiment({"a": 1, "b": 2, "c": 3}, cfg)


def test_bandit_mode_without_reward_is_refused_at_run_time() -> None:
    exp = Experiment({"a": 1, "b": 2}, RouterConfig(metrics={"click": "binary"}))
    with pytest.raises(ConfigError, match="reward"):
        exp.configure(mode="bandit")
    assert exp.mode == "ab"


def test_restore_in_bandit_mode_keeps_bandit_routing_and_drops_stale_decision_sums(
        tmp_path: Any) -> None:
    path = str(tmp_path / "bandit.mrsnap")
    first = make(level="user", refresh_every=10)
    for i in range(30):
        first.record(first.assign(f"u{i}"), "click", i % 2)
    first.save(path)
    second = make(level="user", refresh_every=10, seed=1)
    for i in range(40):  # decisions of this process, in its own epochs
        second.assign(f"other{i}")
    second.restore(path)
    # its decision groups referred to epochs the restore replaced: they are gone
    assert second.store.snapshot().decisions == {}
    d = second.assign("fresh")
    assert d.mode == "bandit" and second.mode == "bandit"
    second.record(d, "click", 1)
    snap = second.store.snapshot()
    assert d.epoch in {e.epoch for e in snap.epochs}
    [(n, metrics)] = snap.decisions.values()  # tracked as a bandit decision, with its click
    assert n == 1 and metrics["click"].mean_x == 1.0
    first.bandit.close()
    second.bandit.close()


def test_snapshot_never_sees_an_exposure_without_its_decision() -> None:
    exp = make(refresh_every=1_000_000)
    stop = threading.Event()

    def route() -> None:
        while not stop.is_set():
            exp.route(None)

    threads = [threading.Thread(target=route) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            snap = exp.store.snapshot()
            assert sum(n for n, _ in snap.decisions.values()) == int(snap.requests.sum())
    finally:
        stop.set()
        for t in threads:
            t.join()
    exp.bandit.close()


def _train(exp: Experiment, rates: list[float], n: int, seed: int) -> None:
    """Route and reward ``n`` decisions (a unit per decision at user level)."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        d = exp.assign(None if exp.config.level == "request" else f"u{seed}-{t}")
        exp.record(d, "click", int(rng.random() < rates[exp.names.index(d.variant)]))
        exp.bandit.wait_idle()


def _state(exp: Experiment) -> dict[str, Any]:
    """Everything of the bandit a restore must bring back."""
    status = exp.bandit_status()
    assert status is not None and exp.bandit is not None
    w = exp.bandit.allocator.weights
    return {"counts": status.counts, "mean": status.mean, "weights": status.weights,
            "bandit_weights": status.bandit_weights, "paused": status.paused,
            "epoch": status.epoch, "p_best_of_weights": w.p_best, "alloc_epoch": w.epoch,
            "active": w.active, "training": {k: v.tolist() for k, v in
                                             exp.store.peek_training().items()},
            "pending": exp.bandit.tracker.pending,
            "history": Analysis.from_experiment(exp).bandit().history}


@pytest.mark.parametrize("level", ["request", "user"])
@pytest.mark.parametrize("rates", [[0.05, 0.6], [0.05, 0.1, 0.6]])
def test_snapshot_round_trip_keeps_the_bandits_counters_weights_and_history(
        tmp_path: Any, level: str, rates: list[float]) -> None:
    """Measured in issue 13: restore() forgot the bandit (counts [703, 5297] and weights
    [0.01, 0.99] before saving, [0, 0] and [0.5, 0.5] after)."""
    names = ("a", "b", "c")[:len(rates)]
    path = str(tmp_path / "bandit.mrsnap")
    first = make(names, level=level, refresh_every=40, min_share=0.01)
    _train(first, rates, 1200, 0)
    for i in range(7):  # training updates not yet taken by a refresh
        first.record(first.assign(None if level == "request" else f"late{i}"), "click", 1)
    first.bandit.wait_idle()
    before = _state(first)
    assert max(before["bandit_weights"]) > 0.9  # the weights moved
    assert first.save(path).bandit == "saved"
    fresh = make(names, level=level, refresh_every=40, min_share=0.01, seed=5)
    info = fresh.restore(path)
    assert info.bandit.startswith("restored")
    after = _state(fresh)
    assert after == before
    # the posterior holds the counters (the tracker's cumulative ones)
    assert {k: v.tolist() for k, v in fresh.bandit.allocator.counters().items()} == \
        before["training"]
    # the next decisions use the restored weights, in the restored epoch
    for t in range(30):
        d = fresh.assign(None if level == "request" else f"next{t}")
        assert d.epoch == before["epoch"] and d.mode == "bandit"
        assert d.propensity == before["weights"][names.index(d.variant)]
    # and training continues from the restored counters
    d = fresh.assign(None if level == "request" else "one-more")
    fresh.record(d, "click", 1)
    fresh.bandit.wait_idle()
    grown = fresh.store.peek_training()["successes"]
    assert grown.sum() == np.sum(before["training"]["successes"]) + 1
    first.bandit.close()
    fresh.bandit.close()


def test_a_paused_arm_stays_paused_after_a_restore(tmp_path: Any) -> None:
    path = str(tmp_path / "paused.mrsnap")
    first = make(("a", "b", "c"), refresh_every=30)
    _train(first, [0.1, 0.5, 0.3], 300, 1)
    first.pause_arm("c")
    before = _state(first)
    first.save(path)
    fresh = make(("a", "b", "c"), refresh_every=30, seed=2)
    fresh.restore(path)
    assert _state(fresh) == before and before["paused"] == (False, False, True)
    fresh.state.refresh_bandit(force=True)  # a refresh keeps the operator's pause
    status = fresh.bandit_status()
    assert status is not None and status.paused == (False, False, True)
    assert status.weights[2] == 0.0
    first.bandit.close()
    fresh.bandit.close()


def test_per_request_policy_restores_its_posterior_snapshot(tmp_path: Any) -> None:
    path = str(tmp_path / "per-request.mrsnap")
    first = make(bandit_policy="thompson-per-request", refresh_every=40)
    _train(first, [0.05, 0.6], 400, 3)
    first.save(path)
    fresh = make(bandit_policy="thompson-per-request", refresh_every=40, seed=4)
    fresh.restore(path)
    assert _state(fresh) == _state(first)
    snap = fresh.bandit.allocator.weights.snapshot
    assert snap is not None
    assert np.allclose(snap.counts(), fresh.bandit.allocator.posterior.counts())
    assert sum(fresh.assign(None).variant == "b" for _ in range(200)) > 150
    first.bandit.close()
    fresh.bandit.close()


def test_a_refresh_that_changes_nothing_keeps_the_epoch() -> None:
    """Cells: memory store, one process, bandit, 2 arms, request level. Once one arm is
    clearly better, its share sits at 1 - min_share and scheduled refreshes move nothing:
    they keep the epoch (and its propensities), so epochs stop growing; the posterior still
    learns (the counters go on), and a forced refresh still starts an epoch."""
    from modelrouter.routing.bandit import NEGLIGIBLE_CHANGE

    exp = make(refresh_every=100, min_share=0.05)
    assert exp.bandit is not None
    drive(exp, [0.02, 0.6], 1_500, seed=1)  # b is far better: P(b best) ~ 1
    epochs_before = len(exp.store.epochs())
    weights_before = exp.state.allocation.propensities
    assert weights_before[1] == pytest.approx(0.95, abs=1e-3)
    drive(exp, [0.02, 0.6], 3_000, seed=2)  # about 30 more scheduled refreshes
    assert len(exp.store.epochs()) == epochs_before  # none moved a share by 0.5 pp
    assert exp.state.allocation.propensities == weights_before
    status = exp.bandit_status()
    assert status is not None and status.bandit_weights == weights_before  # no holdout
    assert sum(status.counts) >= 4_500  # the posterior kept learning meanwhile
    assert exp.state.refresh_bandit(force=True) is not None
    assert len(exp.store.epochs()) == epochs_before + 1
    # and a real change does start an epoch: the better arm gets worse
    drive(exp, [0.95, 0.0], 6_000, seed=3)  # ~285 rewards: refreshes at 100 and 200
    assert len(exp.store.epochs()) > epochs_before + 1
    changes = [max(abs(x - y) for x, y in zip(e.weights, f.weights))
               for e, f in zip(exp.store.epochs(), exp.store.epochs()[1:])]
    assert min(changes[epochs_before:]) >= NEGLIGIBLE_CHANGE  # scheduled ones: real moves


def test_the_change_threshold_doubles_every_epoch_budget() -> None:
    """The hard bound on epochs: 0.5 pp, doubled every EPOCH_BUDGET epochs; past ~8,000
    epochs no scheduled refresh starts one (a change of the active arms always does)."""
    from modelrouter.bandit.allocator import Weights
    from modelrouter.routing.bandit import EPOCH_BUDGET

    exp = make()
    assert exp.bandit is not None
    old = Weights.fixed([0.5, 0.5])
    new = Weights.fixed([0.508, 0.492])  # moves 0.8 pp
    assert not exp.bandit.negligible(old, new, 0)
    assert not exp.bandit.negligible(old, new, EPOCH_BUDGET - 1)
    assert exp.bandit.negligible(old, new, EPOCH_BUDGET)  # threshold 1 pp
    far = Weights.fixed([0.99, 0.01])
    assert not exp.bandit.negligible(old, far, 6 * EPOCH_BUDGET)  # 32 pp < 49 pp moved
    assert exp.bandit.negligible(old, far, 7 * EPOCH_BUDGET)  # 64 pp
    assert exp.bandit.negligible(old, far, 8 * EPOCH_BUDGET)  # 128 pp: nothing starts one
    paused = Weights(old.probabilities, old.p_best, 0, 0.0, "thompson", 0.0, (True, False))
    assert not exp.bandit.negligible(old, paused, 10 * EPOCH_BUDGET)
