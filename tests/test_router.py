"""ModelRouter, the composition root: construction from a dict, its repr."""

from __future__ import annotations

import pytest

from modelrouter import ConfigError, ModelRouter, RouterConfig
from tests.conftest import RouterFactory, make_app


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


def test_record_with_an_idempotency_key_counts_once(router_factory: RouterFactory) -> None:
    """Cells: memory store, one process, A/B, user level; valid, replayed and failing input."""
    from modelrouter.exceptions import ConfigError, InvalidValueError

    router = router_factory()
    d = router.experiment.assign("alice")
    assert router.record(d, "revenue", 5.0, idempotency_key="order-1") is True
    assert router.record(d, "revenue", 5.0, idempotency_key="order-1") is False  # a retry
    assert router.record(d, "revenue", 2.0, idempotency_key="order-2") is True
    assert router.record(d, "revenue", 1.0) is True  # without a key every call counts
    assert router.record(d, "revenue", 1.0) is True
    with pytest.raises(InvalidValueError):
        router.record(d, "revenue", float("nan"), idempotency_key="order-3")
    assert router.record(d, "revenue", 3.0, idempotency_key="order-3") is True  # released
    for bad in ("", "k" * 257, 7):
        with pytest.raises(ConfigError, match="idempotency_key"):
            router.record(d, "revenue", 1.0, idempotency_key=bad)  # type: ignore[arg-type]
    snap = router.analysis().snapshot
    assert snap.units is not None
    assert snap.units.x["revenue"].sum() == 5.0 + 2.0 + 1.0 + 1.0 + 3.0
    assert snap.units.y["revenue"].sum() == 5
