"""bench_server.py's fixed-offered-load mode: wrk paced to a request rate, and its report.

At saturation (wrk's default closed loop) a slower server also pays more kernel wake-ups per
request, which could amplify any added work; a service is not run at saturation, and what it
sees is the CPU per request at the SAME offered rate, bare vs routed. (Measured in issue 17's
sixth pass, docs/performance.md: the fixed rate did not give the router a smaller figure.)
Here wrk keeps its ``-c`` connections but paces them with its Lua ``delay()`` hook (called
after each response, before the connection's next request): each call claims the next slot
of one shared schedule, ``1000 / rate`` ms apart, and waits until it. Slots do not depend on
when responses come back, so the offered rate holds while a connection is free at each slot
(Little's law: ``rate x latency`` of the connections are busy); a schedule that falls behind
catches up without waiting, at most ``CATCH_UP_MS`` of it (after a longer stall the missed
slots are dropped, and the achieved rate shows it). wrk's timers have a resolution of 1 ms:
requests leave in bunches of about ``rate / 1000`` per millisecond, the same bunches for every
app.

On a shared machine the server may not get a core in time to sustain the rate (rows flagged);
``nice`` does not help across sessions when the kernel groups them (``sched_autogroup``), the
session's group priority does: ``setsid sh -c 'echo -10 > /proc/self/autogroup; exec python
benchmarks/bench_server.py --rate ...'`` (at a fixed rate the server uses no more CPU for it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from _harness import span, table

CATCH_UP_MS = 100.0
RATE_TOLERANCE = 0.02  # achieved req/s further than this from the offer: the row is flagged
AUTO_FRACTION = 0.6  # --rate auto: this share of the slowest routed app's saturated req/s
MAX_RATE = 1e6

# One schedule per wrk thread (bench_server runs one): `slot` is the last claimed send time,
# in ms of CLOCK_MONOTONIC (clock id 1 on Linux), read through LuaJIT's ffi.
PACED_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } mr_timespec;
int clock_gettime(int clk_id, mr_timespec *tp);
]]
local ts = ffi.new("mr_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = INTERVAL_MS
local slot = nil
delay = function()
  local now = now_ms()
  if slot == nil then
    slot = now
  else
    slot = math.max(slot + interval, now - CATCH_UP)
  end
  return math.max(0, math.floor(slot - now + 0.5))
end
"""


