"""Shadows under ``uvicorn --workers 3`` with one real redis-server (issue 15: "with uvicorn
--workers 3 and Redis in one integration test"): requests land on any worker, each label is
posted to whichever worker the kernel picks, and every worker then reports the same shadow
statistics of all requests, equal to the table this test counts from the answers it got.

Cells: Redis store, 3 workers, A/B, 2 variants, user level, fresh, valid input plus a shadow
that raises on every call (its errors counted, the served answers unaffected).
"""

from __future__ import annotations

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
        answers: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})] * N

        def run(k: int) -> None:
            # "connection: close": every call on a new connection, so the kernel picks the
            # worker of each (the label of a decision usually reaches another worker), with
            # one client per thread instead of two clients (SSL contexts) per request
            with httpx.Client(base_url=service.base, timeout=30,
                              headers={"connection": "close"}) as c:
                for i in range(k, N, 8):
                    served = c.get("/predict", params={"x": float(xs[i])},
                                   headers={"x-user-id": f"u{i}"}).json()
                    label = c.post("/label", params={"id": served["id"],
                                                     "y": int(truth[i])}).json()
                    answers[i] = served, label

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(run, range(8)))
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
        expected = {"pairs": N, "submitted": N, "accuracy": want, "attached": N,
                    "unknown": 0, "forwarded": crossed, "broken errors": {"exception": N}}

        def mismatches(v: dict[str, Any]) -> dict[str, Any]:
            seen = {"pairs": v["cand"]["pairs"], "submitted": v["cand"]["submitted"],
                    "accuracy": v["cand"]["accuracy"],
                    "attached": v["labels"].get("attached"),
                    "unknown": v["labels"].get("unknown", 0),
                    "forwarded": v["labels"].get("forwarded", 0),
                    "broken errors": v["broken"]["errors"]}
            return {k: (seen[k], w) for k, w in expected.items() if seen[k] != w}

        # a worker's view holds the others' statistics as they last published them (at most
        # every second, after a flush): poll until every worker's view is complete, rather
        # than break on a subset of the fields (forwarded counts and the broken shadow's
        # errors can lag the labels by a publication) or assert stale views at a deadline
        views = service.settle("/shadow", mismatches)
        assert len(views) == 3  # every worker reports the same statistics
        for v in views.values():
            assert v["cand"]["pairs"] == N and v["cand"]["submitted"] == N
            assert v["cand"]["accuracy"] == want
            assert v["labels"]["attached"] == N and v["labels"].get("unknown", 0) == 0
            assert v["labels"].get("forwarded", 0) == crossed
            assert v["broken"]["errors"] == {"exception": N}
    finally:
        assert service.stop() == 0
