"""Shared benchmark helpers: direct ASGI calls, repeated rounds, markdown tables."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any


def scope(path: str = "/predict", user: str | None = "user-1") -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"accept", b"*/*")]
    if user is not None:
        headers.append((b"x-user-id", user.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
            "server": ("bench", 80)}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


def per_call_us(app: Any, n: int, users: int = 10_000) -> float:
    """Mean microseconds of CPU per request of ``n`` direct ASGI calls (distinct users cycled).

    CPU time of the calling thread (``time.thread_time``), not wall time: on a shared machine
    it does not count the time other processes hold the core (it still pays their cache
    pollution)."""
    scopes = [scope(user=f"user-{i}") for i in range(users)]

    async def go() -> float:
        start = time.thread_time()
        for i in range(n):
            await app(dict(scopes[i % users]), _receive, _send)
        return (time.thread_time() - start) / n * 1e6

    return asyncio.run(go())


def rounds(fn: Callable[[], float], k: int) -> tuple[float, float, float]:
    """Median, min and max of ``k`` calls of ``fn``."""
    values = [fn() for _ in range(k)]
    return statistics.median(values), min(values), max(values)


def interleaved(fns: dict[str, Callable[[], float]], k: int) -> dict[str, list[float]]:
    """Run the candidates round-robin so machine noise hits all of them alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(k):
        for name, fn in fns.items():
            out[name].append(fn())
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def span(values: list[float], digits: int) -> str:
    """``median (min..max)`` with thousands separators; the median alone for one value."""
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}..{max(values):,.{digits}f})"


def fmt(values: list[float], digits: int = 2) -> str:
    """``median (min..max)``."""
    return (f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}.."
            f"{max(values):.{digits}f})")


def fix_decision(router: Any) -> None:
    """Replace a router's routing by a constant decision (seq -1: nothing recorded), for the
    middleware's own cost (the compiled request path calls a replaced route_checked too)."""
    fixed = router.experiment.route_checked("fixed")[0]
    router.experiment.route_checked = lambda unit, segment: (fixed, -1)


def fix_unit(router: Any) -> None:
    """Replace a router's unit id reader by a constant."""
    router._read_unit = lambda scope: "fixed"
