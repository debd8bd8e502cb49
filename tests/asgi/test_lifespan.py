"""Lifespan: restore on startup, flush and snapshot on shutdown, periodic snapshots; apps with
and without lifespan support."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from modelrouter import ModelRouter, RouterConfig
from modelrouter.testing import ASGIClient
from tests.conftest import make_app

VARIANTS = {"a": lambda x: x, "b": lambda x: 2 * x}


async def lifespan(app: Any, between: Any = None) -> list[str]:
    """Drive an ASGI lifespan the way uvicorn does; run ``between`` while started."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[str] = []
    started = asyncio.Event()
    done = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(message["type"])
        if message["type"].startswith("lifespan.startup"):
            started.set()
        if message["type"].startswith("lifespan.shutdown"):
            done.set()

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                    "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 10)
    if sent[-1] == "lifespan.startup.complete":
        if between is not None:
            await between()
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(done.wait(), 10)
    else:  # startup failed: the server exits without a shutdown phase (as uvicorn does)
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, 10)
    return sent


def cfg(path: Path, **kw: Any) -> RouterConfig:
    return RouterConfig(experiment="life", metrics={"click": "binary"},
                        snapshot_path=str(path), **kw)


async def traffic(router: ModelRouter, n: int) -> None:
    client = ASGIClient(router)
    for i in range(n):
        r = await client.get("/predict", headers={"x-user-id": f"u{i}"})
        router.record(r.json()["decision_id"], "click", i % 2)


@pytest.mark.parametrize("app_kind", ["starlette", "no-lifespan", "raises"])
def test_snapshot_on_shutdown_and_restore_on_startup(tmp_path: Path, app_kind: str) -> None:
    path = tmp_path / "life.mrsnap"
    starlette_app = make_app()

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await starlette_app(scope, receive, send)

    async def raising(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "lifespan unsupported"
        await starlette_app(scope, receive, send)

    app = {"starlette": starlette_app, "no-lifespan": bare, "raises": raising}[app_kind]
    first = ModelRouter(app, VARIANTS, cfg(path))
    sent = asyncio.run(lifespan(first, lambda: traffic(first, 50)))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert path.exists()
    second = ModelRouter(app, VARIANTS, cfg(path))
    asyncio.run(lifespan(second, lambda: traffic(second, 10)))
    snap = second.experiment.store.snapshot()
    assert snap.n_units == 50  # units u0..u9 were already there
    assert int(snap.requests.sum()) == 60


def test_app_startup_handlers_still_run(tmp_path: Path) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def app_lifespan(app: Any) -> Any:
        events.append("app-start")
        yield
        events.append("app-stop")

    app = Starlette(lifespan=app_lifespan)
    router = ModelRouter(app, VARIANTS, cfg(tmp_path / "x.mrsnap"))
    assert asyncio.run(lifespan(router)) == ["lifespan.startup.complete",
                                             "lifespan.shutdown.complete"]
    assert events == ["app-start", "app-stop"] and (tmp_path / "x.mrsnap").exists()


def test_corrupted_snapshot_fails_startup_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.mrsnap"
    path.write_bytes(b"definitely not a snapshot, but long enough to be read as one" * 2)
    router = ModelRouter(make_app(), VARIANTS, cfg(path))
    assert asyncio.run(lifespan(router))[0] == "lifespan.startup.failed"


def test_periodic_snapshots(tmp_path: Path) -> None:
    from modelrouter.store.persistence import read_info

    path = tmp_path / "p.mrsnap"
    router = ModelRouter(make_app(), VARIANTS, cfg(path, snapshot_seconds=0.05))
    seen: list[int] = []

    async def between() -> None:
        await traffic(router, 20)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if path.exists():
                seen.append(read_info(path).units)
                if seen[-1] == 20:
                    break

    asyncio.run(lifespan(router, between))
    assert seen and seen[-1] == 20  # written while running, not only at shutdown


def test_failed_restore_leaves_the_snapshot_file_alone_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "foreign.mrsnap"
    other = ModelRouter(make_app(), VARIANTS, RouterConfig(experiment="another",
                                                           metrics={"click": "binary"}))
    asyncio.run(traffic(other, 5))
    other.save(str(path))
    before = path.read_bytes()
    router = ModelRouter(make_app(), VARIANTS, cfg(path))

    async def start_then_stop() -> None:  # a server (or caller) that still runs shutdown
        with pytest.raises(Exception, match="another experiment"):
            await router.lifecycle.start()
        await router.lifecycle.stop()

    asyncio.run(start_then_stop())
    assert path.read_bytes() == before
