from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import special, stats

from modelrouter.bandit import (
    BetaBernoulli,
    NormalInverseGamma,
    ThompsonAllocator,
    TopTwoThompsonPolicy,
    Weights,
    apply_floor,
    make_policy,
    p_best_monte_carlo,
    p_best_quadrature,
    summarize,
    top_two_allocation,
)
from modelrouter.exceptions import ConfigError


def _beta(successes: list[float], failures: list[float], **prior: float) -> BetaBernoulli:
    post = BetaBernoulli(len(successes), **prior)
    post.successes[:] = successes
    post.failures[:] = failures
    return post


def _miller(a1: float, b1: float, a2: int, b2: float) -> float:
    """P(X2 > X1) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2), a2 integer (Evan Miller's sum)."""
    i = np.arange(a2)
    terms = (special.betaln(a1 + i, b1 + b2) - np.log(b2 + i) - special.betaln(1 + i, b2)
             - special.betaln(a1, b1))
    return float(np.sum(np.exp(terms)))


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- P(best) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "f"),
    [([0, 0], [0, 0]), ([31, 38], [969, 962]), ([4, 2], [196, 148]), ([309, 379], [9691, 9621]),
     ([1, 0], [0, 2]), ([0, 60], [2000, 1400])],
)
def test_quadrature_matches_closed_form_for_two_beta_arms(s: list[float], f: list[float]) -> None:
    post = _beta(s, f)
    exact = _miller(post.alpha[0], post.beta[0], int(post.alpha[1]), post.beta[1])
    p = p_best_quadrature(post)
    assert p[1] == pytest.approx(exact, abs=1e-4)
    assert p.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("n_arms", [2, 3, 10])
def test_monte_carlo_agrees_with_quadrature(n_arms: int) -> None:
    rng = np.random.default_rng(n_arms)
    successes = rng.integers(20, 45, n_arms).astype(float)
    post = _beta(successes.tolist(), (1000 - successes).tolist())
    draws = 200_000
    mc = p_best_monte_carlo(post, rng, draws=draws)
    quad = p_best_quadrature(post)
    se = np.sqrt(quad * (1 - quad) / draws) + 1e-9
    assert np.all(np.abs(mc - quad) <= 4.5 * se + 1e-4)


def test_quadrature_handles_gaussian_and_small_priors() -> None:
    rng = np.random.default_rng(7)
    nig = NormalInverseGamma(3, mu0=0.0)
    nig.update_batch(np.repeat([0, 1, 2], 6), rng.normal(np.repeat([0.0, 0.4, 0.5], 6), 1.0))
    quad = p_best_quadrature(nig)
    mc = p_best_monte_carlo(nig, rng, draws=200_000)
    np.testing.assert_allclose(mc, quad, atol=5e-3)
    np.testing.assert_allclose(p_best_quadrature(NormalInverseGamma(4)), 0.25)  # prior: t, df 2
    jeffreys = _beta([0, 3], [5, 1], alpha0=0.5, beta0=0.5)  # infinite densities at 0 and 1
    np.testing.assert_allclose(
        p_best_quadrature(jeffreys), p_best_monte_carlo(jeffreys, rng, draws=400_000), atol=4e-3
    )


def test_paused_arms_get_zero_and_leave_the_others_exact() -> None:
    post = _beta([30, 40, 35], [970, 960, 965])
    p = p_best_quadrature(post, active=[True, False, True])
    assert p[1] == 0.0
    sub = _beta([30, 35], [970, 965])
    np.testing.assert_allclose(p[[0, 2]], p_best_quadrature(sub), atol=1e-12)


def test_summary_p_best_and_expected_loss_from_the_same_draws() -> None:
    post = _beta([30, 40, 35], [970, 960, 965])
    s = summarize(post, np.random.default_rng(8), draws=100_000)
    assert s.p_best.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(s.p_best, p_best_quadrature(post), atol=6e-3)
    assert np.all(s.expected_loss >= 0)
    assert s.expected_loss.argmin() == s.p_best.argmax() == 1
    # independent check of arm 0's loss: E[max] - E[theta_0] by 1-d integration of 1 - prod F
    x = np.linspace(0, 0.2, 200_001)
    e_max = np.trapezoid(1 - np.prod(post.cdf(x), axis=0), x)
    assert s.expected_loss[0] == pytest.approx(e_max - post.mean()[0], abs=2e-4)
    assert set(s.to_dict()) == {"mean", "p_best", "expected_loss", "draws"}


# -- policies and the floor ----------------------------------------------------------------------


def test_additive_floor() -> None:
    w = np.array([0.7, 0.3, 0.0])
    np.testing.assert_allclose(apply_floor(w, 0.01), 0.01 + (1 - 0.03) * w)
    np.testing.assert_allclose(apply_floor(w, 1 / 3), [1 / 3] * 3)
    np.testing.assert_allclose(apply_floor(w, 0.1, active=[True, False, True]), [0.9, 0.0, 0.1])


