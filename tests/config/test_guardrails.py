"""Config side of segments, guardrails and rollback: defaults, overrides, precise errors."""

from __future__ import annotations

import asyncio

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.config.guardrails import GuardrailSpec
from modelrouter.testing import ASGIClient
from tests.conftest import RouterFactory

METRICS = {"click": "binary", "unsubscribe": "binary",
           "revenue": {"kind": "continuous", "lower_is_better": False}}


def test_default_guardrails_latency_and_error() -> None:
    c = RouterConfig(metrics=METRICS)
    assert c.guardrails == {
        "latency_ms": GuardrailSpec("latency_ms", "increase", 0.10, relative=True),
        "latency_ms p95": GuardrailSpec("latency_ms", "increase", 0.10, relative=True,
                                        quantile=0.95),
        "error": GuardrailSpec("error", "increase", 0.01)}
    assert c.guardrails["latency_ms p95"].describe() == (
        "latency_ms p95 must not increase by more than 10% of the control's p95")


def test_latency_guardrails_override_and_remove_one_at_a_time() -> None:
    def keys(guardrails: dict) -> dict[str, tuple]:
        g = RouterConfig(metrics=METRICS, guardrails=guardrails).guardrails
        return {k: (s.margin, s.quantile) for k, s in g.items() if s.metric == "latency_ms"}

    # the contract's form: a quantile spec replaces the p95 default, the mean one stays
    assert keys({"latency_ms": {"max_increase": 0.2, "relative": True, "quantile": 0.95}}) == {
        "latency_ms": (0.1, None), "latency_ms p95": (0.2, 0.95)}
    # a mean spec replaces the mean only
    assert keys({"latency_ms": {"max_increase": 0.3, "relative": True}}) == {
        "latency_ms": (0.3, None), "latency_ms p95": (0.1, 0.95)}
    # by key: override or remove the p95 alone; another quantile is added beside it
    assert keys({"latency_ms p95": {"max_increase": 0.05, "relative": True}}) == {
        "latency_ms": (0.1, None), "latency_ms p95": (0.05, 0.95)}
    assert keys({"latency_ms p95": None}) == {"latency_ms": (0.1, None)}
    assert keys({"latency_ms p99": {"max_increase": 0.2, "relative": True}}) == {
        "latency_ms": (0.1, None), "latency_ms p95": (0.1, 0.95), "latency_ms p99": (0.2, 0.99)}
    # the metric's name with None removes all; keys given beside it win in any order
    assert keys({"latency_ms": None}) == {}
    for g in ({"latency_ms": None, "latency_ms p95": {"max_increase": 0.1, "relative": True}},
              {"latency_ms p95": {"max_increase": 0.1, "relative": True}, "latency_ms": False}):
        assert keys(g) == {"latency_ms p95": (0.1, 0.95)}
    # the parsed form round-trips through as_dict / from_dict (TOML)
    c = RouterConfig(metrics=METRICS, guardrails={"latency_ms p95": {"max_increase": 0.2,
                                                                     "relative": True}})
    assert c.as_dict()["guardrails"]["latency_ms p95"] == {"max_increase": 0.2,
                                                           "relative": True, "quantile": 0.95}
    assert RouterConfig.from_dict(c.as_dict()).guardrails == c.guardrails


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
    assert set(g) == {"latency_ms", "latency_ms p95", "unsubscribe", "revenue"}
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
    ({"guardrails": {"error": {"max_increase": 0.1, "quantile": 0.95}}},
     "guardrails.error.quantile (0.95): quantile guardrails need the per-request distribution"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "quantile": 1.5}}},
     "guardrails.latency_ms.quantile (1.5) must be a number in (0, 1)"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "quantile": True}}},
     "guardrails.latency_ms.quantile (True) must be a number in (0, 1)"),
    ({"guardrails": {"latency_ms": {"max_increase": 0.1, "quantile": 0.95,
                                    "segments": ["platform"]}}},
     "guardrails.latency_ms.segments (['platform']): quantile guardrails are checked overall"),
    ({"guardrails": {"latency_ms p95": {"max_increase": 0.1, "quantile": 0.9}}},
     "guardrails.latency_ms p95.quantile (0.9) contradicts the key 'latency_ms p95'"),
    ({"guardrails": {"latency_ms p95.0": None}},
     "guardrails.latency_ms p95.0: write the key as 'latency_ms p95'"),
    ({"guardrails": {"latency_ms p100": None}},
     "guardrails.latency_ms p100 (1.0) must be a number in (0, 1)"),
    ({"guardrails": {"latncy_ms p95": None}},
     "guardrails.latncy_ms p95: metric ('latncy_ms') is not declared"),
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
