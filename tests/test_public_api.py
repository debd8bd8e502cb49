"""The public surface: a sorted __all__ that imports, and the contract names of the issues."""

from __future__ import annotations

import importlib

import pytest

import modelrouter

PACKAGES = ["modelrouter", "modelrouter.stats", "modelrouter.bandit", "modelrouter.analysis",
            "modelrouter.store"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert list(exported) == sorted(exported)
    for attr in exported:
        assert getattr(module, attr) is not None, attr


def test_contract_names_exist() -> None:
    from modelrouter.stats import (  # issue 3's public functions
        adjust_pvalues,
        classic_boundaries,
        inflation_factor,
        mde_proportions,
        sample_size_means,
        sample_size_proportions,
        spending_boundaries,
        srm_test,
    )

    assert all(callable(f) for f in (adjust_pvalues, classic_boundaries, inflation_factor,
                                     mde_proportions, sample_size_means,
                                     sample_size_proportions, spending_boundaries, srm_test))
    for name in ("record", "record_unit", "analysis", "configure", "flush", "save", "restore",
                 "record_look", "resume", "reload"):
        assert callable(getattr(modelrouter.ModelRouter, name)), name
    for name in ("compare", "sequential", "always_valid", "srm", "segments", "guardrails",
                 "verdict", "report", "bandit"):
        assert callable(getattr(modelrouter.Analysis, name)), name
    assert issubclass(modelrouter.ConfigError, modelrouter.ModelRouterError)
    assert modelrouter.TOKEN_HEADER == "x-modelrouter-token"
