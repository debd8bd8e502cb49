"""Config side of segments, guardrails and rollback: defaults, overrides, precise errors."""

from __future__ import annotations

import asyncio

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.guardrail_config import GuardrailSpec
from modelrouter.testing import ASGIClient
from tests.conftest import RouterFactory

METRICS = {"click": "binary", "unsubscribe": "binary",
           "revenue": {"kind": "continuous", "lower_is_better": False}}


def test_default_guardrails_latency_and_error() -> None:
    c = RouterConfig(metrics=METRICS)
    assert c.guardrails == {
        "latency_ms": GuardrailSpec("latency_ms", "increase", 0.10, relative=True),
        "error": GuardrailSpec("error", "increase", 0.01)}


def test_contract_config_and_overrides() -> None:
    c = RouterConfig(metrics=METRICS, primary="click", segments={"platform": "X-Platform"},
                     guardrails={"latency_ms": {"max_increase": 0.2, "relative": True,
                                                "segments": ["platform"]},
                                 "unsubscribe": {"max_increase": 0.002},
                                 "revenue": {"margin": 0.5},
                                 "error": None},
                     rollback=True)
    assert c.segments == {"platform": "x-platform"}
    g = c.guardrails
    assert set(g) == {"latency_ms", "unsubscribe", "revenue"}
    assert g["latency_ms"] == GuardrailSpec("latency_ms", "increase", 0.2, True, ("platform",))
    assert g["unsubscribe"].relative is False and g["unsubscribe"].direction == "increase"
    assert g["revenue"].direction == "decrease"  # higher is better: must not decrease
    assert c.as_dict()["guardrails"]["unsubscribe"] == {"max_increase": 0.002,
                                                        "relative": False}
    # replace() revalidates already-parsed guardrails
    assert c.replace(rollback=False).guardrails == g
    # TOML cannot say None: False removes too
    assert "error" not in RouterConfig(guardrails={"error": False}).guardrails


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"guardrails": {"unsub": {"max_increase": 0.1}}},
     "guardrails.unsub: metric ('unsub') is not declared"),
    ({"guardrails": {"latency_ms": {"max_increase": -0.1}}},
     "guardrails.latency_ms.max_increase (-0.1) must be > 0"),
    ({"guardrails": {"revenue": {"max_decrease": 0}}},
     "guardrails.revenue.max_decrease (0) must be > 0"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "relatve": True}}},
     "guardrails.latency_ms.relatve: unknown key"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "max_decrease": 0.1}}},
     "needs exactly one of"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "segments": ["country"]}}},
     "guardrails.latency_ms.segments ('country') is not a declared segment dimension"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "relative": "yes"}}},
     "guardrails.latency_ms.relative ('yes') must be a bool"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "quantile": 0.95}}},
     "guardrails.latency_ms.quantile (0.95)"),
    ({"primary": "clicks"}, "primary ('clicks') is not a declared metric"),
    ({"segments": ["platform"]}, "segments (['platform']) must be a mapping"),
    ({"segments": {"platform": ""}}, "segments.platform ('') must be a header name"),
    ({"segment_cap": 1}, "segment_cap (1) must be >= 2"),
    ({"min_segment_units": 0}, "min_segment_units (0) must be > 0"),
    ({"guardrail_alpha": 1.5}, "guardrail_alpha (1.5) must be in (0, 1)"),
    ({"rollback": "yes"}, "rollback ('yes') must be a bool"),
    ({"segment_fn": 3}, "segment_fn (3) must be a callable"),
])
def test_bad_config_names_field_and_value(kwargs: dict, message: str) -> None:
    kwargs.setdefault("segments", {"platform": "x-platform"})
    with pytest.raises(ConfigError) as info:
        RouterConfig(metrics=METRICS, **kwargs)
    assert message in str(info.value)


def test_segment_headers_fixed_at_first_exposure_and_capped(
        router_factory: RouterFactory) -> None:
    router = router_factory(segments={"platform": "x-platform", "country": "x-country"},
                            segment_cap=4)
    client = ASGIClient(router)

    async def go() -> None:
        await client.get("/predict", headers={"x-user-id": "a", "x-platform": "ios",
                                              "x-country": "DE"})
        await client.get("/predict", headers={"x-user-id": "a", "x-platform": "android"})
        await client.get("/predict", headers={"x-user-id": "b"})  # missing -> unknown
        for i in range(6):  # a hostile header: only cap - 1 distinct values, then "other"
            await client.get("/predict", headers={"x-user-id": f"h{i}",
                                                  "x-platform": f"junk{i}"})
    asyncio.run(go())
    snap = router.experiment.store.snapshot()
    assert snap.segment_dims == ("platform", "country")
    values = snap.segment_values["platform"]
    # a's second platform still takes a code (the store codes values before looking the unit
    # up) but a stays "ios"; the cap keeps 3 values and "other"
    assert values == ("ios", "android", "unknown", "other") and snap.segment_overflow == 6
    platform = snap.units.segments[:, 0]
    assert values[platform[0]] == "ios"  # unit a kept its first platform
    assert snap.segment_values["country"][snap.units.segments[1, 1]] == "unknown"
    router.record_unit("a", "click", 1)
    a = router.analysis()
    assert a.moments("click", {"platform": "ios"})[0].n + \
        a.moments("click", {"platform": "ios"})[1].n == 1


def test_segment_fn_overrides_headers(router_factory: RouterFactory) -> None:
    def seg(scope: dict) -> dict[str, str]:
        if scope["path"] == "/crash":
            raise RuntimeError("bad callable")
        return {"tier": "gold"}
    router = router_factory(segments={"platform": "x-platform", "tier": None}, segment_fn=seg)
    client = ASGIClient(router)
    r = client.run("GET", "/predict", headers={"x-user-id": "u", "x-platform": "web"})
    assert r.status == 200
    snap = router.experiment.store.snapshot()
    assert snap.segment_values == {"platform": ("web",), "tier": ("gold",)}
