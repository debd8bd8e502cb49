"""RouterConfig itself: the flat constructor over the composed sub-configs, its repr, its
plain-data form and the checks that span sub-configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.config import Level, MissingUnitPolicy, Mode
from modelrouter.config.base import SubConfig

SECRET = "s3cret-s3cret-s3cret"
SECTIONS = ("bandit_config", "store_config", "http_config", "guardrail_config",
            "shadow_config", "covariate_config")


@pytest.fixture(autouse=True)
def _no_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELROUTER_SECRET", raising=False)
    monkeypatch.delenv("MODELROUTER_ADMIN_TOKEN", raising=False)


def test_every_flat_field_but_the_core_belongs_to_one_sub_config() -> None:
    config = RouterConfig()
    owners: dict[str, list[str]] = {}
    for name in SECTIONS:
        section = getattr(config, name)
        assert isinstance(section, SubConfig)
        for f in dataclasses.fields(section):
            if f.name != "metrics":  # the context the bandit and guardrails refer to
                owners.setdefault(f.name, []).append(name)
    assert all(len(o) == 1 for o in owners.values()), owners
    core = {"experiment", "salt", "weights", "control", "metrics", "level", "unit_header",
            "unit_cookie", "unit_query", "unit_id", "missing_unit", "max_unit_id_length",
            "paths", "exclude_paths", "mode", "plan", "rollout"}
    assert set(owners) | core == {f.name for f in dataclasses.fields(RouterConfig)}
    assert not set(owners) & core


def test_sub_configs_are_built_once_and_rebuilt_by_replace() -> None:
    config = RouterConfig(metrics={"click": "binary"}, reward="click")
    assert config.bandit_config is config.bandit_config
    changed = config.replace(refresh_every=7)
    assert changed.bandit_config.refresh_every == 7 and config.bandit_config.refresh_every == 100
    with pytest.raises(ConfigError, match=r"refresh_every \(0\) must be >= 1"):
        config.replace(refresh_every=0)


def test_choices_are_literal_aliases() -> None:
    assert get_args(Level) == ("user", "session", "request")
    assert get_args(MissingUnitPolicy) == ("control", "random", "reject")
    assert get_args(Mode) == ("ab", "bandit")
    with pytest.raises(ConfigError, match=r"^level \('users'\) must be one of 'user', "
                                          r"'session', 'request'$"):
        RouterConfig(level="users")  # type: ignore[arg-type]


def test_repr_shows_what_differs_and_hides_secrets() -> None:
    assert repr(RouterConfig()) == "RouterConfig()"
    config = RouterConfig(experiment="exp", secret=SECRET, store="redis://:pw@h:6379/0",
                          metrics={"click": "binary"}, refresh_every=5)
    text = repr(config)
    assert SECRET not in text and "pw" not in text
    assert text == ("RouterConfig(experiment='exp', salt='exp', "
                    "metrics=['click', 'error', 'latency_ms'], refresh_every=5, "
                    "secret='***', store='redis://:***@h:6379/0')")


def test_as_dict_has_every_field_and_round_trips() -> None:
    config = RouterConfig(metrics={"click": "binary"}, primary="click", reward="click",
                          segments={"platform": "x-platform"}, paths=["/api"],
                          guardrails={"error": None, "latency_ms p95": False},
                          plan={"mde": 0.01}, weights={"a": 0.25, "b": 0.75})
    data = config.as_dict()
    assert list(data) == [f.name for f in dataclasses.fields(RouterConfig)]
    assert data["paths"] == ["/api"] and data["secret"] is None
    # removed defaults are written as False, so that they stay removed when read back
    assert data["guardrails"]["error"] is False and data["guardrails"]["latency_ms p95"] is False
    again = RouterConfig.from_dict(data)
    assert again == config
    assert again.guardrails is not None and set(again.guardrails) == {"latency_ms"}


def test_secret_values_never_in_as_dict() -> None:
    data = RouterConfig(secret=SECRET, admin_token=SECRET[::-1]).as_dict()
    assert data["secret"] == data["admin_token"] == "***"


def test_checks_across_sub_configs() -> None:
    with pytest.raises(ConfigError, match=r"^reward \(None\) must name a declared metric when "
                                          r"mode is 'bandit'$"):
        RouterConfig(mode="bandit")
    with pytest.raises(ConfigError, match=r"plan.sd \(1.0\) is for means"):
        RouterConfig(metrics={"click": "binary"}, primary="click",
                     plan={"mde": 0.01, "sd": 1.0})


def test_flat_fields_take_the_normalised_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", SECRET)
    config = RouterConfig(metrics={"click": "binary"}, reward="click",
                          prior={"alpha0": 1, "beta0": 2}, segments={"p": " X-P "})
    assert config.admin_token == SECRET
    assert config.prior == {"alpha0": 1.0, "beta0": 2.0}
    assert all(type(v) is float for v in config.prior.values())
    assert config.segments == {"p": "x-p"}


def test_from_toml_unknown_field_names_it(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text('[router]\nrefresh_evry = 3\n')
    with pytest.raises(ConfigError, match=r"^refresh_evry: unknown config field; known config "
                                          r"fields are \["):
        RouterConfig.from_toml(path)
