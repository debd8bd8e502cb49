"""Feedback values (routing/experiment.py ``check_value`` and ``record()``'s fast paths): what is
accepted, what is refused before anything changes, and the documented bounds.

Accepted: real numbers (``float``, ``int``, ``bool``, numpy integer, float and bool scalars,
``Fraction``, ``Decimal``), finite and within the metric's range: 0/1 for binary metrics and
``error``, ``0 .. MAX_LATENCY_MS`` for ``latency_ms``, ``|value| <= MAX_ABS_VALUE`` otherwise,
and 0 or at least ``MIN_ABS_VALUE`` in magnitude.
"""

from __future__ import annotations

import math
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter import Experiment, InvalidValueError, RouterConfig
from modelrouter.routing.values import (
    MAX_ABS_VALUE,
    MAX_LATENCY_MS,
    MIN_ABS_VALUE,
    check_value,
    in_range,
    value_range,
)

NEXT_ABOVE = math.nextafter(MAX_ABS_VALUE, math.inf)
NEXT_BELOW_TINY = math.nextafter(MIN_ABS_VALUE, 0.0)


def experiment(level: str = "user") -> Experiment:
    return Experiment({"control": "A", "treatment": "B"},
                      RouterConfig(metrics={"click": "binary", "revenue": "continuous"},
                                   level=level))


def fingerprint(exp: Experiment) -> Any:
    snap = exp.store.snapshot()
    units = snap.units
    cols = () if units is None else tuple(
        (m, units.x[m].tolist(), units.y[m].tolist()) for m in sorted(units.x))
    groups = tuple(sorted((k, n, tuple(sorted((m, mo.n, mo.mean_x, mo.mean_y, mo.m2_x)
                                              for m, mo in pm.items())))
                          for k, (n, pm) in snap.groups.items()))
    return cols, groups


def test_the_bound_keeps_squares_and_their_sums_finite() -> None:
    assert MAX_ABS_VALUE == 1e100 and MIN_ABS_VALUE == 1e-100
    # a square of a per-unit total of 1e4 values at the bound, summed over 1e12 units
    assert math.isfinite((1e4 * MAX_ABS_VALUE) ** 2 * 1e12)
    metrics = RouterConfig(metrics={"click": "binary", "revenue": "continuous"}).metrics
    assert value_range(metrics["latency_ms"]) == (0.0, MAX_LATENCY_MS, MIN_ABS_VALUE)
    assert value_range(metrics["error"]) == value_range(metrics["click"]) == (0.0, 1.0, 1.0)
    assert value_range(metrics["revenue"]) == (-MAX_ABS_VALUE, MAX_ABS_VALUE, MIN_ABS_VALUE)
    assert [in_range(v, 0.0, 1.0, 1.0) for v in (0.0, 1.0, 0.5, -1.0, math.nan)] == [
        True, True, False, False, False]


accepted = st.one_of(st.floats(MIN_ABS_VALUE, MAX_ABS_VALUE),
                     st.floats(-MAX_ABS_VALUE, -MIN_ABS_VALUE), st.just(0.0))


@settings(max_examples=300, deadline=None)
@given(st.lists(accepted, min_size=1, max_size=8), st.lists(accepted, min_size=1, max_size=8))
def test_no_square_of_a_total_or_a_difference_underflows(a: list[float], b: list[float]
                                                         ) -> None:
    """Why MIN_ABS_VALUE: totals of accepted values are 0 or at least ~1e-116 in magnitude, so
    the squares the moments are made of are 0 or at least ~1e-232 (never a silent 0)."""
    x, y = math.fsum(a), math.fsum(b)
    for v in (x, y, x - y):
        assert v == 0.0 or v * v >= 1e-233


@pytest.mark.parametrize(("metric", "value", "expected"), [
    ("revenue", np.int64(7), 7.0),
    ("revenue", np.int8(-3), -3.0),
    ("revenue", np.uint64(2**63), float(2**63)),
    ("revenue", np.float64(2.5), 2.5),
    ("revenue", np.float32(0.5), 0.5),
    ("revenue", np.float16(-1.5), -1.5),
    ("revenue", Fraction(1, 4), 0.25),
    ("revenue", Decimal("12.5"), 12.5),
    ("revenue", MAX_ABS_VALUE, MAX_ABS_VALUE),
    ("revenue", -MAX_ABS_VALUE, -MAX_ABS_VALUE),
    ("revenue", int(MAX_ABS_VALUE), MAX_ABS_VALUE),
    ("revenue", 2**60 + 1, float(2**60)),
    ("revenue", True, 1.0),
    ("revenue", MIN_ABS_VALUE, MIN_ABS_VALUE),
    ("revenue", -MIN_ABS_VALUE, -MIN_ABS_VALUE),
    ("revenue", -0.0, 0.0),
    ("click", np.int64(1), 1.0),
    ("click", np.bool_(True), 1.0),
    ("click", np.float32(0.0), 0.0),
    ("click", False, 0.0),
    ("latency_ms", 0, 0.0),
    ("latency_ms", np.float32(12.5), 12.5),
    ("latency_ms", MAX_LATENCY_MS, MAX_LATENCY_MS),
    ("error", 1, 1.0),
    ("error", np.int64(0), 0.0),
])
def test_real_numbers_are_accepted_alike(metric: str, value: Any, expected: float) -> None:
    exp = experiment()
    d = exp.assign("u1")
    assert check_value(exp.config.metrics[metric], value) == expected
    exp.record(d, metric, value)
    exp.record_unit("u1", metric, value)
    units = exp.store.snapshot().units
    assert units is not None
    if metric in ("latency_ms", "error", "revenue"):
        assert units.x[metric][0] == 2 * expected
    else:
        assert units.x[metric][0] == expected