@pytest.mark.parametrize("min_share", [-0.01, 0.34, 1.0, math.nan, "x"])
def test_floor_out_of_range_is_a_config_error(min_share: object) -> None:
    with pytest.raises(ConfigError, match=rf"min_share \({min_share!r}\)"):
        ThompsonAllocator(BetaBernoulli(3), min_share=min_share)  # type: ignore[arg-type]


def test_unknown_policy_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"policy \('ucb'\) must be one of 'thompson'"):
        ThompsonAllocator(BetaBernoulli(2), policy="ucb")
    with pytest.raises(ConfigError, match=r"beta \(1.5\)"):
        make_policy("top-two", beta=1.5)
    with pytest.raises(ConfigError, match="not valid for 'thompson'"):
        make_policy("thompson", beta=0.5)
    with pytest.raises(ConfigError, match=r"refresh_every \(0\)"):
        ThompsonAllocator(BetaBernoulli(2), refresh_every=0)
    with pytest.raises(ConfigError, match=r"refresh_seconds \(-1\)"):
        ThompsonAllocator(BetaBernoulli(2), refresh_seconds=-1)
    with pytest.raises(ConfigError, match=r"method \('exact'\)"):
        ThompsonAllocator(BetaBernoulli(2), method="exact")  # type: ignore[arg-type]
    assert make_policy("top-two", beta=0.3) == TopTwoThompsonPolicy(beta=0.3)
    assert TopTwoThompsonPolicy().as_dict() == {"policy": "top-two", "beta": 0.5}


def test_top_two_formula_matches_a_simulation_of_the_procedure() -> None:
    post = _beta([30, 40, 37, 20], [970, 960, 963, 980])
    p = p_best_quadrature(post)
    rng = np.random.default_rng(9)
    n = 40_000
    leaders = post.sample(rng, n).argmax(axis=1)
    pool = post.sample(rng, 20 * n).argmax(axis=1)  # independent redraws for the challengers
    played = leaders.copy()
    coin = rng.random(n) >= 0.5
    cursor = 0
    for t in np.flatnonzero(coin):
        while pool[cursor] == leaders[t]:
            cursor += 1
        played[t] = pool[cursor]
        cursor += 1
    freq = np.bincount(played, minlength=4) / n
    np.testing.assert_allclose(top_two_allocation(p, 0.5), freq, atol=0.012)
    np.testing.assert_allclose(top_two_allocation(p, 1.0), p)
    np.testing.assert_allclose(top_two_allocation([1.0, 0.0, 0.0], 0.5), [0.5, 0.25, 0.25])


# -- weights and choose ----------------------------------------------------------------------------


def test_choose_maps_uniforms_to_arms_with_their_propensity() -> None:
    w = Weights.fixed([0.2, 0.0, 0.5, 0.3])
    assert w.choose(0.0) == (0, 0.2)
    assert w.choose(0.2)[0] == 2  # boundaries go right; the zero-weight arm is skipped
    assert w.choose(0.999999999)[0] == 3
    u = (np.arange(100_000) + 0.5) / 100_000
    arms = np.array([w.choose(float(x))[0] for x in u[::10]])
    np.testing.assert_allclose(np.bincount(arms, minlength=4) / arms.size, w.probabilities,
                               atol=1e-3)
    batch_arms, batch_props = w.choose_batch(u[::10])
    np.testing.assert_array_equal(batch_arms, arms)
    np.testing.assert_allclose(batch_props, np.asarray(w.probabilities)[arms])
    for bad in (-0.1, 1.0, math.nan):
        with pytest.raises(ValueError, match="u"):
            w.choose(bad)
    with pytest.raises(ConfigError, match="weights"):
        Weights.fixed([0.0, 0.0])


# -- the allocator -------------------------------------------------------------------------------


def test_initial_weights_are_uniform_and_refresh_bumps_the_epoch() -> None:
    clock = _Clock()
    alloc = ThompsonAllocator(BetaBernoulli(4), refresh_every=10, refresh_seconds=5.0, clock=clock)
    first = alloc.weights
    assert first.epoch == alloc.epoch == 0
    np.testing.assert_allclose(first.probabilities, 0.25)
    assert not alloc.should_refresh()
    for _ in range(9):
        alloc.update(3, 1)
    assert not alloc.should_refresh() and alloc.maybe_refresh() is None
    alloc.update(3, 1)
    assert alloc.should_refresh()
    second = alloc.maybe_refresh()
    assert second is not None and second is alloc.weights and second.epoch == 1
    assert second.probabilities[3] > 0.5
    np.testing.assert_allclose(first.probabilities, 0.25)  # old snapshot untouched
    assert alloc.pending_rewards == 0


