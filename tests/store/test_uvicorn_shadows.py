"""Shadows under ``uvicorn --workers 3`` with one real redis-server (issue 15: "with uvicorn
--workers 3 and Redis in one integration test"): requests land on any worker, each label is
posted to whichever worker the kernel picks, and every worker then reports the same shadow
statistics of all requests, equal to the table this test counts from the answers it got.

Cells: Redis store, 3 workers, A/B, 2 variants, user level, fresh, valid input plus a shadow
that raises on every call (its errors counted, the served answers unaffected).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tests.store.conftest import RedisServer, UvicornService

httpx = pytest.importorskip("httpx")
pytest.importorskip("redis")
pytest.importorskip("uvicorn")

@pytest.mark.parametrize("n", [pytest.param(200, id="200"),
                               pytest.param(3000, id="3000", marks=pytest.mark.slow)])
def test_three_workers_one_shadow_statistic(redis_server: RedisServer, n: int) -> None:
    N = n  # noqa: N806 - the number of requests, as in the module docstring
    service = UvicornService("tests.apps.shadow_app:app", redis_server.url, workers=3)
    try:
        rng = np.random.default_rng(7)
        xs = rng.uniform(0, 1, N)
        truth = (xs > 0.52).astype(int)

        def call(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
            with httpx.Client(base_url=service.base, timeout=10) as c:
                served = c.get("/predict", params={"x": float(xs[i])},
                               headers={"x-user-id": f"u{i}"}).json()
            with httpx.Client(base_url=service.base, timeout=10) as c:  # a new connection:
                label = c.post("/label", params={"id": served["id"],  # any worker takes it
                                                 "y": int(truth[i])}).json()
            return served, label

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(N)))
        assert all(lab["ok"] for _, lab in answers)
        served_pids = {s["pid"] for s, _ in answers}
        crossed = sum(s["pid"] != lab["pid"] for s, lab in answers)
        assert len(served_pids) >= 2 and crossed > 0  # the test exercises the hand-over
        served_right = sum(int(s["prediction"] == truth[i]) for i, (s, _) in enumerate(answers))
        shadow_right = int(np.sum((xs > 0.55).astype(int) == truth))
        both = sum(int(s["prediction"] == truth[i] and (xs[i] > 0.55) == truth[i])
                   for i, (s, _) in enumerate(answers))
        want = {"both": both, "served_only": served_right - both,
                "shadow_only": shadow_right - both,
                "neither": N - served_right - shadow_right + both}
        views: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            v = httpx.get(service.base + "/shadow", timeout=10).json()
            views[v["pid"]] = v
            done = [w for w in views.values() if w["labels"].get("attached") == N
                    and w["cand"]["accuracy"] == want]
            if len(done) >= len(served_pids):
                break
            time.sleep(0.2)
        for v in views.values():
            assert v["cand"]["pairs"] == N and v["cand"]["submitted"] == N
            assert v["cand"]["accuracy"] == want
            assert v["labels"]["attached"] == N and v["labels"].get("unknown", 0) == 0
            assert v["labels"].get("forwarded", 0) == crossed
            assert v["broken"]["errors"] == {"exception": N}
    finally:
        assert service.stop() == 0
