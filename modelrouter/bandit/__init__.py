"""Bandit posteriors and the Thompson allocator.

The router builds one :class:`ThompsonAllocator` per experiment (``from_config``), calls
``choose(u)`` on the request path, ``update(arm, reward)`` when a reward arrives and
``maybe_refresh()`` off the request path; see ``allocator.py`` for what is thread-safe.

Names load when first used (PEP 562): the routing core imports ``bandit.status`` without
loading scipy; the allocator and posteriors load with the first bandit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelrouter.bandit.allocator import (
        Method,
        ThompsonAllocator,
        Weights,
        arm_index,
        fixed_split,
    )
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
    from modelrouter.bandit.status import BanditStatus

_LAZY = {
    "BanditStatus": "modelrouter.bandit.status",
    "BetaBernoulli": "modelrouter.bandit.posteriors",
    "Method": "modelrouter.bandit.allocator",
    "NormalInverseGamma": "modelrouter.bandit.posteriors",
    "POLICIES": "modelrouter.bandit.policies",
    "POSTERIORS": "modelrouter.bandit.posteriors",
    "PerRequestThompsonPolicy": "modelrouter.bandit.policies",
    "PolicyName": "modelrouter.bandit.policies",
    "PolicySpec": "modelrouter.bandit.policies",
    "Posterior": "modelrouter.bandit.posteriors",
    "PosteriorSummary": "modelrouter.bandit.policies",
    "RewardKind": "modelrouter.bandit.posteriors",
    "SimulationResult": "modelrouter.bandit.simulate",
    "ThompsonAllocator": "modelrouter.bandit.allocator",
    "ThompsonPolicy": "modelrouter.bandit.policies",
    "TopTwoThompsonPolicy": "modelrouter.bandit.policies",
    "Weights": "modelrouter.bandit.allocator",
    "apply_floor": "modelrouter.bandit.policies",
    "arm_index": "modelrouter.bandit.allocator",
    "check_min_share": "modelrouter.bandit.policies",
    "fixed_split": "modelrouter.bandit.allocator",
    "make_policy": "modelrouter.bandit.policies",
    "make_posterior": "modelrouter.bandit.posteriors",
    "p_best_monte_carlo": "modelrouter.bandit.policies",
    "p_best_quadrature": "modelrouter.bandit.policies",
    "simulate_bernoulli": "modelrouter.bandit.simulate",
    "summarize": "modelrouter.bandit.policies",
    "top_two_allocation": "modelrouter.bandit.policies",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelrouter.bandit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BanditStatus",
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
