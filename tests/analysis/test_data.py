"""AnalysisData: its helpers on small hand-built snapshots, checked against numpy and scipy."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from scipy import stats

from modelrouter import AnalysisError, Experiment, RouterConfig, UnknownMetricError
from modelrouter.analysis import Analysis, AnalysisData
from modelrouter.stats.moments import Moments
from modelrouter.store.memory import EpochInfo, Snapshot, UnitColumns

# latency_ms (a ratio: mean per request) and error are declared by default
CONFIG = RouterConfig(metrics={"click": "binary", "revenue": "continuous"},
                      segments={"platform": "x-platform"})
VARIANTS = ("control", "treatment")
# eight units: variant, platform code (0 ios, 1 web), click, revenue, latency sum and count
VARIANT = np.array([0, 0, 0, 0, 1, 1, 1, 1])
PLATFORM = np.array([0, 1, 0, 1, 0, 1, 1, 1])
CLICK = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 0.0, 3.0])  # a unit may click more than once
REVENUE = np.array([3.0, 0.0, 5.5, 1.0, 2.0, 8.0, 0.5, 4.0])
LATENCY = np.array([120.0, 45.0, 300.0, 80.0, 60.0, 90.0, 210.0, 150.0])  # sums per unit
REQUESTS = np.array([2.0, 1.0, 3.0, 1.0, 1.0, 2.0, 3.0, 2.0])  # latency values per unit


def unit_snapshot(epochs: tuple[EpochInfo, ...] = (EpochInfo(0, "ab", (0.5, 0.5), 0.0),),
                  epoch: np.ndarray | None = None, uncounted: int = 0,
                  losses: dict[str, int] | None = None) -> Snapshot:
    n = VARIANT.size
    ones = np.ones(n)
    units = UnitColumns(variant=VARIANT, epoch=np.zeros(n, dtype=np.int64) if epoch is None
                        else epoch, propensity=np.full(n, 0.5), first_seen=np.zeros(n),
                        exposures=np.ones(n, dtype=np.int64), segments=PLATFORM[:, None],
                        x={"click": CLICK, "revenue": REVENUE, "latency_ms": LATENCY,
                           "error": np.zeros(n)},
                        y={"click": ones, "revenue": ones, "latency_ms": REQUESTS,
                           "error": REQUESTS})
    return Snapshot(variants=VARIANTS, metrics=dict(CONFIG.metrics), level="user", taken_at=0.0,
                    segment_dims=("platform",), segment_values={"platform": ("ios", "web")},
                    epochs=epochs, requests=np.bincount(VARIANT), uncounted_requests=uncounted,
                    segment_overflow=0, units=units, losses=losses or {})


def data(snapshot: Snapshot | None = None, variants: tuple[str, ...] = ()) -> AnalysisData:
    return AnalysisData(snapshot or unit_snapshot(), CONFIG, "control", variants)


def test_unknown_metric_names_the_declared_ones() -> None:
    d = data()
    assert d.spec("revenue").name == "revenue"
    with pytest.raises(UnknownMetricError) as err:
        d.spec("clicks")
    assert "'clicks'" in str(err.value)
    assert "['click', 'error', 'latency_ms', 'revenue']" in str(err.value)
    with pytest.raises(UnknownMetricError):
        d.moments("clicks")


def test_treatment_defaults_to_the_only_one_and_validates() -> None:
    d = data()
    assert d.variants == VARIANTS  # from the snapshot when not given
    assert d.treatment(None) == "treatment"
    assert d.treatment("treatment") == "treatment"
    with pytest.raises(AnalysisError, match="is the control"):
        d.treatment("control")
    with pytest.raises(AnalysisError, match=r"'nope'\) is not one of \['control', 'treatment'\]"):
        d.treatment("nope")
    three = data(variants=("control", "treatment", "other"))
    with pytest.raises(AnalysisError) as err:
        three.treatment(None, "sequential")
    assert "sequential() needs variant= with 3 variants" in str(err.value)
    assert "['treatment', 'other']" in str(err.value)
    assert three.treatment("other") == "other"
    assert three.variant_index("other") == 2


def test_unit_mask_selects_the_segment_and_nothing_for_an_unseen_value() -> None:
    d = data()
    assert d.unit_mask(None) is None and d.unit_mask({}) is None
    assert d.unit_mask({"platform": "web"}).tolist() == (PLATFORM == 1).tolist()
    assert d.segment_codes({"platform": "web"}) == [(0, 1)]
    assert d.segment_codes({"platform": "tv"}) == [(0, -1)]
    unseen = d.unit_mask({"platform": "tv"})
    assert unseen is not None and unseen.shape == (8,) and not unseen.any()
    assert [m.n for m in d.moments("revenue", {"platform": "tv"})] == [0, 0]
    with pytest.raises(AnalysisError, match=r"dimension \('country'\) is not declared"):
        d.unit_mask({"country": "DE"})


def _check(m: Moments, x: np.ndarray, y: np.ndarray) -> None:
    assert m.n == x.size
    assert m.mean_x == pytest.approx(np.mean(x), rel=1e-12)
    assert m.var_x == pytest.approx(np.var(x, ddof=1), rel=1e-12)
    assert m.mean_y == pytest.approx(np.mean(y), rel=1e-12)
    assert m.ratio == pytest.approx(x.sum() / y.sum(), rel=1e-12)


def test_moments_equal_numpy_per_variant_and_per_segment() -> None:
    d = data()
    for metric, x, y in (("revenue", REVENUE, np.ones(8)), ("latency_ms", LATENCY, REQUESTS),
                         ("click", (CLICK > 0).astype(float), np.ones(8))):  # binary: any
        for seg, keep in ((None, np.ones(8, dtype=bool)), ({"platform": "web"}, PLATFORM == 1)):
            moments = d.moments(metric, seg)
            assert len(moments) == 2
            for v in (0, 1):
                sel = keep & np.equal(VARIANT, v)
                _check(moments[v], x[sel], y[sel])


def test_ratio_moments_give_the_delta_method_variance_scipy_agrees_with() -> None:
    """The ratio's variance (sum x / sum y per variant) against the delta method written out,
    and the proportion test on the 'any' flag against scipy's chi-square on the 2x2 table."""
    d = data()
    m = d.moments("latency_ms")[1]
    x, y = LATENCY[VARIANT == 1], REQUESTS[VARIANT == 1]
    r = x.sum() / y.sum()
    delta = np.var(x - r * y, ddof=1) / (y.size * np.mean(y) ** 2)
    assert m.ratio_var == pytest.approx(delta, rel=1e-12)
    cmp = Analysis(unit_snapshot(), CONFIG, "control").compare("click")
    table = [[2, 2], [3, 1]]  # clicked / not, per variant (any click counts once)
    chi2 = stats.chi2_contingency(table, correction=False)
    assert cmp.pvalue == pytest.approx(chi2.pvalue, rel=1e-9)