class Row(Protocol):
    """What the report reads of one measurement (bench_server.Measurement)."""

    @property
    def app(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def round(self) -> int: ...
    @property
    def rps(self) -> float: ...
    @property
    def p50_ms(self) -> float: ...
    @property
    def p99_ms(self) -> float: ...
    @property
    def errors(self) -> int: ...
    @property
    def offered(self) -> float: ...
    @property
    def sched_s(self) -> float: ...
    @property
    def seconds(self) -> float: ...
    @property
    def sched_us(self) -> float: ...
    @property
    def user_us(self) -> float: ...


def parse_rates(text: str) -> list[float] | None:
    """``--rate``: ``"auto"`` (None: pick it from a saturation probe) or comma-separated
    requests/s, each finite and in (0, MAX_RATE]; a ValueError names the bad value."""
    if text.strip() == "auto":
        return None
    rates: list[float] = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            raise ValueError(f"--rate: {part!r} is not a number (or 'auto')") from None
        if not (0 < rate <= MAX_RATE):  # NaN fails too
            raise ValueError(f"--rate: {part!r} must be in (0, {MAX_RATE:g}] requests/s")
        rates.append(rate)
    if len(set(rates)) != len(rates):
        raise ValueError(f"--rate: {text!r} repeats a rate")
    return rates


def interval_ms(rate: float) -> float:
    """Milliseconds between two slots of the schedule at ``rate`` requests/s (one wrk thread)."""
    return 1000.0 / rate


def paced_script(request_lua: str, rate: float) -> str:
    """The wrk script: ``request_lua`` (its ``request`` function) paced to ``rate`` req/s."""
    return request_lua + PACED_LUA.replace("INTERVAL_MS", repr(interval_ms(rate))).replace(
        "CATCH_UP", repr(CATCH_UP_MS))


def auto_rate(saturated_rps: Sequence[float], fraction: float = AUTO_FRACTION) -> float:
    """``fraction`` of the slowest saturated req/s, rounded down to a multiple of 100 (at least
    100): a rate every app sustains with headroom."""
    slowest = min(saturated_rps)
    if not math.isfinite(slowest) or slowest <= 0:
        raise ValueError(f"saturation probe gave {slowest!r} requests/s")
    return max(100.0, math.floor(slowest * fraction / 100) * 100)


def off_rate(offered: float, achieved: float, tolerance: float = RATE_TOLERANCE) -> bool:
    """Whether ``achieved`` req/s is further than ``tolerance`` (relative) from ``offered``."""
    return not abs(achieved - offered) <= tolerance * offered


def fmt_load(load: tuple[float, float, float]) -> str:
    """A load average triple as ``1.00/1.00/1.00`` (1, 5, 15 minutes)."""
    return "/".join(f"{x:.2f}" for x in load)


def write(path: Path, text: str) -> str:
    """Write ``text`` to ``path``; the path as a string (a wrk script for ``-s``)."""
    path.write_text(text)
    return str(path)


def _added(ms: Sequence[Row], base: Sequence[Row], field: str) -> str:
    diffs = [getattr(m, field) - getattr(b, field) for m, b in zip(ms, base)]
    return span(diffs, 1) if diffs else ""


def rate_report(results: Sequence[Row], apps: list[str], endpoints: list[str],
                rates: dict[str, list[float]]) -> str:
    """One markdown table per endpoint and offered rate: achieved req/s (flagged when a round
    is off the offer by more than RATE_TOLERANCE), server CPU per request (schedstat) and its
    user/system split (user from the ticks of /proc/<pid>/stat, system the rest), the CPU added
    over the bare app (median of the per-round differences), latency, the server's CPU use."""
    lines: list[str] = []
    for ep in endpoints:
        for rate in rates[ep]:
            by_app = {a: sorted((m for m in results
                                 if m.app == a and m.endpoint == ep and m.offered == rate),
                                key=lambda m: m.round) for a in apps}
            base = by_app.get("bare", [])
            rows = []
            for a in apps:
                ms = by_app[a]
                if not ms:
                    continue
                off = sum(off_rate(rate, m.rps) for m in ms)
                flag = f"OFF by >{RATE_TOLERANCE:.0%} in {off}/{len(ms)}" if off else "ok"
                rows.append([
                    a, span([m.rps for m in ms], 0), flag,
                    span([m.sched_us for m in ms], 1), span([m.user_us for m in ms], 1),
                    span([m.sched_us - m.user_us for m in ms], 1),
                    _added(ms, base, "sched_us") if a != "bare" else "",
                    _added(ms, base, "user_us") if a != "bare" else "",
                    span([m.p50_ms for m in ms], 2), span([m.p99_ms for m in ms], 2),
                    span([m.sched_s / m.seconds * 100 for m in ms], 0),
                    str(sum(m.errors for m in ms))])
            lines.append(f"\nendpoint /{ep}, offered {rate:,.0f} req/s:\n")
            lines.append(table(["app", "achieved req/s", "rate check", "server CPU us/request",
                                "user us", "system us", "added CPU us/request",
                                "added user us", "p50 ms", "p99 ms", "server CPU %",
                                "errors"], rows))
            if by_app.get("spin") and by_app.get("passthrough"):
                loop = _added(by_app["spin"], by_app["passthrough"], "sched_us")
                lines.append(f"calibration: spin - passthrough (the loop alone, ~3.6 us in a hot "
                             f"in-process loop): {loop} us/request")
    return "\n".join(lines)
