from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import modelrouter.bandit as bandit
from modelrouter.bandit import BetaBernoulli, NormalInverseGamma, make_posterior
from modelrouter.exceptions import ConfigError, InvalidValueError


def test_public_names_are_sorted_and_importable() -> None:
    assert bandit.__all__ == sorted(bandit.__all__)
    for name in bandit.__all__:
        assert getattr(bandit, name) is not None


# -- Beta-Bernoulli ------------------------------------------------------------------------------


def test_beta_single_and_batch_updates_agree() -> None:
    rng = np.random.default_rng(1)
    arms = rng.integers(0, 3, 500)
    rewards = (rng.random(500) < 0.3).astype(int)
    one, batch = BetaBernoulli(3), BetaBernoulli(3)
    for a, r in zip(arms, rewards, strict=True):
        one.update(int(a), int(r))
    batch.update_batch(arms, rewards)
    np.testing.assert_array_equal(one.successes, batch.successes)
    np.testing.assert_array_equal(one.failures, batch.failures)
    np.testing.assert_array_equal(one.counts(), np.bincount(arms, minlength=3))
    assert one.successes.sum() == rewards.sum()


def test_beta_posterior_mean_cdf_and_samples() -> None:
    post = BetaBernoulli(2, alpha0=0.5, beta0=2.0)
    post.update_batch([0, 0, 0, 1], [1, 0, 1, 0])
    np.testing.assert_allclose(post.alpha, [2.5, 0.5])
    np.testing.assert_allclose(post.beta, [3.0, 3.0])
    np.testing.assert_allclose(post.mean(), [2.5 / 5.5, 0.5 / 3.5])
    x = np.array([0.01, 0.2, 0.5, 0.9])
    expected = np.vstack([stats.beta.cdf(x, 2.5, 3.0), stats.beta.cdf(x, 0.5, 3.0)])
    np.testing.assert_allclose(post.cdf(x), expected, rtol=1e-12)
    draws = post.sample(np.random.default_rng(0), 100_000)
    assert draws.shape == (100_000, 2)
    np.testing.assert_allclose(draws.mean(axis=0), post.mean(), atol=3e-3)


def test_beta_counters_merge_by_addition() -> None:
    rng = np.random.default_rng(2)
    arms = rng.integers(0, 2, 1000)
    rewards = rng.random(1000) < 0.1
    whole, w1, w2 = BetaBernoulli(2), BetaBernoulli(2), BetaBernoulli(2)
    whole.update_batch(arms, rewards)
    w1.update_batch(arms[:400], rewards[:400])
    w2.update_batch(arms[400:], rewards[400:])
    summed = {k: w1.counters()[k] + w2.counters()[k] for k in w1.counters()}
    rebuilt = BetaBernoulli(2).with_counters(summed)
    np.testing.assert_array_equal(rebuilt.alpha, whole.alpha)
    np.testing.assert_array_equal(w1.merge(w2).beta, whole.beta)
    copy = whole.copy()
    copy.update(0, 1)
    assert copy.successes[0] == whole.successes[0] + 1  # the copy is independent


@pytest.mark.parametrize("field", ["alpha0", "beta0"])
@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, "one"])
def test_beta_prior_out_of_range_names_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{field} \({value!r}\)"):
        BetaBernoulli(2, **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("reward", [2, -1, 0.5, math.nan, "1"])
def test_beta_rejects_non_binary_rewards(reward: object) -> None:
    post = BetaBernoulli(2)
    with pytest.raises(InvalidValueError, match="must be 0 or 1"):
        post.update(0, reward)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="must be 0 or 1|must be numbers"):
        post.update_batch([0], [reward])
    assert post.counts().sum() == 0  # nothing recorded


@pytest.mark.parametrize("arm", [-1, 2, 1.0, True])
def test_rejects_bad_arm(arm: object) -> None:
    with pytest.raises(InvalidValueError, match="arm"):
        BetaBernoulli(2).update(arm, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="arm"):
        NormalInverseGamma(2).update(arm, 1.0)  # type: ignore[arg-type]


def test_counters_of_wrong_shape_or_sign_are_refused() -> None:
    with pytest.raises(ConfigError, match="successes"):
        BetaBernoulli(2).with_counters({"successes": [1, 2, 3], "failures": [0, 0]})
    with pytest.raises(ConfigError, match="non-negative"):
        BetaBernoulli(2).with_counters({"successes": [-1, 2], "failures": [0, 0]})
    with pytest.raises(ConfigError, match="lack 'sumsq'"):
        NormalInverseGamma(2).with_counters({"n": [1, 1], "sum": [0, 0]})


# -- Normal-Inverse-Gamma -----------------------------------------------------------------------


def _nig_reference(
    y: np.ndarray, mu0: float, kappa0: float, alpha0: float, beta0: float
) -> tuple[float, float, float]:
    """Textbook NIG update on raw data (two-pass variance): t marginal (df, loc, scale)."""
    n = y.size
    ybar = y.mean()
    kappa_n = kappa0 + n
    mu_n = (kappa0 * mu0 + n * ybar) / kappa_n
    alpha_n = alpha0 + n / 2
    beta_n = beta0 + 0.5 * np.sum((y - ybar) ** 2) + kappa0 * n * (ybar - mu0) ** 2 / (2 * kappa_n)
    return 2 * alpha_n, mu_n, math.sqrt(beta_n / (alpha_n * kappa_n))


