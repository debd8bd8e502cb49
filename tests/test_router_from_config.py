"""ModelRouter.from_config: a TOML file names the app, the variants and the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrouter import ConfigError, ModelRouter
from modelrouter.testing import ASGIClient

TOML = """
app = "tests.apps.toml_app:app"

[variants]
control = "tests.apps.toml_app:model_a"
treatment = "tests.apps.toml_app:model_b"

[router]
experiment = "toml-exp"
salt = "toml-salt"
weights = { control = 0.25, treatment = 0.75 }
metrics = { click = "binary", revenue = { kind = "continuous", aggregate = "sum" } }
primary = "click"

[router.plan]
mde = 0.02
baseline = 0.1
looks = 3
"""


def test_from_config_builds_a_working_router(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(TOML)
    router = ModelRouter.from_config(str(path))
    assert router.config.experiment == "toml-exp"
    assert router.experiment.allocation.weights == {"control": 0.25, "treatment": 0.75}
    assert router.config.plan is not None and router.config.plan.looks == 3
    client = ASGIClient(router)
    bodies = [client.run("GET", "/predict", headers={"x-user-id": f"u{i}"}).json()
              for i in range(400)]
    assert {b["y"] for b in bodies} == {3.0, 6.0}
    share = sum(b["variant"] == "treatment" for b in bodies) / len(bodies)
    assert 0.68 < share < 0.82  # 75% by the salted hash


@pytest.mark.parametrize(("change", "match"), [
    (('salt = "toml-salt"', 'salt = "toml-salt"\nsalty = 1'), "salty: unknown config field"),
    (('tests.apps.toml_app:model_b', 'tests.apps.toml_app:nope'), "has no 'nope'"),
    (('weights = { control = 0.25, treatment = 0.75 }', 'weights = { control = 0.5 }'),
     "weights must sum to 1"),
    (("looks = 3", "looks = 0"), r"plan.looks \(0\)"),
])
def test_from_config_errors_name_the_field(tmp_path: Path, change: tuple[str, str],
                                           match: str) -> None:
    path = tmp_path / "router.toml"
    path.write_text(TOML.replace(*change))
    with pytest.raises(ConfigError, match=match):
        ModelRouter.from_config(str(path))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ModelRouter.from_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[router\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ModelRouter.from_config(str(bad))
