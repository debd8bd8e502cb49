"""Fixtures for the HTTP surface: a router with a secret and an admin token, a sync client."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.testing import ASGIClient, Response
from tests.conftest import make_app

SECRET = "feedback-secret-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
PREFIX = "/_modelrouter"
BEARER = {"authorization": f"Bearer {ADMIN}"}


class FakeClock:
    """A settable clock (seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_router(*, clock: FakeClock | None = None, **config: Any) -> ModelRouter:
    config.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
    config.setdefault("exclude_paths", ["/health"])
    config.setdefault("secret", SECRET)
    config.setdefault("admin_token", ADMIN)
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return ModelRouter(make_app(), {"control": lambda x: x, "treatment": lambda x: 2 * x},
                       RouterConfig(**config), **kwargs)


class Client:
    """Synchronous wrapper of :class:`ASGIClient` for tests."""

    def __init__(self, app: Any) -> None:
        self.asgi = ASGIClient(app)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.asgi.run("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.asgi.run("POST", path, **kwargs)

    def route(self, unit: str, path: str = "/predict") -> Response:
        return self.get(path, headers={"x-user-id": unit})

    def tokens(self, n: int, prefix: str = "u") -> list[str]:
        out = []
        for i in range(n):
            token = self.route(f"{prefix}{i}").header("x-modelrouter-token")
            assert token is not None
            out.append(token)
        return out


def fingerprint(router: ModelRouter) -> tuple[Any, ...]:
    """Every statistic the store holds, and the allocation, as comparable plain data."""
    snap = router.experiment.store.snapshot()
    units = snap.units
    cols: tuple[Any, ...] = ()
    if units is not None:
        cols = tuple((m, units.x[m].tolist(), units.y[m].tolist()) for m in sorted(units.x))
        cols += (units.variant.tolist(), units.exposures.tolist())
    groups = tuple(sorted((k, n, tuple(sorted((m, mo.n, mo.mean_x, mo.mean_y)
                                              for m, mo in pm.items())))
                          for k, (n, pm) in snap.groups.items()))
    alloc = router.experiment.allocation
    return (np.asarray(snap.requests).tolist(), snap.uncounted_requests, cols, groups,
            alloc.epoch, alloc.propensities, router.experiment.mode)


@pytest.fixture
def router() -> ModelRouter:
    return make_router()


@pytest.fixture
def client(router: ModelRouter) -> Client:
    return Client(router)
