"""Covariates read from requests with the Redis store (issue 16): two workers (two
ModelRouter instances on one redis-server) behind httpx's ASGI transport.

Cells covered: Redis store x 2 workers x A/B x 2 variants x user level x valid and hostile
headers. A unit first exposed on worker 0 keeps the value of that request; its later
requests on worker 1 carry other values, which worker 1 reads (it has not seen the unit) but
which never enter the estimate: the first value flushed wins (``HSETNX``), and a value for a
unit whose first request had none is recorded after the first exposure, so it is treated as
missing. Drops are counted across workers. The adjusted comparison equals the independent
reference (statsmodels OLS theta with mean imputation + missingness indicator, scipy Welch)
to 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from tests.asgi.test_covariates import METRICS, Clock, assert_matches, get_all
from tests.conftest import make_app
from tests.store.conftest import RedisServer

redis = pytest.importorskip("redis")


def test_two_workers_read_first_exposures(redis_server: RedisServer) -> None:
    clock = Clock()
    cfg = RouterConfig(experiment="rc", salt="rc", store=redis_server.url, flush_seconds=60.0,
                       metrics=METRICS, covariate_headers={"pre": "x-pre"})
    workers = [ModelRouter(make_app(), {"a": abs, "b": abs}, cfg, clock=clock) for _ in range(2)]
    rng = np.random.default_rng(21)
    n = 300
    x = np.round(rng.normal(5.0, 1.5, n), 6)
    has = np.arange(n) % 6 != 0  # every 6th unit's first request carries no value
    try:
        first: list[dict[str, str | bytes]] = [
            {"x-user-id": f"u{i}", **({"x-pre": repr(float(x[i]))} if has[i] else {})}
            for i in range(n)]
        variants = [r.json()["variant"] for r in get_all(workers[0], first)]
        workers[0].flush()
        clock.t += 5.0
        later: list[dict[str, str | bytes]] = [
            {"x-user-id": f"u{i}", "x-pre": "777"} for i in range(n)]
        hostile: list[dict[str, str | bytes]] = [
            {"x-user-id": f"h{i}", "x-pre": v} for i, v in enumerate([b"nan", b"1e300", b"x"])]
        assert all(r.status_code == 200 for r in get_all(workers[1], later + hostile))
        assert all(r.status_code == 200 for r in get_all(workers[0], [
            {"x-user-id": "h9", "x-pre": b"inf"}]))
        for w in workers:
            w.flush()
        t = np.array(variants) == "b"
        y = 0.9 * np.where(has, x, 5.0) + rng.normal(0, 1, n) + 0.25 * t
        for i in range(n):
            workers[i % 2].record_unit(f"u{i}", "y", float(y[i]))
        for w in workers:
            w.flush()
        snap = workers[1].experiment.store.snapshot()
        assert snap.losses["covariate_dropped:invalid_value"] == 3  # nan, 1e300 (w1); inf (w0)
        assert snap.losses["covariate_dropped:not_a_number"] == 1
        assert snap.units is not None
        ids = list(snap.units.ids or [])
        order = [ids.index(f"u{i}") for i in range(n)]
        at = snap.units.covariate_at["pre"][order]
        first_seen = snap.units.first_seen[order]
        assert (at[has] == first_seen[has]).all()
        assert (at[~has] > first_seen[~has]).all()  # worker 1's "777": after exposure
        # the analysis sees only the pre-exposure values; the hostile units have no outcome
        y_all = np.concatenate([y, np.zeros(4)])
        for j, u in enumerate(["h0", "h1", "h2", "h9"]):
            workers[0].record_unit(u, "y", 0.0)
            y_all[n + j] = 0.0
        workers[0].flush()
        snap = workers[0].experiment.store.snapshot()
        assert snap.units is not None
        ids = list(snap.units.ids or [])
        units = [f"u{i}" for i in range(n)] + ["h0", "h1", "h2", "h9"]
        code = np.array([snap.units.variant[ids.index(u)] for u in units])
        x_all = np.concatenate([np.where(has, x, np.nan), np.full(4, np.nan)])
        assert_matches(workers[0], y_all, code == 1, x_all)
        res = workers[1].analysis().compare("y")
        assert any(f"{(~has).sum()} covariate values recorded after" in note
                   for note in res.notes)
        assert any("4 covariate values read from requests" in note for note in res.notes)
    finally:
        for w in workers:
            w.experiment.close()