def test_numpy_int64_is_accepted_where_float64_is() -> None:
    exp = experiment()
    d = exp.assign("u1")
    exp.record(d, "revenue", np.int64(1))
    exp.record(d, "revenue", np.float64(1))
    units = exp.store.snapshot().units
    assert units is not None and units.x["revenue"][0] == 2.0 and units.y["revenue"][0] == 2.0


@pytest.mark.parametrize(("metric", "value", "match"), [
    ("revenue", NEXT_ABOVE, r"'revenue' must be finite and at most 1e\+100 in magnitude"),
    ("revenue", -1e101, r"at most 1e\+100 in magnitude.*got -1e\+101"),
    ("revenue", 1e200, r"at most 1e\+100 in magnitude.*got 1e\+200"),
    ("revenue", 2 * int(MAX_ABS_VALUE), "at most 1e"),
    ("revenue", 10**400, "too large for a float"),
    ("revenue", Fraction(10**400, 3), "too large for a float"),
    ("revenue", Decimal("1e400"), r"at most 1e\+100.*Decimal\('1E\+400'\)"),
    ("revenue", Decimal("NaN"), "finite"),
    ("revenue", Decimal("sNaN"), "finite"),
    ("revenue", np.float64("inf"), "finite"),
    ("revenue", np.longdouble("1e4000"), "finite"),
    ("revenue", 1j, "must be a number, got complex"),
    ("revenue", "1", "must be a number, got str"),
    ("revenue", b"1", "must be a number, got bytes"),
    ("revenue", np.array(3), "must be a number, got ndarray"),
    ("revenue", [1.0], "must be a number, got list"),
    ("revenue", "x" * 10_000, r"got str 'xxx+\.\.\.$"),  # the message stays short
    ("click", np.int64(2), "'click' must be 0 or 1"),
    ("click", np.float32(0.5), "0 or 1"),
    ("latency_ms", -1e6, r"'latency_ms' \(recorded automatically.*from 0 to 86400000.*"
                         r"got -1000000\.0"),
    ("latency_ms", -1, "latency_ms"),
    ("latency_ms", math.nextafter(MAX_LATENCY_MS, math.inf), "24 hours"),
    ("latency_ms", float("nan"), "'latency_ms' must be finite"),
    ("latency_ms", 1e-200, "'latency_ms' must be 0 or at least 1e-100 in magnitude"),
    ("revenue", 5e-324, r"'revenue' must be 0 or at least 1e-100 in magnitude.*5e-324"),
    ("revenue", -NEXT_BELOW_TINY, "at least 1e-100"),
    ("revenue", Decimal("1e-200"), r"at least 1e-100.*Decimal\('1E-200'\)"),
    ("revenue", np.float64(-1e-300), "at least 1e-100"),
    ("error", 0.5, "'error' must be 0 or 1"),
    ("error", -1, "'error' must be 0 or 1"),
])
def test_refused_values_change_nothing(metric: str, value: Any, match: str) -> None:
    for level in ("user", "request"):
        exp = experiment(level)
        d = exp.assign("u1" if level == "user" else None)
        exp.record(d, "revenue", 3.0)
        before = fingerprint(exp)
        with pytest.raises(InvalidValueError, match=match):
            check_value(exp.config.metrics[metric], value)
        with pytest.raises(InvalidValueError, match=match):
            exp.record(d, metric, value)
        if level == "user":
            with pytest.raises(InvalidValueError, match=match):
                exp.record_unit("u1", metric, value)
        assert fingerprint(exp) == before


@pytest.mark.parametrize("value", [
    MAX_ABS_VALUE, -MAX_ABS_VALUE, NEXT_ABOVE, -NEXT_ABOVE, int(MAX_ABS_VALUE),
    int(MAX_ABS_VALUE) + 1, -int(MAX_ABS_VALUE) - 1, 2**53 + 1, 0, 1, -0.0, 0.0, 1.0, -1, 2,
    MAX_LATENCY_MS, math.nextafter(MAX_LATENCY_MS, math.inf), int(MAX_LATENCY_MS) + 1,
    -5e-324, 5e-324, MIN_ABS_VALUE, -MIN_ABS_VALUE, NEXT_BELOW_TINY, -NEXT_BELOW_TINY,
    float("nan"), float("inf"), -float("inf")])
def test_fast_paths_agree_with_check_value_at_the_bounds(value: Any) -> None:
    for metric in ("click", "revenue", "latency_ms", "error"):
        exp = experiment()
        d = exp.assign("u1")
        try:
            expected = check_value(exp.config.metrics[metric], value)
        except InvalidValueError:
            before = fingerprint(exp)
            with pytest.raises(InvalidValueError):
                exp.record(d, metric, value)
            assert fingerprint(exp) == before
        else:
            exp.record(d, metric, value)
            units = exp.store.snapshot().units
            assert units is not None and units.x[metric][0] == expected


def test_recording_at_the_bound_keeps_every_sum_finite() -> None:
    """Values at the bound, recorded and compensated at request level: the group sums stay
    finite and the moments come back to those of the other values."""
    exp = experiment("request")
    ds = [exp.assign(None) for _ in range(40)]
    for i, d in enumerate(ds):
        exp.record(d, "revenue", float(i % 5))
    exp.record(ds[0], "revenue", MAX_ABS_VALUE)
    exp.record(ds[0], "revenue", -MAX_ABS_VALUE)
    for _n, per_metric in exp.store.snapshot().groups.values():
        m = per_metric["revenue"]
        assert all(math.isfinite(v) for v in (m.mean_x, m.m2_x, m.c_xy, m.m2_y))


def test_routing_core_import_loads_neither_numpy_nor_numbers() -> None:
    code = ("import sys, modelrouter.routing.experiment; "
            "print('numpy' in sys.modules, 'decimal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
