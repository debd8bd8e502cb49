"""The experiment plan in the config: validation names the field and the value; TOML; as_dict."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.config.plan import SPENDING_NAMES, ExperimentPlan
from modelrouter.stats.sequential import SPENDING_FUNCTIONS


def _config(**plan: object) -> RouterConfig:
    return RouterConfig(metrics={"click": "binary", "revenue": "continuous"}, primary="click",
                        plan=plan)


def test_mapping_becomes_a_frozen_plan_with_defaults() -> None:
    cfg = _config(mde=0.01, baseline=0.05)
    assert isinstance(cfg.plan, ExperimentPlan)
    assert (cfg.plan.alpha, cfg.plan.power, cfg.plan.sided, cfg.plan.looks,
            cfg.plan.spending) == (0.05, 0.8, 2, 5, "obrien-fleming")
    assert cfg.as_dict()["plan"]["mde"] == 0.01
    assert RouterConfig(plan=cfg.plan).plan is cfg.plan
    assert RouterConfig().plan is None
    with pytest.raises(AttributeError):
        cfg.plan.alpha = 0.1  # type: ignore[misc]


def test_spending_names_match_the_numerics() -> None:
    assert SPENDING_NAMES == SPENDING_FUNCTIONS


@pytest.mark.parametrize(("plan", "match"), [
    ({}, r"plan: give exactly one of mde .* got mde=None, max_units=None"),
    ({"mde": 0.01, "max_units": 10}, r"exactly one of mde"),
    ({"mde": -0.01}, r"plan.mde \(-0.01\) must be > 0"),
    ({"mde": "big"}, r"plan.mde \('big'\) must be a finite number"),
    ({"mde": 1.5}, r"plan.mde \(1.5\) must be < 1 for the binary primary metric 'click'"),
    ({"max_units": 1}, r"plan.max_units \(1\) must be an integer >= 2"),
    ({"max_units": 10.5}, r"plan.max_units \(10.5\) must be an integer"),
    ({"mde": 0.01, "alpha": 1.2}, r"plan.alpha \(1.2\) must be in \(0, 1\)"),
    ({"mde": 0.01, "power": 0}, r"plan.power \(0\) must be in \(0, 1\)"),
    ({"mde": 0.01, "sided": 3}, r"plan.sided \(3\) must be 1 or 2"),
    ({"mde": 0.01, "looks": 0}, r"plan.looks \(0\) must be an integer from 1 to 50"),
    ({"mde": 0.01, "spending": "haybittle"}, r"plan.spending \('haybittle'\) must be one of"),
    ({"mde": 0.01, "spending": "power"}, r"plan.gamma \(None\) must be a number"),
    ({"mde": 0.01, "spending": "power", "gamma": -2}, r"plan.gamma \(-2\) is the power rho"),
    ({"mde": 0.01, "gamma": 1.0}, r"plan.gamma \(1.0\) is only used by"),
    ({"mde": 0.01, "baseline": 1.0}, r"plan.baseline \(1.0\) must be in \(0, 1\)"),
    ({"mde": 0.01, "sd": 2.0}, r"plan.sd \(2.0\) is for means; primary 'click'"),
    ({"mde": 0.01, "lookz": 3}, r"plan.lookz: unknown plan field"),
])
def test_bad_plans_name_the_field_and_value(plan: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(**plan)


def test_baseline_is_refused_for_a_continuous_primary() -> None:
    with pytest.raises(ConfigError, match=r"plan.baseline \(0.1\) is a conversion rate"):
        RouterConfig(metrics={"revenue": "continuous"}, primary="revenue",
                     plan={"mde": 1.0, "baseline": 0.1})
    with pytest.raises(ConfigError, match=r"plan \(5\) must be an ExperimentPlan or a mapping"):
        RouterConfig(plan=5)  # type: ignore[arg-type]


def test_plan_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text('[router]\nprimary = "click"\nmetrics = { click = "binary" }\n'
                    '[router.plan]\nmde = 0.01\nbaseline = 0.05\nlooks = 4\n'
                    'spending = "hwang-shih-decani"\ngamma = -4\n')
    cfg = RouterConfig.from_toml(path)
    assert cfg.plan == ExperimentPlan(mde=0.01, baseline=0.05, looks=4,
                                      spending="hwang-shih-decani", gamma=-4)
    assert "4 planned looks, hwang-shih-decani spending (gamma -4)" in cfg.plan.describe()
