"""The p95 latency guardrail: estimate, interval coverage, false fails and power, against
numpy/scipy references, with user-clustered latencies (lognormal per-user effect + per-request
noise). Snapshots are built with numpy (the store's histogram from the raw values); the
analysis is the production code. One end-to-end test goes through the real middleware."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import lognorm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.analysis.quantile_guardrails import quantile_ratio
from modelrouter.store.histogram import LatencyHistogram
from modelrouter.store.memory import EpochInfo, Snapshot, UnitColumns
from modelrouter.testing import ASGIClient

CONFIG = RouterConfig()
WIDTH = 10 ** (1 / 115) - 1
SU, SN = 0.3, 0.3  # per-user and per-request log-sd


def simulate(seed: int, users: int, *, scale_t: float = 1.0, sn_t: float = SN,
             per_user: float = 5.0, tail_only: bool = False, looks: int = 1
             ) -> tuple[Analysis, np.ndarray, np.ndarray]:
    """Users split 50/50; each makes 1 + Poisson(per_user - 1) requests with latency
    ``20 ms * scale * exp(u + e)``, u ~ N(0, SU) per user, e ~ N(0, sd) per request (sd =
    ``sn_t`` in the treatment). ``tail_only``: no u, but each user's own sd ~ U(0.1, 0.7).
    Returns the analysis of all users, and the raw latencies and their variant codes."""
    return _looks(seed, users, scale_t, sn_t, per_user, tail_only, looks)[-1]


def _looks(seed: int, users: int, scale_t: float = 1.0, sn_t: float = SN,
           per_user: float = 5.0, tail_only: bool = False, looks: int = 1
           ) -> list[tuple[Analysis, np.ndarray, np.ndarray]]:
    """``looks`` analyses of the first ``users * k / looks`` users (nested data)."""
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 2, users)
    m = 1 + rng.poisson(per_user - 1, users)
    unit = np.repeat(np.arange(users), m)
    rv = v[unit]
    if tail_only:
        log_lat = rng.normal(0, 1, unit.size) * rng.uniform(0.1, 0.7, users)[unit]
    else:
        log_lat = rng.normal(0, SU, users)[unit] + rng.normal(0, 1, unit.size) * np.where(
            rv == 1, sn_t, SN)
    lat = 20.0 * np.where(rv == 1, scale_t, 1.0) * np.exp(log_lat)
    out = []
    for k in range(1, looks + 1):
        n = users * k // looks
        r = unit < n
        out.append((_analysis(v[:n], m[:n], unit[r], rv[r], lat[r]), lat[r], rv[r]))
    return out


def _analysis(v: np.ndarray, m: np.ndarray, unit: np.ndarray, rv: np.ndarray,
              lat: np.ndarray) -> Analysis:
    users = v.size
    xs = {k: np.zeros(users) for k in CONFIG.metrics}
    ys = {k: m.astype(float) for k in CONFIG.metrics}
    xs["latency_ms"] = np.bincount(unit, weights=lat, minlength=users)
    units = UnitColumns(variant=v.astype(np.int64), epoch=np.zeros(users, dtype=np.int64),
                        propensity=np.full(users, 0.5), first_seen=np.zeros(users),
                        exposures=m.astype(np.int64), segments=np.zeros((users, 0), np.int64),
                        x=xs, y=ys)
    snap = Snapshot(variants=("control", "treatment"), metrics=dict(CONFIG.metrics),
                    level="user", taken_at=0.0, segment_dims=(), segment_values={},
                    epochs=(EpochInfo(0, "ab", (0.5, 0.5), 0.0),),
                    requests=np.bincount(v, weights=m, minlength=2).astype(np.int64),
                    uncounted_requests=0, segment_overflow=0, units=units,
                    latency=LatencyHistogram.from_values(rv, lat, 2))
    return Analysis(snap, CONFIG, "control")


def true_p95(scale: float = 1.0, sn: float = SN) -> float:
    """The population p95 of one request (scipy): lognormal with sd sqrt(SU^2 + sn^2)."""
    return float(lognorm.ppf(0.95, math.hypot(SU, sn), scale=20.0 * scale))


def test_p95_estimate_within_a_bucket_of_numpy() -> None:
    for seed in range(20):
        a, lat, rv = simulate(seed, 400, scale_t=1.2)
        r = quantile_ratio(a.data, "treatment")
        assert not isinstance(r, str)
        for est, arm in ((r.control_estimate, 0), (r.treatment_estimate, 1)):
            ref = float(np.quantile(lat[rv == arm], 0.95, method="inverted_cdf"))
            assert abs(est.estimate - ref) <= WIDTH * ref, (seed, arm)
        assert r.deff_control > 1.5  # requests of a user are correlated: n_eff < n


def _coverage(runs: int, shift: float, **kw: float) -> float:
    hits = 0
    for seed in range(runs):
        a = simulate(10_000 + seed, 800, scale_t=shift, **kw)[0]
        r = quantile_ratio(a.data, "treatment")
        assert not isinstance(r, str)
        ci = r.confidence_interval(0.95)
        hits += ci.low <= true_p95(shift) / true_p95() <= ci.high
    return hits / runs


@pytest.mark.parametrize("shift", [1.0, 1.2])
@pytest.mark.parametrize("runs", [pytest.param(300, id="fast"),
                                  pytest.param(3000, id="slow", marks=pytest.mark.slow)])
def test_fixed_interval_coverage_of_the_p95_ratio(runs: int, shift: float) -> None:
    # the mean-latency design effect overstates the tail's clustering here: conservative
    assert 0.93 <= _coverage(runs, shift) <= 0.995


def test_naive_interval_would_undercover() -> None:
    """Why the design effect: treating requests as independent (deff = 1) undercovers."""
    from modelrouter.stats.quantile import woodruff
    from modelrouter.store.histogram import EDGES_MS

    hits = 0
    for seed in range(200):
        a = simulate(20_000 + seed, 800)[0]
        h = a.snapshot.latency
        c, t = (woodruff(EDGES_MS, h.counts[i], 0.95) for i in (0, 1))
        half = 1.96 * math.sqrt(c.se_log**2 + t.se_log**2)
        hits += abs(math.log(t.estimate / c.estimate)) <= half
    assert hits / 200 < 0.90


@pytest.mark.slow
def test_coverage_when_users_differ_only_in_their_tail() -> None:
    """The documented limit of the approximation: when units differ in spread rather than
    level, the mean's design effect understates the tail's and coverage drops below 0.95
    (measured: ~0.93 with 5 requests per user, ~0.90 with 20)."""
    hits = {5: 0, 20: 0}
    for per_user in hits:
        for seed in range(1000):
            r = quantile_ratio(simulate(30_000 + seed, 800, tail_only=True,
                                        per_user=per_user)[0].data, "treatment")
            assert not isinstance(r, str)
            ci = r.confidence_interval()
            hits[per_user] += ci.low <= 1.0 <= ci.high
    assert 0.90 <= hits[5] / 1000 <= 0.95 and 0.86 <= hits[20] / 1000 <= 0.93


def _statuses(seed: int, users: int, looks: int, **kw: float) -> list[dict[str, str]]:
    """Guardrail statuses at ``looks`` looks of one growing experiment."""
    return [{g.label: g.status for g in a.guardrails()}
            for a, _, _ in _looks(seed, users, looks=looks, **kw)]  # type: ignore[arg-type]


def _heavier_tail() -> tuple[float, float]:
    """Treatment (scale, request sd) with a p95 30% worse and a mean only 5% worse (scipy)."""
    sc = math.hypot(SU, SN)

    def mean_gap(st: float) -> float:
        scale = 1.3 * lognorm.ppf(0.95, sc) / lognorm.ppf(0.95, st)
        return scale * lognorm.mean(st) / lognorm.mean(sc) - 1.05
    st = brentq(mean_gap, sc, 2.0)
    scale = 1.3 * lognorm.ppf(0.95, sc) / lognorm.ppf(0.95, st)
    return scale, math.sqrt(st**2 - SU**2)


@pytest.mark.parametrize("runs", [pytest.param(100, id="fast"),
                                  pytest.param(1000, id="slow", marks=pytest.mark.slow)])
def test_false_fail_at_the_margin_and_power_against_a_heavier_tail(runs: int) -> None:
    # p95 exactly +10% (the margin): a fail at any of 5 looks is a false fail
    false_fails = sum(any(s["latency_ms p95"] == "fail" for s in
                          _statuses(seed, 3000, 5, scale_t=1.10)) for seed in range(runs))
    assert false_fails / runs <= CONFIG.guardrail_alpha
    # p95 +30% with a mean +5%: the p95 guardrail fails, the mean one does not
    scale, sn_t = _heavier_tail()
    assert true_p95(scale, sn_t) / true_p95() == pytest.approx(1.3)
    fails = mean_fails = 0
    for seed in range(runs):
        g = {r.label: r for r in simulate(50_000 + seed, 3000, scale_t=scale,
                                          sn_t=sn_t)[0].guardrails()}
        fails += g["latency_ms p95"].status == "fail"
        mean_fails += g["latency_ms"].status == "fail"
        assert g["latency_ms p95"].quantile == 0.95 and g["latency_ms"].quantile is None
    assert fails / runs >= 0.90 and mean_fails / runs <= CONFIG.guardrail_alpha


def test_results_report_and_request_level_through_the_middleware() -> None:
    """Real middleware and store, simulated clock: a heavier-tailed treatment fails the p95
    guardrail; the report and to_dict name it ``latency_ms p95``."""
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    rng = np.random.default_rng(3)
    scale, sn_t = _heavier_tail()

    async def predict(request: Request) -> PlainTextResponse:
        variant = request.state.modelrouter.variant
        # request level: no user effect, the same marginal distributions as above
        sd, s = ((math.hypot(SU, sn_t), scale) if variant == "treatment"
                 else (math.hypot(SU, SN), 1.0))
        clock.now += 20.0 * s * rng.lognormal(0.0, sd) / 1000.0  # service time
        return PlainTextResponse(variant)

    app = Starlette(routes=[Route("/predict", predict)])
    router = ModelRouter(app, {"control": 1, "treatment": 2}, RouterConfig(level="request"),
                         timer=clock)
    client = ASGIClient(router)

    async def go() -> None:
        for _ in range(12_000):
            await client.get("/predict")
    asyncio.run(go())
    a = router.analysis()
    g = {r.label: r for r in a.guardrails()}
    p95 = g["latency_ms p95"]
    assert p95.status == "fail" and p95.metric == "latency_ms" and p95.quantile == 0.95
    assert p95.to_dict()["guardrail"] == "latency_ms p95"
    assert p95.reason.startswith("latency_ms p95: treatment vs control +")
    assert g["latency_ms"].status != "fail"
    assert "latency_ms p95  treatment" in a.report()
    assert a.verdict().decision in ("blocked_by_guardrail", "invalid")
    r = quantile_ratio(a.data, "treatment")
    assert not isinstance(r, str) and r.deff_control == 1.0  # request level: independent
    assert r.ratio == pytest.approx(1.3, rel=0.1)
