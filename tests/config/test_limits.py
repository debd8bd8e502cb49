"""The bounds the stores and tokens rely on (config/limits.py): checked at construction, at the
bound and one past it, and shown to be the real limits through the real store and token paths
(65,536 segment values, 128 variants, a token with a unit id of the maximum length)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrouter import ConfigError, Experiment, ModelRouter, RouterConfig
from modelrouter.config.limits import (
    MAX_SEGMENT_CAP,
    MAX_TOKEN_CHARS,
    MAX_VARIANTS,
    max_token_unit_id_length,
)
from modelrouter.routing.tokens import TOKEN_HEADER, Signer
from modelrouter.store.memory import MemoryStore
from modelrouter.store.units import UnitTable
from modelrouter.testing import ASGIClient
from tests.conftest import make_app

SECRET = "s" * 32


# -- segment_cap: segment values are uint16 codes ---------------------------------------------
def test_segment_cap_is_checked_at_its_bound() -> None:
    assert MAX_SEGMENT_CAP == 65_536
    assert RouterConfig(segment_cap=65_536).segment_cap == 65_536
    with pytest.raises(ConfigError, match=r"^segment_cap \(65537\) must be <= 65536: segment "
                                          r"values are stored as 16-bit codes$"):
        RouterConfig(segment_cap=65_537)
    with pytest.raises(ConfigError, match=r"^segment_cap \(65537\) must be in \[2, 65536\]"):
        MemoryStore(("a", "b"), RouterConfig().metrics, segment_cap=65_537)


def test_65536_segment_values_work_end_to_end_and_the_next_code_does_not_fit(
        tmp_path: Path) -> None:
    config = RouterConfig(experiment="segs", segments={"shard": "x-shard"}, segment_cap=65_536)
    exp = Experiment({"a": 1, "b": 2}, config)
    for i in range(65_537):  # 65,535 values get their own code, then everything is "other"
        exp.assign(f"u{i}", (f"s{i}",))
    snap = exp.store.snapshot()
    values = snap.segment_values["shard"]
    assert len(values) == 65_536 and values[-1] == "other"
    assert snap.units is not None and int(snap.units.segments.max()) == 65_535
    assert snap.segment_overflow == 2
    path = str(tmp_path / "segs.mrsnap")
    exp.save(path)
    again = Experiment({"a": 1, "b": 2}, config)
    again.restore(path)
    back = again.store.snapshot()
    assert back.segment_values == snap.segment_values
    assert back.units is not None and back.units.segments.tolist() == snap.units.segments.tolist()
    # the column cannot hold a 65,537th code: the bound is the real one
    table = UnitTable(1, 1, (0, 0))
    table.add("x", 0, 0.5, 0, 0.0, (65_535,))
    with pytest.raises(OverflowError):
        table.add("y", 0, 0.5, 0, 0.0, (65_536,))


# -- variants: a unit's variant is a signed byte ----------------------------------------------
def test_variant_count_is_checked_at_its_bound() -> None:
    assert MAX_VARIANTS == 128
    names = [f"v{i}" for i in range(129)]
    weights = {n: 1 / 129 for n in names}
    with pytest.raises(ConfigError, match=r"^weights: 129 variants; at most 128 \(a unit's "
                                          r"variant is stored as a signed byte\)$"):
        RouterConfig(weights=weights)
    with pytest.raises(ConfigError, match=r"^variants: 129 variants; at most 128 \(a unit's "
                                          r"variant is stored as a signed byte\)$"):
        Experiment(dict.fromkeys(names, 0), RouterConfig())
    with pytest.raises(ConfigError, match=r"^variants: 129 variants; at most 128"):
        MemoryStore(names, RouterConfig().metrics)


def test_128_variants_work_end_to_end_and_a_129th_code_does_not_fit(tmp_path: Path) -> None:
    names = [f"v{i}" for i in range(128)]
    config = RouterConfig(experiment="many", salt="many", metrics={"revenue": "continuous"})
    exp = Experiment(dict.fromkeys(names, 0), config)
    for i in range(4000):
        exp.record_unit(exp.assign(f"u{i}").unit_id or "", "revenue", i % 7)
    snap = exp.store.snapshot()
    assert snap.units is not None and set(snap.units.variant.tolist()) == set(range(128))
    path = str(tmp_path / "many.mrsnap")
    exp.save(path)
    again = Experiment(dict.fromkeys(names, 0), config)
    again.restore(path)
    back = again.store.snapshot()
    assert back.units is not None and back.units.variant.tolist() == snap.units.variant.tolist()
    assert again.assign("u4000").variant == exp.assign("u4000").variant
    table = UnitTable(1, 0, (0, 0))
    table.add("x", 127, 0.5, 0, 0.0, ())
    with pytest.raises(OverflowError):
        table.add("y", 128, 0.5, 0, 0.0, ())


# -- max_unit_id_length with a secret: the unit id travels in every decision token ------------
def test_unit_id_length_with_a_secret_is_checked_at_its_bound() -> None:
    limit = max_token_unit_id_length("exp")
    assert limit == (3072 - 61 - 25 - 3 - 1) // 4 == 745
    assert RouterConfig(experiment="exp", secret=SECRET, max_unit_id_length=limit)
    with pytest.raises(ConfigError, match=r"^max_unit_id_length \(746\) must be <= 745 with a "
                                          r"secret: a decision token carries the unit id"):
        RouterConfig(experiment="exp", secret=SECRET, max_unit_id_length=limit + 1)
    assert RouterConfig(experiment="exp", max_unit_id_length=100_000)  # no token: no bound
    # with the variant names known, Experiment checks the exact room
    names = {"control": 1, "treatment": 2}
    exact = max_token_unit_id_length("exp", names)
    assert exact == (3072 - 61 - 25 - 3 - 9) // 4 == 743
    Experiment(names, RouterConfig(experiment="exp", secret=SECRET, max_unit_id_length=exact))
    with pytest.raises(ConfigError, match=r"^max_unit_id_length \(744\) must be <= 743 with a "
                                          r"secret and variant 'treatment'"):
        Experiment(names, RouterConfig(experiment="exp", secret=SECRET,
                                       max_unit_id_length=exact + 1))


def test_a_token_with_a_unit_id_of_the_maximum_length_round_trips_over_http() -> None:
    """A router at the bound: a unit id of ``max_unit_id_length`` 4-byte characters is routed,
    its response carries a token that fits, and the token's feedback is recorded to it."""
    names = {"control": lambda x: x, "treatment": lambda x: 2 * x}
    n = max_token_unit_id_length("exp", names)
    router = ModelRouter(make_app(), names, RouterConfig(
        experiment="exp", secret=SECRET, max_unit_id_length=n, metrics={"click": "binary"}))
    client = ASGIClient(router)
    unit = "\U0001f642" * n
    r = client.run("GET", "/predict", headers=[(b"x-user-id", unit.encode())])
    assert r.status == 200
    token = r.header(TOKEN_HEADER)
    assert token is not None and len(token) <= MAX_TOKEN_CHARS
    assert Signer(SECRET, "exp").verify(token).unit_id == unit
    fb = client.run("POST", "/_modelrouter/feedback",
                    json={"token": token, "metric": "click", "value": 1})
    assert fb.status == 200 and fb.json()["recorded"] is True
    snap = router.experiment.store.snapshot()
    assert snap.units is not None and snap.units.x["click"].tolist() == [1.0]
    # one character more is refused at the door (400), never a 500 when signing
    r = client.run("GET", "/predict", headers=[(b"x-user-id", (unit + "x").encode())])
    assert r.status == 400 and r.json()["error"] == (
        f"unit id in header is longer than {n} characters")
