"""The public surface: a sorted __all__ that imports, and the contract names of the issues."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

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


def test_all_names_what_the_package_exports() -> None:
    """httpx's test_exported_members: ``__all__`` is exactly the public names of the package
    (the eager ones and the lazy ones), nothing more or less."""
    for name in ("modelrouter", "modelrouter.stats", "modelrouter.bandit"):
        module = importlib.import_module(name)
        public = {n for n in dir(module) if not n.startswith("_")} - {"annotations",
                                                                        "importlib",
                                                                        "TYPE_CHECKING", "Any"}
        public = {n for n in public if not isinstance(getattr(module, n), type(importlib))}
        assert set(module.__all__) == public, name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        modelrouter.Nope  # noqa: B018


def test_routing_a_request_imports_no_scipy() -> None:
    """The statistics load when used: a service that only routes never imports scipy (a fresh
    interpreter, since this test process has long imported it)."""
    code = """
import asyncio
import sys
from modelrouter import ModelRouter, RouterConfig
from modelrouter.testing import ASGIClient

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

router = ModelRouter(app, {"a": 1, "b": 2}, RouterConfig(metrics={"click": "binary"}))
client = ASGIClient(router)

async def main():
    for i in range(20):
        response = await client.get("/predict", headers={"x-user-id": f"u{i}"})
        assert response.status == 200

asyncio.run(main())
d = router.experiment.assign("u1")
router.record(d, "click", 1)
assert router.experiment.store.snapshot().n_units == 20
print(sorted(m for m in sys.modules if m.split(".")[0] == "scipy")[:3])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