def test_request_level_moments_merge_the_groups_of_every_epoch() -> None:
    # 0/1 values, one per request: sxx = sx, sy = syy = n, sxy = sx
    a, b, c = (Moments.from_sums(n, sx, n, sx, n, sx) for n, sx in ((4, 2.0), (6, 3.0),
                                                                     (5, 1.0)))
    snap = Snapshot(variants=VARIANTS, metrics={"click": CONFIG.metrics["click"]},
                    level="request", taken_at=0.0, segment_dims=("platform",),
                    segment_values={"platform": ("ios", "web")},
                    epochs=(EpochInfo(0, "ab", (0.5, 0.5), 0.0),
                            EpochInfo(1, "ab", (0.8, 0.2), 1.0)),
                    requests=np.array([10, 5]), uncounted_requests=0, segment_overflow=0,
                    units=None, groups={(0, 0, (0,)): (4, {"click": a}),
                                        (0, 1, (1,)): (6, {"click": b}),
                                        (1, 1, (1,)): (5, {"click": c})})
    d = AnalysisData(snap, CONFIG, "control")
    control, treatment = d.moments("click")
    assert (control.n, treatment.n) == (10, 5)
    assert control.mean_x == pytest.approx(0.5)
    assert d.moments("click", {"platform": "ios"})[0].n == 4
    assert d.present_segments(["platform"]) == [{"platform": "ios"}, {"platform": "web"}]
    with pytest.raises(AnalysisError, match="request-level experiments use groups"):
        d.unit_mask({"platform": "ios"})
    assert d.epoch_weights([1, 0]).tolist() == [[0.8, 0.2], [0.5, 0.5]]
    with pytest.raises(AnalysisError, match="epoch 7 has units but no recorded weights"):
        d.epoch_weights([7], "units")


def test_notes_say_what_every_comparison_should() -> None:
    assert data().notes() == ()
    snap = unit_snapshot(epochs=(EpochInfo(0, "ab", (0.5, 0.5), 0.0),
                                 EpochInfo(1, "ab", (0.9, 0.1), 1.0)),
                         uncounted=1234, losses={"dropped_values": 7})
    notes = data(snap).notes()
    assert len(notes) == 3
    assert notes[0].startswith("weights changed over 2 epochs")
    assert notes[1].startswith("1,234 requests without a unit id")
    assert notes[2].startswith("7 feedback values were dropped")
    # the snapshot's notes first; then the comparison's own (here: the control mean of 8
    # units is within 1.96 standard errors of 0, so the relative lift is n/a)
    cmp_notes = Analysis(snap, CONFIG, "control").compare("revenue").notes
    assert cmp_notes[:3] == notes
    assert [n[:17] for n in cmp_notes[3:]] == ["relative lift n/a"]


def test_frozen_and_compared_by_identity() -> None:
    d = data()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.control = "treatment"  # type: ignore[misc]
    assert d == d and d != data(d.snapshot)
    assert not d.adaptive and d.present_segments(["platform"]) == [{"platform": "ios"},
                                                                   {"platform": "web"}]


def test_from_experiment_reads_the_public_members() -> None:
    exp = Experiment({"control": 0, "treatment": 1}, RouterConfig(salt="data"))
    for i in range(20):
        exp.assign(f"u{i}")
    d = AnalysisData.from_experiment(exp)
    assert d.snapshot.n_units == 20 and d.variants == ("control", "treatment")
    assert d.config is exp.config and d.control == "control"
    assert d.rollback_events == () and d.bandit_status is None
    bandit = Experiment({"a": 0, "b": 1}, RouterConfig(
        metrics={"click": "binary"}, reward="click", mode="bandit", level="request",
        refresh_seconds=None), rng=random.Random(1))
    status, now = AnalysisData.from_experiment(bandit).bandit_status, bandit.bandit_status()
    assert status is not None and now is not None and status.policy == now.policy


def test_the_facade_holds_one_data_and_assigning_an_attribute_replaces_it() -> None:
    a = Analysis(unit_snapshot(), CONFIG, "control")
    first = a.data
    assert isinstance(first, AnalysisData) and a.data is first
    assert (a.snapshot, a.config, a.control, a.variants) == (first.snapshot, CONFIG, "control",
                                                             VARIANTS)
    a.control = "treatment"
    assert a.data is not first and a.data.control == "treatment" and first.control == "control"
    assert a.compare("revenue").control.variant == "treatment"
    a.rollback_events = ()
    assert a.data.snapshot is first.snapshot
