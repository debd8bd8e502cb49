"""CUPED-adjusted looks with the Redis store (issue 16): a look recorded by one worker keeps the
adjusted difference and ITS variance, and another worker's ``always_valid()`` and
``sequential()`` run on it.

Cells: store redis (2 workers), mode ab, 2 variants, level user, life fresh, input valid.
References: statsmodels' pooled OLS slope + scipy's Welch test on the adjusted outcome (the
difference and its standard error ``diff / t``), Johari et al.'s normal-mixture likelihood
ratio written out for the mSPRT p-value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from tests.analysis.test_cuped_sequential import _reference
from tests.store.conftest import RedisServer

redis = pytest.importorskip("redis")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_adjusted_look_shared_between_workers(redis_server: RedisServer) -> None:
    clock = Clock()
    cfg = RouterConfig(experiment="cuped-looks", salt="cuped-looks", store=redis_server.url,
                       flush_seconds=60.0, primary="y",
                       plan={"max_units": 1000, "looks": 3},
                       metrics={"y": {"kind": "continuous", "covariates": ["pre"]}})
    exps = [Experiment({"a": 1, "b": 2}, cfg, clock=clock) for _ in range(2)]
    rng = np.random.default_rng(17)
    codes: list[int] = []
    ys: list[float] = []
    xs: list[float] = []

    def drive(n: int) -> None:
        for i in range(len(codes), len(codes) + n):
            unit = f"u{i}"
            x = float(rng.normal())
            exps[i % 2].record_covariate(unit, "pre", x)  # before exposure, other worker
            clock.t += 1.0
            code = int(exps[(i + 1) % 2].assign(unit).variant == "b")
            y = 0.7 * x + math.sqrt(0.51) * float(rng.normal()) + 0.15 * code
            exps[i % 2].record_unit(unit, "y", y)
            codes.append(code), ys.append(y), xs.append(x)
        for e in exps:
            e.flush()

    try:
        drive(700)
        look = exps[0].record_look("y")
        d1, se1 = _reference(codes, ys, xs)
        assert look.difference == pytest.approx(d1, rel=1e-8)
        assert look.variance == pytest.approx(se1**2, rel=1e-8)
        drive(500)
        d2, se2 = _reference(codes, ys, xs)
        avs = [Analysis.from_experiment(e).always_valid("y") for e in exps]
        for av in avs:
            assert av.looks == 2 and av.std_err == pytest.approx(se2, rel=1e-8)
            lr = [math.sqrt(v / (v + av.tau2)) * math.exp(av.tau2 * d * d
                                                          / (2 * v * (v + av.tau2)))
                  for d, v in ((d1, se1**2), (d2, se2**2))]
            assert av.pvalue == pytest.approx(min(1.0, 1 / max(lr)), rel=1e-8)
        assert avs[0].to_dict() == avs[1].to_dict()
        seq = Analysis.from_experiment(exps[1]).sequential("y")
        assert seq.look == 2 and seq.std_err == pytest.approx(se2, rel=1e-8)
    finally:
        for e in exps:
            e.close()
