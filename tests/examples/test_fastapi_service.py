"""examples/fastapi_service end to end (issue 14 parts 2 and 5, "Must hold"): the FastAPI app
under uvicorn (a subprocess on a free port), the load script (users, signed-token feedback,
``python -m modelrouter status``), then the service stopped (its snapshot saved at shutdown) and
the snapshot restored in this process: the verdict and its reasons printed by ``status`` equal
``analysis().verdict()`` of the restored data, and the CSV from ``modelrouter export URL``
re-analysed with statsmodels gives ``compare()``'s z and p-value to 1e-9.

Cells: store memory; mode ab; variants 2; level user; life fresh, then restored from the
service's snapshot. Default run: 300 users (one request and one feedback post each).
"""

from __future__ import annotations

import csv
import io
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sm_prop = pytest.importorskip("statsmodels.stats.proportion")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_service"
SECRET = "example-test-secret-0123456789ab"
ADMIN = "example-test-admin-0123456789abc"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "MODELROUTER_SECRET": SECRET, "MODELROUTER_ADMIN_TOKEN": ADMIN,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **extra}


class Service:
    def __init__(self, snapshot: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE), "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--no-access-log"], cwd=ROOT, env=_env(SNAPSHOT_PATH=str(snapshot)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the example did not start: {self.proc.stderr.read()!r}"
                                   if self.proc.stderr else "the example did not start")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # lifespan shutdown: the final snapshot
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()


def _verdict_block(text: str) -> list[str]:
    """The ``verdict:`` line and its reason lines, from a report."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("verdict: "))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  - "):
            break
        block.append(line)
    return block


def _restored(snapshot: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example's router built in this process, restored from the service's snapshot."""
    monkeypatch.setenv("MODELROUTER_SECRET", SECRET)
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", ADMIN)
    monkeypatch.delenv("SNAPSHOT_PATH", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    router = runpy.run_path(str(EXAMPLE / "app.py"), run_name="example_app")["app"]
    router.restore(str(snapshot))
    return router


def test_status_of_the_served_example_equals_the_in_process_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "example.mrsnap"
    service = Service(snapshot)
    try:
        load = subprocess.run([sys.executable, str(EXAMPLE / "load.py"), "--url", service.url,
                               "--users", "300"], cwd=ROOT, env=_env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert load.returncode == 0, load.stderr
        rows_csv = tmp_path / "rows.csv"
        export = subprocess.run([sys.executable, "-m", "modelrouter", "export", service.url,
                                 "-o", str(rows_csv)], cwd=ROOT, env=_env(),
                                capture_output=True, text=True, timeout=60, check=False)
        assert export.returncode == 0, export.stderr
    finally:
        service.stop()
    assert snapshot.exists()
    out = load.stdout
    counts = [line for line in out.splitlines() if " users, " in line]
    assert len(counts) == 2 and sum(int(c.split(": ")[1].split()[0]) for c in counts) == 300
    router = _restored(snapshot, monkeypatch)
    analysis = router.analysis()
    verdict = analysis.verdict()
    block = _verdict_block(out)
    assert block[0] == f"verdict: {verdict.decision.upper()}"
    assert block == _verdict_block(analysis.report())
    assert "Traceback" not in out + load.stderr
    # the export of the running service, re-analysed independently
    rows = list(csv.DictReader(io.StringIO(rows_csv.read_text())))
    assert len(rows) == 300 and {r["unit"] for r in rows} == {f"user-{i}" for i in range(300)}
    clicks = {v: sum(int(r["click.any"]) for r in rows if r["variant"] == v)
              for v in ("baseline", "candidate")}
    users = {v: sum(r["variant"] == v for r in rows) for v in ("baseline", "candidate")}
    z, p = sm_prop.proportions_ztest([clicks["candidate"], clicks["baseline"]],
                                     [users["candidate"], users["baseline"]])
    res = analysis.compare("click")
    assert res.statistic == pytest.approx(z, rel=1e-9)
    assert res.pvalue == pytest.approx(p, rel=1e-9)
    # offline: the snapshot file exported with the example's TOML gives the same rows
    offline = tmp_path / "offline.csv"
    done = subprocess.run([sys.executable, "-m", "modelrouter", "export", "--snapshot",
                           str(snapshot), "--config", str(EXAMPLE / "example.toml"),
                           "--variants", "baseline,candidate", "-o", str(offline)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert offline.read_bytes() == rows_csv.read_bytes()