def test_nig_matches_textbook_update() -> None:
    rng = np.random.default_rng(3)
    y0, y1 = rng.normal(5.0, 2.0, 40), rng.normal(4.0, 1.0, 7)
    post = NormalInverseGamma(2, mu0=1.0, kappa0=0.5, alpha0=2.0, beta0=3.0)
    post.update_batch(np.r_[np.zeros(40, int), np.ones(7, int)], np.r_[y0, y1])
    df, loc, scale = post.marginal()
    for arm, y in enumerate((y0, y1)):
        ref = _nig_reference(y, 1.0, 0.5, 2.0, 3.0)
        np.testing.assert_allclose([df[arm], loc[arm], scale[arm]], ref, rtol=1e-10)
    np.testing.assert_allclose(post.mean(), loc)
    np.testing.assert_array_equal(post.counts(), [40, 7])


def test_nig_shifted_sums_avoid_cancellation() -> None:
    # latencies-like data: mean 1e8, spread 1 -- raw sums of squares would lose every digit
    y = 1e8 + np.random.default_rng(4).normal(0.0, 1.0, 2000)
    post = NormalInverseGamma(1, mu0=1e8, kappa0=1e-6, alpha0=1.0, beta0=1.0)
    for value in y:
        post.update(0, float(value))
    df, loc, scale = post.marginal()
    ref = _nig_reference(y, 1e8, 1e-6, 1.0, 1.0)
    np.testing.assert_allclose([df[0], loc[0], scale[0]], ref, rtol=1e-6)


def test_nig_marginal_is_student_t_of_the_hierarchical_model() -> None:
    post = NormalInverseGamma(1, mu0=0.0, kappa0=1.0, alpha0=2.0, beta0=2.0)
    post.update_batch([0, 0, 0], [0.3, -0.5, 1.2])  # small n: heavy tails matter
    mu_n, kappa_n, alpha_n, beta_n = (float(v[0]) for v in post._params())
    rng = np.random.default_rng(5)
    sigma2 = beta_n / rng.gamma(alpha_n, size=200_000)
    mu = rng.normal(mu_n, np.sqrt(sigma2 / kappa_n))
    df, loc, scale = (float(v[0]) for v in post.marginal())
    assert stats.kstest(mu, stats.t(df, loc, scale).cdf).pvalue > 1e-3
    direct = post.sample(rng, 200_000)[:, 0]
    assert stats.kstest(direct, stats.t(df, loc, scale).cdf).pvalue > 1e-3
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(post.cdf(x)[0], stats.t.cdf(x, df, loc, scale), rtol=1e-10)


def test_nig_counters_merge_by_addition() -> None:
    rng = np.random.default_rng(6)
    arms, y = rng.integers(0, 3, 900), rng.normal(10.0, 3.0, 900)
    whole = NormalInverseGamma(3, mu0=10.0)
    whole.update_batch(arms, y)
    parts = [NormalInverseGamma(3, mu0=10.0) for _ in range(3)]
    for part, idx in zip(parts, np.array_split(np.arange(900), 3), strict=True):
        part.update_batch(arms[idx], y[idx])
    summed = {k: sum(p.counters()[k] for p in parts) for k in whole.counters()}
    rebuilt = NormalInverseGamma(3, mu0=10.0).with_counters(summed)
    np.testing.assert_allclose(rebuilt.marginal(), whole.marginal(), rtol=1e-12)
    np.testing.assert_allclose(parts[0].merge(parts[1]).merge(parts[2]).mean(), whole.mean())
    with pytest.raises(ConfigError, match="cannot merge"):
        parts[0].merge(NormalInverseGamma(3, mu0=0.0))


@pytest.mark.parametrize(
    ("field", "value"),
    [("kappa0", 0.0), ("alpha0", -2.0), ("beta0", math.nan), ("mu0", math.inf), ("shift", "x")],
)
def test_nig_prior_out_of_range_names_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{field} \({value!r}\)"):
        NormalInverseGamma(2, **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("reward", [math.nan, math.inf, "3", None, True])
def test_nig_rejects_non_finite_rewards(reward: object) -> None:
    post = NormalInverseGamma(2)
    with pytest.raises(InvalidValueError, match="finite number"):
        post.update(1, reward)  # type: ignore[arg-type]
    assert post.counts().sum() == 0


def test_make_posterior_dispatches_and_validates() -> None:
    assert isinstance(make_posterior("binary", 3, alpha0=2.0), BetaBernoulli)
    assert isinstance(make_posterior("continuous", 3, mu0=5.0), NormalInverseGamma)
    with pytest.raises(ConfigError, match=r"reward kind \('poisson'\)"):
        make_posterior("poisson", 2)
    with pytest.raises(ConfigError, match="prior"):
        make_posterior("binary", 2, mu0=1.0)
    with pytest.raises(ConfigError, match=r"n_arms \(0\)"):
        make_posterior("binary", 0)
