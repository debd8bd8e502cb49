"""The sub-configs a RouterConfig is composed of: built from it they equal its flat fields; they
are frozen, validate themselves with RouterConfig's messages, hide secrets from repr, and
round-trip through as_dict."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.bandit.policies import PolicyName
from modelrouter.bandit.posteriors import RewardKind as PosteriorKind
from modelrouter.config import (
    BanditConfig,
    ExperimentPlan,
    GuardrailConfig,
    HttpConfig,
    MetricSpec,
    StoreConfig,
)
from modelrouter.config.bandit import BANDIT_POLICIES, BanditPolicy, RewardKind, reward_kind
from modelrouter.config.base import SubConfig
from modelrouter.config.guardrails import GuardrailSpec

SUBCONFIGS: list[type[SubConfig]] = [BanditConfig, StoreConfig, HttpConfig, GuardrailConfig]
ATTRIBUTE = {BanditConfig: "bandit_config", StoreConfig: "store_config",
             HttpConfig: "http_config", GuardrailConfig: "guardrail_config"}
SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture(autouse=True)
def _no_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELROUTER_SECRET", raising=False)
    monkeypatch.delenv("MODELROUTER_ADMIN_TOKEN", raising=False)


def _config(**changes: Any) -> RouterConfig:
    """A config that sets a non-default value in every sub-config."""
    fields: dict[str, Any] = dict(
        metrics={"click": "binary", "revenue": {"kind": "continuous"}}, primary="click",
        mode="bandit", reward="revenue", reward_cost={"latency_ms": 1}, refresh_every=50,
        refresh_seconds=None, min_share=0.05, bandit_policy="top-two",
        prior={"mu0": 0, "kappa0": 1}, sticky_seconds=60.0, sticky_max_units=10,
        missing_reward="omit", holdout=0.1,
        store="redis://:pw@redis:6379/2", flush_seconds=0.5, flush_events=100, max_buffer=1000,
        max_pending=5000, attribution_window=60.0,
        secret=SECRET, admin_token=SECRET[::-1], http_prefix="/_mr", metrics_public=True,
        max_seen_feedback=10,
        segments={"platform": "X-Platform"}, segment_cap=10, min_segment_units=5,
        guardrails={"revenue": {"margin": 0.5, "segments": ["platform"]}, "error": None},
        guardrail_alpha=0.01, rollback=True, guardrail_check_every=7,
        plan={"max_units": 1000})
    fields.update(changes)
    return RouterConfig(**fields)


@pytest.mark.parametrize("cls", SUBCONFIGS)
def test_built_from_router_config_equals_the_flat_fields(cls: type[SubConfig]) -> None:
    config = _config()
    section = getattr(config, ATTRIBUTE[cls])
    assert type(section) is cls
    assert section is getattr(config, ATTRIBUTE[cls])  # built once
    for f in dataclasses.fields(section):
        assert getattr(section, f.name) == getattr(config, f.name), f.name
    assert cls.from_config(config) == section


@pytest.mark.parametrize("cls", SUBCONFIGS)
def test_defaults_agree_with_router_config(cls: type[SubConfig]) -> None:
    assert cls.from_config(RouterConfig()) == cls()


def test_normalised_values_are_the_same_in_both() -> None:
    config = _config()
    assert config.reward_cost == config.bandit_config.reward_cost == {"latency_ms": 1.0}
    assert config.segments == config.guardrail_config.segments == {"platform": "x-platform"}
    assert config.guardrails is config.guardrail_config.guardrails
    assert isinstance(config.guardrails["revenue"], GuardrailSpec)


@pytest.mark.parametrize("cls", SUBCONFIGS)
def test_frozen(cls: type[SubConfig]) -> None:
    section = getattr(_config(), ATTRIBUTE[cls])
    first = dataclasses.fields(section)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(section, first, None)


@pytest.mark.parametrize("cls", SUBCONFIGS)
def test_keyword_only(cls: type[SubConfig]) -> None:
    with pytest.raises(TypeError):
        cls("x")  # type: ignore[call-arg]


def test_repr_hides_secrets_and_shows_what_differs() -> None:
    config = _config()
    text = repr(config.http_config)
    assert SECRET not in text and SECRET[::-1] not in text
    assert text == ("HttpConfig(secret='***', admin_token='***', http_prefix='/_mr', "
                    "metrics_public=True, max_seen_feedback=10)")
    assert repr(HttpConfig()) == "HttpConfig()"
    assert "pw" not in repr(config.store_config)
    assert repr(StoreConfig(store="redis://u:pw@h/0?password=pw")) == (
        "StoreConfig(store='redis://u:***@h/0?password=***')")
    assert repr(BanditConfig(metrics={"click": MetricSpec("click", "binary")},
                             reward="click")) == (
        "BanditConfig(metrics=['click', 'error', 'latency_ms'], reward='click')")
    assert repr(GuardrailConfig(rollback=True)) == "GuardrailConfig(rollback=True)"
    assert repr(ExperimentPlan(mde=0.01, looks=3)) == "ExperimentPlan(mde=0.01, looks=3)"


@pytest.mark.parametrize("cls", SUBCONFIGS)
def test_as_dict_round_trips(cls: type[SubConfig]) -> None:
    section = getattr(_config(secret=None, admin_token=None), ATTRIBUTE[cls])
    if cls is StoreConfig:  # the password is redacted: round-trip a URL without one
        section = StoreConfig.from_config(_config(store="redis://redis:6379/2"))
    data = section.as_dict()
    assert set(data) == {f.name for f in dataclasses.fields(section)}
    assert cls(**data) == section


def test_as_dict_is_plain_data_without_secrets() -> None:
    config = _config()
    assert config.http_config.as_dict()["secret"] == "***"
    assert config.store_config.as_dict()["store"] == "redis://:***@redis:6379/2"
    bandit = config.bandit_config.as_dict()
    assert bandit["metrics"]["revenue"] == {"kind": "continuous", "aggregate": "sum",
                                            "lower_is_better": False}
    assert config.guardrail_config.as_dict()["guardrails"]["revenue"] == {
        "max_decrease": 0.5, "relative": False, "segments": ["platform"]}
    plan = config.plan
    assert isinstance(plan, ExperimentPlan) and plan.as_dict() == plan.to_dict()
    assert ExperimentPlan(**plan.as_dict()) == plan


@pytest.mark.parametrize(("cls", "fields", "message"), [
    (BanditConfig, {"min_share": 0.6}, "min_share (0.6) must be in [0, 0.5]"),
    (BanditConfig, {"bandit_policy": "greedy"},
     "bandit_policy ('greedy') must be one of 'thompson', 'thompson-per-request', 'top-two'"),
    (BanditConfig, {"reward": "purchase"}, "reward ('purchase') is not a declared metric"),
    (BanditConfig, {"refresh_every": True}, "refresh_every (True) must be an integer"),
    (StoreConfig, {"store": "http://h"}, "store ('http://h') must be 'memory' or a URL"),
    (StoreConfig, {"flush_events": 0}, "flush_events (0) must be > 0"),
    (StoreConfig, {"attribution_window": float("inf")},
     "attribution_window (inf) must be a finite number"),
    (HttpConfig, {"secret": "short"}, "secret (from the argument or $MODELROUTER_SECRET)"),
    (HttpConfig, {"metrics_public": 1}, "metrics_public (1) must be a bool"),
    (GuardrailConfig, {"segment_cap": 1}, "segment_cap (1) must be >= 2"),
    (GuardrailConfig, {"primary": "clicks"}, "primary ('clicks') is not a declared metric"),
    (GuardrailConfig, {"guardrail_alpha": 1.5}, "guardrail_alpha (1.5) must be in (0, 1)"),
])
def test_each_validates_itself_with_router_config_messages(
        cls: type[SubConfig], fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as alone:
        cls(**fields)
    with pytest.raises(ConfigError) as flat:
        RouterConfig(**fields)
    assert message in str(alone.value)
    assert str(alone.value) == str(flat.value)


def test_http_config_reads_secrets_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROUTER_SECRET", SECRET)
    assert HttpConfig().secret == SECRET
    config = RouterConfig()
    assert config.secret == config.http_config.secret == SECRET
    assert HttpConfig(secret=SECRET[::-1]).secret == SECRET[::-1]  # the argument wins


def test_reward_kind_from_either_config() -> None:
    config = _config()
    assert reward_kind(config) == reward_kind(config.bandit_config) == "continuous"
    binary = RouterConfig(metrics={"click": "binary"}, reward="click")
    assert reward_kind(binary) == "binary"
    assert binary.replace(reward_cost={"latency_ms": 0.1}).bandit_config.reward_kind == (
        "continuous")
    with pytest.raises(ConfigError, match=r"reward \(None\)"):
        _ = BanditConfig().reward_kind


def test_choices_match_the_bandit_package() -> None:
    assert get_args(BanditPolicy) == get_args(PolicyName) == BANDIT_POLICIES
    assert get_args(RewardKind) == get_args(PosteriorKind)
