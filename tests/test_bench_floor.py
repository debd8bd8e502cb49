"""benchmarks/floor_c.pyx, the floor of issue 17's server goal: each stage must do the work it
stands for (else the floor would be low because it does nothing). Built with pyximport into a
temporary directory; skipped where Cython or a C compiler is missing."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from modelrouter.testing import ASGIClient

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pyximport = pytest.importorskip("pyximport")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    build = tmp_path_factory.mktemp("pyxbld")
    src = build / "floor_c.pyx"
    shutil.copy(BENCH / "floor_c.pyx", src)
    sys.path.insert(0, str(build))
    importers = pyximport.install(language_level=3, build_dir=str(build / "out"))
    try:
        import floor_c

        yield floor_c
    finally:
        pyximport.uninstall(*importers)
        sys.path.remove(str(build))
        sys.modules.pop("floor_c", None)


class Inner:
    """The app behind the floor: remembers each request's decision; ``/fail`` answers 500,
    ``/stream`` sends its body in two messages."""

    def __init__(self) -> None:
        self.decisions: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.decisions.append((scope.get("state") or {}).get("modelrouter"))
        status = 500 if scope["path"] == "/fail" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        if scope["path"] == "/stream":
            await send({"type": "http.response.body", "body": b"o", "more_body": True})
        await send({"type": "http.response.body", "body": b"k"})


MODELS = {"control": "model-a", "treatment": "model-b"}


def test_lookup_keeps_one_row_per_unit(floor: Any) -> None:
    app = floor.Lookup(Inner())
    client = ASGIClient(app)
    for i in range(30):
        assert client.run("GET", "/", headers={"x-user-id": f"u{i % 7}"}).status == 200
    client.run("GET", "/")  # no id: no row
    assert app.n_rows == 7


def test_state_gives_each_unit_one_variant_and_the_request_its_decision(floor: Any) -> None:
    inner = Inner()
    client = ASGIClient(floor.State(inner, MODELS))
    units = [f"user-{i}" for i in range(199)]
    for _ in range(3):
        for u in units:
            client.run("GET", "/", headers={"x-user-id": u})
    seen: dict[str, set[str]] = {}
    for u, d in zip(units * 3, inner.decisions, strict=True):
        assert MODELS[d.variant] == d.model
        seen.setdefault(u, set()).add(d.variant)
    assert all(len(v) == 1 for v in seen.values())  # sticky
    # both variants used (hash of 199 ids: each side has far more than 50 with overwhelming odds)
    firsts = [next(iter(v)) for v in seen.values()]
    assert 50 < firsts.count("treatment") < 149
    assert [d.seq for d in inner.decisions] == list(range(1, 598))


def test_metrics_records_one_latency_and_error_per_finished_response(floor: Any) -> None:
    app = floor.Metrics(Inner(), MODELS)
    client = ASGIClient(app)
    paths = ["/", "/fail", "/stream", "/", "/fail"]
    for p in paths:
        client.run("GET", p, headers={"x-user-id": "u1"})
    values = app.sink.pairs()
    assert [error for _, error in values] == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert all(0 <= latency < 1.0 for latency, _ in values)  # seconds, measured


def test_the_fast_form_records_the_same_and_takes_one_positional_message(floor: Any) -> None:
    app = floor.FastMetrics(Inner(), MODELS)
    client = ASGIClient(app)
    for p in ["/", "/fail", "/stream", "/", "/fail"]:
        client.run("GET", p, headers={"x-user-id": "u1"})
    assert [error for _, error in app.sink.pairs()] == [0.0, 1.0, 0.0, 0.0, 1.0]

    seen: list[Any] = []

    async def server_send(message: Any) -> None:
        seen.append(message)

    async def keep_send(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)

    holder = floor.FastMetrics(keep_send, MODELS)
    asyncio.run(holder({"type": "http", "path": "/", "headers": []}, None, server_send))
    send = seen.pop()
    with pytest.raises(TypeError):
        send(message={"type": "http.response.body"})  # keywords: refused, not misread
    with pytest.raises(TypeError):
        send({"type": "x"}, {"type": "y"})
