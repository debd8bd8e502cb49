"""Bandit posteriors and the Thompson allocator.

The router builds one :class:`ThompsonAllocator` per experiment (``from_config``), calls
``choose(u)`` on the request path, ``update(arm, reward)`` when a reward arrives and
``maybe_refresh()`` off the request path; see ``allocator.py`` for what is thread-safe.
"""

from modelrouter.bandit.allocator import Method, ThompsonAllocator, Weights, arm_index, fixed_split
from modelrouter.bandit.policies import (
    POLICIES,
    PerRequestThompsonPolicy,
    PolicyName,
    PolicySpec,
    PosteriorSummary,
    ThompsonPolicy,
    TopTwoThompsonPolicy,
    apply_floor,
    check_min_share,
    make_policy,
    p_best_monte_carlo,
    p_best_quadrature,
    summarize,
    top_two_allocation,
)
from modelrouter.bandit.posteriors import (
    POSTERIORS,
    BetaBernoulli,
    NormalInverseGamma,
    Posterior,
    RewardKind,
    make_posterior,
)
from modelrouter.bandit.simulate import SimulationResult, simulate_bernoulli

__all__ = [
    "BetaBernoulli",
    "Method",
    "NormalInverseGamma",
    "POLICIES",
    "POSTERIORS",
    "PerRequestThompsonPolicy",
    "PolicyName",
    "PolicySpec",
    "Posterior",
    "PosteriorSummary",
    "RewardKind",
    "SimulationResult",
    "ThompsonAllocator",
    "ThompsonPolicy",
    "TopTwoThompsonPolicy",
    "Weights",
    "apply_floor",
    "arm_index",
    "check_min_share",
    "fixed_split",
    "make_policy",
    "make_posterior",
    "p_best_monte_carlo",
    "p_best_quadrature",
    "simulate_bernoulli",
    "summarize",
    "top_two_allocation",
]
