"""A real redis-server for the store tests: started on 127.0.0.1 on a free port, in a temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``kill()`` is SIGKILL, ``start()`` restarts on the same port.

    ``client()`` gives the test a redis-py client that the fixture closes at teardown. The
    fixture then checks that the server holds no connection at all: a store, a thread or a
    test that left one open would otherwise leave its socket to garbage collection (a
    ResourceWarning, an error at pytest's exit, in whichever later test or run it lands)."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: list[Any] = []

    def client(self, *, decode_responses: bool = False) -> Any:
        """A redis-py client of this server, closed by the fixture at teardown."""
        import redis

        c = redis.Redis.from_url(self.url, decode_responses=decode_responses)
        self._clients.append(c)
        return c

    def open_connections(self, settle: float = 5.0) -> list[str]:
        """Close the test's clients, then the addresses of the connections the server still
        holds (polled up to ``settle`` s: the server sees a close at its next event-loop
        turn)."""
        import redis

        for c in self._clients:
            c.close()
        with redis.Redis(port=self.port) as admin:
            me = admin.client_id()
            deadline = time.monotonic() + settle
            while True:
                left = [f"{c['addr']} (last command {c['cmd']}, age {c['age']} s)"
                        for c in admin.client_list() if int(c["id"]) != me]
                if not left or time.monotonic() > deadline:
                    return left
                time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--protected-mode", "no"]
        # the kill test needs acknowledged writes to survive SIGKILL: AOF fsynced per write
        args += (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                 else ["--appendonly", "no"])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        for c in self._clients:  # (a client still used after a restart reconnects)
            c.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


def _server(tmp_path: Path, persistent: bool) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server binary not found (Debian: apt-get install redis-server)")
    server = RedisServer(tmp_path, persistent=persistent)
    server.start()
    try:
        yield server
        if server.proc is not None:
            left = server.open_connections()
            assert not left, f"connections left open at the end of the test: {left}"
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, non-persistent redis-server per test."""
    yield from _server(tmp_path, False)


@pytest.fixture
def persistent_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with appendonly + appendfsync always (survives SIGKILL)."""
    yield from _server(tmp_path, True)


@pytest.fixture
def cut(persistent_redis_server: RedisServer) -> Iterator[Any]:
    """A :class:`~tests.store.test_redis_reply_lost.CuttingProxy` in front of the persistent
    server: it can kill Redis after a command ran and drop its reply."""
    from tests.store.test_redis_reply_lost import CuttingProxy

    proxy = CuttingProxy(persistent_redis_server)
    yield proxy
    proxy.close()


class UvicornService:
    """``uvicorn <app> --workers N`` on a free port with ``MODELROUTER_TEST_REDIS`` set; ready
    once EVERY worker has answered ``GET /stats`` with its ``pid`` (new connections until N
    pids: a worker still importing takes no connection, and a test that needs requests on
    several workers must not start before they can take them). ``stop()`` is a graceful
    SIGINT (every worker runs its lifespan shutdown, the final flush) and returns the exit
    code. The server's log (uvicorn's info level: a worker killed by its health check shows
    there) is kept in a temp file for failure messages (``log_tail()``).

    Deadlines are generous (``start_timeout``) and only spent when the machine is slow: at a
    load average of ~15 on 2 cores the first worker took 18-21 s to answer."""

    def __init__(self, app: str, redis_url: str, workers: int = 3, *,
                 start_timeout: float = 120.0) -> None:
        import httpx

        root = Path(__file__).resolve().parents[2]
        self.port = free_port()
        self.workers = workers
        env = {**os.environ, "MODELROUTER_TEST_REDIS": redis_url,
               "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        fd, self._log = tempfile.mkstemp(prefix="uvicorn-", suffix=".log")
        self._logged: str | None = None  # the whole log, once the server has exited
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(workers), "--log-level", "info",
                 "--no-access-log"], cwd=root, env=env, stdout=fd, stderr=fd)
        finally:
            os.close(fd)  # the server has its own copy
        self.base = f"http://127.0.0.1:{self.port}"
        self.pids: set[int] = set()
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                r = httpx.get(self.base + "/stats", timeout=30)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            if r.status_code == 200:
                self.pids.add(int(r.json()["pid"]))
                if len(self.pids) >= workers:
                    return
            time.sleep(0.05)  # do not hammer the workers already up while others start
        seen = f"{len(self.pids)} of {workers} workers answered /stats"
        code = self.stop()
        raise RuntimeError(f"uvicorn did not start: {seen} within {start_timeout:g}s (exit "
                           f"code {code}); server log:\n{self.log_tail()}")

    def settle(self, path: str, mismatches: Callable[[dict[str, Any]], dict[str, Any]], *,
               timeout: float = 120.0) -> dict[int, dict[str, Any]]:
        """Poll ``GET path`` on new connections (the kernel picks the worker) until the latest
        answer of every worker has no mismatch (``mismatches(answer)`` is empty: the totals
        have settled there), then return those answers by pid. At ``timeout``: an
        AssertionError naming each worker's mismatches (or that it never answered), with the
        server log. Use it instead of a fixed sleep (a guess a loaded machine outlasts: an
        answer that computes an analysis took up to ~1 s at load 15, and the kernel may send
        several polls in a row to the same worker)."""
        import httpx

        views: dict[int, dict[str, Any]] = {}
        wrong: dict[int, dict[str, Any]] = {}
        polls = 0
        started = time.monotonic()
        while True:
            body = httpx.get(self.base + path, timeout=30).json()
            polls += 1
            views[int(body["pid"])] = body
            wrong = {pid: mismatches(view) for pid, view in views.items()}
            if len(views) >= self.workers and not any(wrong.values()):
                return views
            if time.monotonic() - started > timeout:
                break
            time.sleep(0.1)
        report = {pid: wrong.get(pid, "never answered")
                  for pid in sorted(self.pids | set(views))}
        raise AssertionError(
            f"GET {path} had not settled on every worker after {timeout:g}s and {polls} "
            f"polls; mismatches (seen, wanted) by worker pid: {report}\nserver log:\n"
            f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the server logged (for failure messages)."""
        text = (self._logged if self._logged is not None
                else Path(self._log).read_text(errors="replace"))
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        if self._logged is None:  # the server is gone: keep its log in memory, drop the file
            self._logged = Path(self._log).read_text(errors="replace")
            os.unlink(self._log)
        return code