def test_time_trigger_needs_at_least_one_new_reward() -> None:
    clock = _Clock()
    alloc = ThompsonAllocator(BetaBernoulli(2), refresh_every=100, refresh_seconds=1.0,
                              clock=clock)
    clock.now += 10
    assert not alloc.should_refresh()  # nothing new to learn
    alloc.update(0, 0)
    assert alloc.should_refresh()
    assert alloc.should_refresh(n_new_rewards=1, now=clock.now)
    assert not alloc.should_refresh(n_new_rewards=1, now=clock.now - 9.5)
    assert alloc.refresh().created_at == clock.now
    never = ThompsonAllocator(BetaBernoulli(2), refresh_seconds=None, clock=clock)
    never.update(0, 1)
    clock.now += 1e9
    assert not never.should_refresh()


def test_pause_and_resume() -> None:
    alloc = ThompsonAllocator(BetaBernoulli(3), min_share=0.05)
    paused = alloc.pause(1)
    assert paused.probabilities[1] == 0.0 and paused.p_best[1] == 0.0
    np.testing.assert_allclose(paused.probabilities, [0.5, 0.0, 0.5])
    assert all(paused.choose(u)[0] != 1 for u in np.linspace(0, 0.999, 500))
    assert alloc.epoch == 1
    assert alloc.resume(1).probabilities[1] == pytest.approx(1 / 3)
    alloc.pause(0)
    alloc.pause(1)
    with pytest.raises(ConfigError, match=r"arm \(2\) is the last active arm"):
        alloc.pause(2)
    with pytest.raises(ConfigError, match=r"arm \(7\)"):
        alloc.pause(7)


def test_load_counters_merges_workers() -> None:
    rng = np.random.default_rng(10)
    workers = [ThompsonAllocator(BetaBernoulli(2), seed=i) for i in range(3)]
    for w in workers:
        w.update_batch(rng.integers(0, 2, 50), rng.integers(0, 2, 50))
    merged = {k: sum(w.counters()[k] for w in workers) for k in workers[0].counters()}
    leader = ThompsonAllocator(BetaBernoulli(2), refresh_every=100)
    leader.load_counters(merged)
    assert leader.pending_rewards == 150 and leader.should_refresh()
    np.testing.assert_array_equal(leader.posterior.counts().sum(), 150)


def test_per_request_draws_match_their_propensities() -> None:
    post = _beta([30, 40, 37], [970, 960, 963])
    alloc = ThompsonAllocator(post, policy="thompson-per-request", min_share=0.05, seed=11)
    weights = alloc.weights
    np.testing.assert_allclose(weights.probabilities,
                               0.05 + 0.85 * np.asarray(weights.p_best), atol=1e-12)
    picks = [alloc.draw() for _ in range(20_000)]
    arms = np.array([a for a, _ in picks])
    assert all(p == weights.probabilities[a] for a, p in picks)
    counts = np.bincount(arms, minlength=3)
    assert stats.chisquare(counts, 20_000 * np.asarray(weights.probabilities)).pvalue > 1e-3
    alloc.update(0, 1)  # the live posterior moves; the snapshot (and propensities) do not
    assert alloc.weights.snapshot is not None
    assert alloc.weights.snapshot.successes[0] == 30


def test_generators_differ_between_allocators_and_after_fork() -> None:
    a, b = ThompsonAllocator(BetaBernoulli(2)), ThompsonAllocator(BetaBernoulli(2))
    assert a.rng.random() != b.rng.random()
    s1 = ThompsonAllocator(BetaBernoulli(2), seed=5)
    s2 = ThompsonAllocator(BetaBernoulli(2), seed=5)
    assert s1.rng.random() == s2.rng.random()
    with pytest.raises(ConfigError, match="not both"):
        ThompsonAllocator(BetaBernoulli(2), seed=1, rng=np.random.default_rng(1))
    if not hasattr(os, "fork"):
        return
    parent_state = a.rng.bit_generator.state
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the at-fork hook must have re-seeded the unseeded allocator
        os.write(write, repr(a.rng.random()).encode())
        os._exit(0)
    os.close(write)
    child_draw = float(os.read(read, 100).decode())
    os.waitpid(pid, 0)
    os.close(read)
    a.rng.bit_generator.state = parent_state
    assert child_draw != a.rng.random()


def test_from_config_and_continuous_rewards() -> None:
    alloc = ThompsonAllocator.from_config(3, reward="continuous", prior={"mu0": 10.0},
                                          policy="top-two", beta=0.6, seed=1)
    assert isinstance(alloc.posterior, NormalInverseGamma) and alloc.policy.name == "top-two"
    rng = np.random.default_rng(12)
    arms = rng.integers(0, 3, 300)
    alloc.update_batch(arms, rng.normal(10.0 + arms, 1.0))
    weights = alloc.refresh()
    assert np.argmax(weights.p_best) == 2
    assert "top-two" in repr(alloc)
    assert set(weights.to_dict()) >= {"epoch", "probabilities", "p_best"}
    with pytest.raises(ConfigError, match="reward kind"):
        ThompsonAllocator.from_config(2, reward="ordinal")
