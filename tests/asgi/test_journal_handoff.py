"""The send wrapper's hand-off of the automatic metrics (issue 17): at unit level with the
memory store it appends ``(seq, latency_ms, error)`` to the store's journal itself and folds it
when full; elsewhere (request level, Redis) it calls ``record_auto``. Each finished request is
recorded exactly once, whatever the app does after its last body byte.

Composition-matrix cells: A/B x memory x user level (journal, folds crossed); bandit x memory
x user level (journal into the decision tracker); A/B x memory x request level (no journal);
the request's ``state`` (dict, empty, other mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.testing import ASGIClient


def scope(user: str, state: Any = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "http", "method": "GET", "path": "/p", "raw_path": b"/p",
                         "query_string": b"", "root_path": "", "scheme": "http",
                         "headers": [(b"x-user-id", user.encode())], "client": ("t", 1),
                         "server": ("t", 80), "http_version": "1.1",
                         "asgi": {"version": "3.0"}}
    if state is not None:
        s["state"] = state
    return s


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def app_with(behaviour: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 503 if behaviour == "503" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        if behaviour == "twice":  # an app breaking ASGI: a second last body
            await send({"type": "http.response.body", "body": b"c"})
        if behaviour == "raise_after":
            raise RuntimeError("after the response")
    return app


def router(behaviour: str, **config: Any) -> ModelRouter:
    config.setdefault("metrics", {"click": "binary"})
    return ModelRouter(app_with(behaviour), {"control": 0, "treatment": 1},
                       RouterConfig(**config))


async def noop_send(message: Any) -> None:
    return None


def serve(r: ModelRouter, n: int, state: Any = None) -> None:
    async def go() -> None:
        for i in range(n):
            with contextlib.suppress(RuntimeError):  # raise_after: the app's own error
                await r(scope(f"u{i % 7}", state), receive, noop_send)
    asyncio.run(go())


@pytest.mark.parametrize("behaviour", ["ok", "503", "twice", "raise_after"])
@pytest.mark.parametrize("mode", ["ab", "bandit"])
def test_each_request_recorded_once_across_folds(behaviour: str, mode: str) -> None:
    extra = {"mode": "bandit", "reward": "click"} if mode == "bandit" else {}
    r = router(behaviour, max_pending=64, **extra)  # the journal folds every 8 entries
    journal = r.experiment.store.journal
    assert journal is not None and journal.threshold == 8
    serve(r, 61)
    assert len(journal.entries) < 8  # folded on the way
    units = r.experiment.store.snapshot().units
    assert units is not None
    assert units.y["latency_ms"].sum() == 61 and units.y["error"].sum() == 61
    assert units.x["error"].sum() == (61 if behaviour == "503" else 0)
    assert (units.x["latency_ms"] >= 0).all() and units.x["latency_ms"].sum() > 0
    if mode == "bandit":  # the decision tracker got them too (per decision group sums)
        snap = r.experiment.store.snapshot()
        assert snap.decisions is not None


def test_request_level_has_no_journal_and_records_at_once() -> None:
    r = router("503", level="request")
    assert r.experiment.store.journal is None
    client = ASGIClient(r)
    for _ in range(5):
        assert client.run("GET", "/p").status == 503
    assert r.experiment.store.snapshot().n_units == 5


def test_the_servers_state_is_copied_not_changed() -> None:
    seen: list[Mapping[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["state"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    r = ModelRouter(app, {"control": 0, "treatment": 1}, RouterConfig())
    shared = {"db": "pool"}

    class ReadOnly(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            return {"db": "ro"}[key]

        def __iter__(self) -> Any:
            return iter(["db"])

        def __len__(self) -> int:
            return 1

    async def go() -> None:
        for state in (shared, {}, None, ReadOnly()):
            await r(scope("u1", state), receive, noop_send)
    asyncio.run(go())
    assert shared == {"db": "pool"}  # the server's dict is untouched
    assert [dict(s) for s in seen] == [
        {"db": "pool", "modelrouter": seen[0]["modelrouter"]},
        {"modelrouter": seen[1]["modelrouter"]}, {"modelrouter": seen[2]["modelrouter"]},
        {"db": "ro", "modelrouter": seen[3]["modelrouter"]}]
    assert len({s["modelrouter"].variant for s in seen}) == 1  # one unit, one variant
