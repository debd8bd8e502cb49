"""ModelRouter, the composition root: construction from a dict, its repr."""

from __future__ import annotations

import pytest

from modelrouter import ConfigError, ModelRouter, RouterConfig
from tests.conftest import make_app


def test_a_plain_dict_config_is_a_router_config() -> None:
    router = ModelRouter(make_app(), {"a": 1, "b": 2}, {"salt": "x", "weights": {"a": 0.2,
                                                                              "b": 0.8}})
    assert router.config == RouterConfig(salt="x", weights={"a": 0.2, "b": 0.8})
    assert router.experiment.allocation.weights == {"a": 0.2, "b": 0.8}


@pytest.mark.parametrize(("config", "message"), [
    ({"salt": "x", "wieghts": {"a": 1}}, "wieghts"),  # a typo names the field
    ({"level": "users"}, r"level \('users'\)"),
    (["salt", "x"], r"config \(list\) must be a RouterConfig or a mapping"),
])
def test_a_bad_config_is_a_config_error(config: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelRouter(make_app(), {"a": 1, "b": 2}, config)  # type: ignore[arg-type]


def test_repr_names_experiment_mode_variants_and_store_without_secrets() -> None:
    router = ModelRouter(make_app(), {"a": 1, "b": 2},
                         RouterConfig(experiment="ranker", secret="s" * 32,
                                      metrics={"click": "binary"}, reward="click"))
    text = repr(router)
    assert text == ("ModelRouter(experiment='ranker', mode='ab', variants=['a', 'b'], "
                    "level='user', store='memory')")
    router.configure(mode="bandit")
    assert "mode='bandit'" in repr(router) and "s" * 32 not in repr(router)
    assert router.experiment.bandit is not None
    router.experiment.bandit.close()
