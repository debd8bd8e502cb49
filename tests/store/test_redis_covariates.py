"""Covariates with the Redis store (issue 16): two workers recording covariates and outcomes
for the same units give the same CUPED-adjusted comparison, equal to the independent
reference (statsmodels OLS theta + scipy Welch on the adjusted outcome) to 1e-8.

Cells covered: Redis store, 2 workers, A/B, user level, covariates recorded before exposure on
another worker than the exposure, after exposure (treated as missing), replayed (first value
wins), hostile values refused before anything is buffered.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.exceptions import InvalidValueError
from tests.store.conftest import RedisServer

redis = pytest.importorskip("redis")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def _workers(url: str, clock: Clock) -> list[Experiment]:
    cfg = RouterConfig(experiment="cov", salt="cov", store=url, flush_seconds=60.0,
                       metrics={"y": {"kind": "continuous", "covariates": ["pre"]}})
    return [Experiment({"a": 1, "b": 2}, cfg, clock=clock) for _ in range(2)]


def _flush(exps: list[Experiment]) -> None:
    for e in exps:
        e.flush()


def _reference(y: np.ndarray, t: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    theta = sm.OLS(y, sm.add_constant(x)).fit().params[1:]
    adj = y - (x - x.mean(axis=0)) @ theta
    res = stats.ttest_ind(adj[t == 1], adj[t == 0], equal_var=False)
    return adj[t == 1].mean() - adj[t == 0].mean(), float(res.statistic), float(res.pvalue)


def test_two_workers_give_the_same_adjusted_result(redis_server: RedisServer) -> None:
    clock = Clock()
    exps = _workers(redis_server.url, clock)
    rng = np.random.default_rng(11)
    n = 600
    codes, ys, xs = np.zeros(n, int), np.zeros(n), np.full(n, np.nan)
    late = []
    try:
        for i in range(n):
            unit = f"u{i}"
            x = rng.normal(3.0, 1.0)
            before = i % 10 != 0
            if before:  # recorded by the worker that will not expose the unit
                exps[i % 2].record_covariate(unit, "pre", x)
                xs[i] = x
            clock.t += 1.0
            d = exps[(i + 1) % 2].assign(unit)
            codes[i] = d.variant == "b"
            ys[i] = 0.8 * (x - 3.0) + rng.normal() + 0.2 * codes[i]
            exps[i % 3 % 2].record_unit(unit, "y", ys[i])
            if not before:
                late.append((unit, x))
        _flush(exps)
        clock.t += 1.0
        for unit, x in late:  # after exposure: kept in Redis, not used by the analysis
            exps[0].record_covariate(unit, "pre", x * 50.0)
        for i in range(0, n, 7):  # replays with other values: the first value wins
            exps[1].record_covariate(f"u{i}", "pre", -1e6)
        _flush(exps)
        with pytest.raises(InvalidValueError):
            exps[0].record_covariate("u1", "pre", math.inf)
        results = [Analysis.from_experiment(e).compare("y") for e in exps]
        miss = np.isnan(xs)
        design = np.column_stack([np.where(miss, 0.0, xs), miss.astype(float)])
        diff, stat, p = _reference(ys, codes, design)
        for r in results:
            assert r.adjusted
            assert r.difference == pytest.approx(diff, rel=1e-8)
            assert r.statistic == pytest.approx(stat, rel=1e-8)
            assert r.pvalue == pytest.approx(p, rel=1e-8)
            assert any(f"{len(late)} covariate values recorded after" in note
                       for note in r.notes)
        assert results[0].to_dict() == results[1].to_dict()
        units = exps[0].store.snapshot().units
        assert units is not None
        got = dict(zip(units.ids or [], units.covariates["pre"].tolist()))
        assert got["u7"] == pytest.approx(xs[7]) and got["u14"] == pytest.approx(xs[14])
    finally:
        for e in exps:
            e.close()


def test_values_beyond_the_store_bound_refused(redis_server: RedisServer) -> None:
    exps = _workers(redis_server.url, Clock())
    try:
        store: Any = exps[0].store
        with pytest.raises(InvalidValueError):
            store.record_covariate("u", 0, 1e200, 0.0)
        assert not store._buf.covariates
    finally:
        for e in exps:
            e.close()
