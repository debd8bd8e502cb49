"""``modelrouter status`` and ``modelrouter export`` (issue 14 part 2) against a router served by
uvicorn (in a thread of this process, so the in-process analysis is the served one), a canned
HTTP server for the failures, and snapshot files.

Cells: store memory; mode ab; variants 2; level user; life fresh and restored from a snapshot;
input: wrong/missing token, unreachable service, non-JSON answers, foreign snapshot.
"""

from __future__ import annotations

import csv
import http.server
import io
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.cli import main
from modelrouter.store.export import csv_chunks
from tests.conftest import make_app

uvicorn = pytest.importorskip("uvicorn")

ADMIN = "cli-admin-token-0123456789abcdef"
METRICS = {"click": "binary", "revenue": "continuous"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _router(**config: Any) -> ModelRouter:
    config.setdefault("admin_token", ADMIN)
    return ModelRouter(make_app(), {"control": 1, "treatment": 2},
                       RouterConfig(experiment="cli14", metrics=METRICS, primary="click",
                                    segments={"platform": None}, **config))


def _fill(router: ModelRouter, n: int = 600, seed: int = 5) -> None:
    rng = random.Random(seed)
    for i in range(n):
        d = router.experiment.assign(f"u{i}", (("ios", "web")[i % 2],))
        lift = 0.12 if d.variant == "treatment" else 0.0
        router.record(d, "click", int(rng.random() < 0.3 + lift))
        router.record(d, "revenue", round(rng.random() * 20, 2))


class Served:
    """A router behind uvicorn in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Served, ModelRouter]]:
    router = _router()
    _fill(router)
    service = Served(router)
    try:
        yield service, router
    finally:
        service.stop()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- status -------------------------------------------------------------------------------
def test_status_prints_the_served_report_and_verdict(
        served: tuple[Served, ModelRouter], capsys: pytest.CaptureFixture[str]) -> None:
    service, router = served
    code, out, err = _run(capsys, "status", service.url, "--token", ADMIN)
    assert code == 0 and err == ""
    verdict = router.analysis().verdict()
    lines = out.splitlines()
    assert f"verdict: {verdict.decision.upper()}" in lines
    assert out.splitlines()[1:] == router.analysis().report().splitlines()[1:]


def test_status_json_is_the_stats_json(served: tuple[Served, ModelRouter],
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    service, router = served
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", ADMIN)  # the token from the environment
    code, out, _ = _run(capsys, "status", service.url + "/_modelrouter/", "--json")
    assert code == 0
    data = json.loads(out)
    expected = router.analysis().to_dict()
    assert data["units"] == expected["units"] == 600
    assert data["metrics"]["click"]["comparisons"]["treatment"]["pvalue"] == pytest.approx(
        expected["metrics"]["click"]["comparisons"]["treatment"]["pvalue"], rel=1e-12)


@pytest.mark.parametrize(("token", "code", "says"), [
    ("wrong-token-0123456789abcdef", 4, "403"), ("", 2, "admin token")])
def test_status_token_refused(served: tuple[Served, ModelRouter],
                              capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch, token: str, code: int,
                              says: str) -> None:
    monkeypatch.delenv("MODELROUTER_ADMIN_TOKEN", raising=False)
    service, _ = served
    got, out, err = _run(capsys, "status", service.url, *(("--token", token) if token else ()))
    assert got == code and out == ""
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_status_unreachable_and_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "status", f"http://127.0.0.1:{_free_port()}", "--token", "t",
                        "--timeout", "5")
    assert code == 3 and "cannot reach" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "status", "ftp://example.org", "--token", "t")
    assert code == 2 and "http://" in err


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers by path: /html (200, HTML), /off (404 JSON), /busy (409 JSON)."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        status, kind, body = {
            "/html": (200, "text/html", b"<html>not a router</html>"),
            "/bad-json": (200, "application/json", b"{not json"),
        }.get(self.path.split("/_modelrouter")[0] or self.path, (
            404, "application/json", b'{"error": "no endpoint"}'))
        if self.path.startswith("/busy"):
            status, body = 409, b'{"error": "analysis: variant has 0 units"}'
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canned() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("path", "args", "says"), [
    ("/html", ("--json",), "did not answer JSON"), ("/bad-json", ("--json",), "JSON"),
    ("/html", (), "not the report text"), ("/nothing", (), "404"),
    ("/busy", (), "409: analysis: variant has 0 units")])
def test_status_service_errors_exit_1(canned: str, capsys: pytest.CaptureFixture[str],
                                      path: str, args: tuple[str, ...], says: str) -> None:
    code, out, err = _run(capsys, "status", canned + path, "--token", "t", *args)
    assert code == 1 and out == "" and says in err and err.count("\n") == 1


# -- export -------------------------------------------------------------------------------
def test_export_from_the_service_equals_the_rows(served: tuple[Served, ModelRouter],
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    service, router = served
    out = tmp_path / "rows.csv"
    code, _, err = _run(capsys, "export", service.url, "--token", ADMIN, "-o", str(out))
    assert code == 0 and "wrote" in err
    assert out.read_bytes() == b"".join(csv_chunks(router.experiment.store.snapshot()))
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 600
    code, stdout, _ = _run(capsys, "export", service.url, "--token", ADMIN)  # -o - (stdout)
    assert code == 0 and stdout == out.read_bytes().decode()
    code, _, err = _run(capsys, "export", service.url, "--token", ADMIN, "-o",
                        str(tmp_path / "x.parquet"))
    assert code == 2 and "--snapshot" in err
    code, _, err = _run(capsys, "export", service.url, "--token", "nope", "-o", str(out))
    assert code == 4 and not (tmp_path / "rows.csv.part").exists()


def _toml(path: Path, **extra: str) -> Path:
    router = {"experiment": '"cli14"', "primary": '"click"', **extra}
    lines = ["[router]", *(f"{k} = {v}" for k, v in router.items()),
             "[router.metrics]", 'click = "binary"', 'revenue = "continuous"',
             "[router.segments]", 'platform = "x-platform"',
             "[variants]", 'control = "tests.conftest:make_app"',
             'treatment = "tests.conftest:make_app"']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_export_from_a_snapshot_csv_and_parquet(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    router = _router()
    _fill(router, 300)
    router.save(str(tmp_path / "s.mrsnap"))
    config = _toml(tmp_path / "c.toml")
    code, _, err = _run(capsys, "export", "--snapshot", str(tmp_path / "s.mrsnap"), "--config",
                        str(config), "-o", str(tmp_path / "rows.csv"))
    assert code == 0 and "300 rows" in err
    expected = b"".join(csv_chunks(router.experiment.store.snapshot()))
    assert (tmp_path / "rows.csv").read_bytes() == expected
    code, _, _ = _run(capsys, "export", "--snapshot", str(tmp_path / "s.mrsnap"), "--config",
                      str(config), "-o", str(tmp_path / "rows.parquet"))
    assert code == 0
    table = pq.read_table(tmp_path / "rows.parquet")
    frame = router.analysis().to_frame()
    assert table.column("revenue.sum").to_pylist() == frame["revenue.sum"].tolist()
    assert table.column("unit").to_pylist() == frame["unit"].tolist()


def test_export_from_a_foreign_snapshot_or_without_variants_fails_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    router = _router()
    _fill(router, 50)
    snap = str(tmp_path / "s.mrsnap")
    router.save(snap)
    foreign = _toml(tmp_path / "f.toml", salt='"another-salt"')
    code, _, err = _run(capsys, "export", "--snapshot", snap, "--config", str(foreign), "-o",
                        str(tmp_path / "r.csv"))
    assert code == 1 and "salt" in err and not (tmp_path / "r.csv").exists()
    bare = tmp_path / "bare.toml"
    bare.write_text('experiment = "cli14"\n[metrics]\nclick = "binary"\n')
    code, _, err = _run(capsys, "export", "--snapshot", snap, "--config", str(bare), "-o",
                        str(tmp_path / "r.csv"))
    assert code == 2 and "--variants" in err
    code, _, err = _run(capsys, "export", "--snapshot", snap, "-o", str(tmp_path / "r.csv"))
    assert code == 2 and "--config" in err
    code, _, err = _run(capsys, "export", "-o", str(tmp_path / "r.csv"))
    assert code == 2 and "either URL" in err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = _run(capsys, "export", "--snapshot", snap, "--config",
                        str(_toml(tmp_path / "c.toml")), "-o", str(tmp_path / "r.parquet"))
    assert code == 2 and "modelrouter[parquet]" in err and "Traceback" not in err
