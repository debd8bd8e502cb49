"""Assignment: pinned hash vectors, uniformity, weights, minimal movement on ramps."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import stats

from modelrouter import Allocation, ConfigError, RouterConfig, bucket
from modelrouter.routing.assignment import Bucketer

# The README documents these vectors; they must never change between releases.
VECTORS = [
    ("exp-2026-11", "user-42", 0.5784639137105301),
    ("exp-2026-11", "alice@example.com", 0.9549300952268751),
    ("exp-2026-11", "\U0001f600-user", 0.9186832461585094),
    ("", "user-42", 0.7631623905706464),
    ("checkout", "\u00c4\u00d6\u00dc-\u00df", 0.32501283654862184),
]


@pytest.mark.parametrize(("salt", "unit", "expected"), VECTORS)
def test_pinned_vectors(salt: str, unit: str, expected: float) -> None:
    assert bucket(salt, unit) == expected
    assert Bucketer(salt)(unit) == expected
    # the written spec, spelled out independently of the implementation
    digest = hashlib.blake2b(salt.encode() + b"\x00" + unit.encode(), digest_size=8).digest()
    assert int.from_bytes(digest, "big") / 2**64 == expected


def test_buckets_are_uniform() -> None:
    u = np.array([bucket("s", f"user-{i}") for i in range(20_000)])
    assert stats.kstest(u, "uniform").pvalue > 0.001
    assert ((u >= 0) & (u < 1)).all()


def test_salt_decorrelates_experiments() -> None:
    a = np.array([bucket("exp-a", f"u{i}") < 0.5 for i in range(20_000)])
    b = np.array([bucket("exp-b", f"u{i}") < 0.5 for i in range(20_000)])
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_allocation_shares_match_weights() -> None:
    alloc = Allocation(["a", "b", "c"], {"a": 0.5, "b": 0.3, "c": 0.2})
    u = np.linspace(0, 1, 100_000, endpoint=False)
    counts = np.bincount([alloc.choose(x) for x in u], minlength=3) / u.size
    assert counts == pytest.approx([0.5, 0.3, 0.2], abs=1e-4)
    assert alloc.propensities == (0.5, 0.3, 0.2)


@pytest.mark.parametrize("variants", [["control", "treatment"], ["control", "b", "c"]])
def test_ramp_moves_only_the_units_it_must(variants: list[str]) -> None:
    units = [f"user-{i}" for i in range(30_000)]
    u = [bucket("ramp", x) for x in units]
    rest = 1.0 - 0.1 * (len(variants) - 1)
    before_w = {v: (0.1 if v != "control" else rest) for v in variants}
    after_w = dict(before_w, **{variants[-1]: 0.2, "control": rest - 0.1})
    before = Allocation(variants, before_w)
    after = Allocation(variants, after_w)
    b = np.array([before.choose(x) for x in u])
    a = np.array([after.choose(x) for x in u])
    last = len(variants) - 1
    assert np.all(a[b == last] == last)  # the first 10% stay where they were
    moved = np.mean(a != b)
    assert moved == pytest.approx(0.1, abs=0.01)  # only the 10% that had to move
    assert np.all(b[a != b] == 0)  # and they all come from the control


def test_weights_validation_names_field_and_value() -> None:
    with pytest.raises(ConfigError, match=r"weights must sum to 1, got 0.9"):
        RouterConfig(weights={"a": 0.5, "b": 0.4})
    with pytest.raises(ConfigError, match=r"weights.b \(-0.5\) must be >= 0"):
        RouterConfig(weights={"a": 1.5, "b": -0.5})
    with pytest.raises(ConfigError, match=r"weights.c: unknown variant 'c'"):
        RouterConfig.check_weights({"a": 0.5, "c": 0.5}, ["a", "b"])
    with pytest.raises(ConfigError, match=r"weights.a \(nan\)"):
        RouterConfig(weights={"a": float("nan"), "b": 0.5})


def test_fallback_layout_when_a_weight_outgrows_its_lane() -> None:
    alloc = Allocation(["a", "b", "c"], {"a": 0.1, "b": 0.8, "c": 0.1})
    u = np.linspace(0, 1, 10_000, endpoint=False)
    counts = np.bincount([alloc.choose(x) for x in u], minlength=3) / u.size
    assert counts == pytest.approx([0.1, 0.8, 0.1], abs=1e-3)


def test_cached_row_buckets_route_like_the_hash_also_after_restore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modelrouter import Experiment

    config = RouterConfig(salt="cache", weights={"a": 0.3, "b": 0.7})
    users = [f"user-{i}" for i in range(2000)]
    alloc = Allocation(["a", "b"], {"a": 0.3, "b": 0.7})
    expected = [alloc.variants[alloc.choose(bucket("cache", u))] for u in users]
    exp = Experiment({"a": 0, "b": 1}, config)
    assert [exp.assign(u).variant for u in users] == expected  # new rows
    assert [exp.assign(u).variant for u in users] == expected  # cached buckets
    path = str(tmp_path / "s.mrsnap")
    exp.save(path)
    again = Experiment({"a": 0, "b": 1}, config)
    again.restore(path)
    assert [again.assign(u).variant for u in users] == expected  # recomputed after restore
