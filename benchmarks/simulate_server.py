"""The served request under simulated caches and branch predictors: why the server's figure is
larger than the hot loop's.

    python benchmarks/simulate_server.py [--apps bare,passthrough,spin,ab,bandit] [--users 1000]
        [--seconds 20] [--warmup 15] [--connections 8] [--code DIR] [--functions 20]

In a hot in-process loop the router adds ~2.3 us per request; under uvicorn it adds several
times that in server CPU (README, Performance), although it executes about the same number of
instructions there (``count_instructions.py``), and the kernel's work per request is the same
(``profile_server.py --perf``: the same system calls per request, bare or routed). This VM has no
hardware counters, so this script asks a simulator where the difference goes: it runs the real
server (``server_apps.py``, uvicorn, httptools, one worker, as ``bench_server.py`` does) under
``valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes`` and drives it with wrk.

Per app: one server with instrumentation off while it starts and while wrk warms it up
(``--warmup`` seconds: every one of ``--users`` units seen, the journal folded), then on for one
timed wrk run of ``--seconds`` (closed loop, ``--connections``: the server is the bottleneck
under valgrind, so requests are batched per event-loop turn as at saturation), then dumped.
Each event count is divided by the requests wrk completed in that run. The simulated caches:
L1i and L1d as valgrind reads them off this CPU (32 KiB, 8-way, 64 B lines), the last level set
by ``--ll`` (default: this machine's L3, 32 MiB, 16-way; valgrind's own reading of it is not
usable here). The L2 between them is not simulated, so an L1 miss stands for an L2 hit.

What it prints:

- per app, per request: instructions (Ir), L1 instruction misses (I1mr), L1 data read and write
  misses (D1mr, D1mw), last-level misses (LLm), conditional and indirect branch mispredictions
  (Bcm, Bim); then what each app adds over ``bare``, and the miss densities per 1,000
  instructions of what it adds (for ``bare``: of the whole request);
- ``stall model``: the cycles those events would cost at fixed penalties (``PENALTY``: an L1
  miss served by L2 ~12 cycles, a last-level miss ~150, a misprediction ~15, as published for
  recent x86 cores), beside the instructions. A model, not a measurement: out-of-order
  execution hides part of each penalty. What it shows is the ratio: the router's instructions
  miss the caches several times as often as the bare request's, because each of them runs once
  per request (straight-line code, no loop to amortise the miss), spread over many functions;
- ``--functions N``: the functions whose own events grow most from ``bare`` to each routed app,
  by the stall model, with their shared object (the router's extensions, the interpreter, libc).

Calibration: ``spin`` spends ~3.6 us of plain Python work in a hot loop (a 200-step ``for``
loop): in a server it adds about what it adds in-process, and here it adds instructions with
few misses. ``ab`` adds about as many instructions with far more misses.

``--code DIR`` serves another ``modelrouter`` package (``git archive <commit> modelrouter |
tar -x -C DIR``, built in place) for before/after. About a minute per app on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _harness import table
from bench_server import LUA, free_port, parse_wrk, start_server, wait_port, wrk
from count_instructions import resolve_name

EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw",
          "Bc", "Bcm", "Bi", "Bim")
# cycles per event of the stall model (see the module docstring): L1 miss served by L2, last-level
# miss served by memory, branch misprediction
PENALTY = {"Ir": 1.0, "I1mr": 12.0, "D1mr": 12.0, "D1mw": 12.0,
           "ILmr": 150.0, "DLmr": 150.0, "DLmw": 150.0, "Bcm": 15.0, "Bim": 15.0}
SHOWN = ("Ir", "I1mr", "D1mr", "D1mw", "LLm", "Bcm", "Bim")
APPS = ("bare", "passthrough", "spin", "ab", "bandit")


@dataclass(frozen=True)
class Counts:
    """One app's simulated events per request (``EVENTS``), from one timed run."""

    app: str
    requests: int
    per_request: tuple[float, ...]

    def get(self, event: str) -> float:
        """Events per request; ``LLm``: the last-level misses (instruction, read, write)."""
        if event == "LLm":
            return sum(self.get(e) for e in ("ILmr", "DLmr", "DLmw"))
        return self.per_request[EVENTS.index(event)]

    def stall_cycles(self) -> float:
        """Cycles per request under the stall model (instructions at one per cycle included)."""
        return stall_cycles(dict(zip(EVENTS, self.per_request)))


def stall_cycles(events: dict[str, float]) -> float:
    """``sum(PENALTY[e] * events[e])`` over the events the model prices."""
    return sum(PENALTY[e] * events.get(e, 0.0) for e in PENALTY)


def totals(text: str) -> tuple[int, ...]:
    """The ``totals:`` line of a callgrind dump, in the order of its ``events:`` line mapped to
    ``EVENTS`` (an event the dump lacks counts 0)."""
    names = re.search(r"^events:\s*(.+)$", text, re.M)
    values = re.search(r"^totals:\s*(.+)$", text, re.M)
    if names is None or values is None:
        raise ValueError("not a callgrind dump with totals")
    got = dict(zip(names.group(1).split(), (int(v) for v in values.group(1).split())))
    return tuple(got.get(e, 0) for e in EVENTS)


def own_costs(text: str) -> dict[str, list[int]]:
    """Each function's own (exclusive) events in a callgrind dump, keyed ``function [object]``
    (callgrind's name compression resolved); call costs (the lines after ``calls=``) are
    inclusive costs of the callee and are skipped, as ``callgrind_annotate`` does."""
    names = re.search(r"^events:\s*(.+)$", text, re.M)
    if names is None:
        raise ValueError("not a callgrind dump")
    order = [EVENTS.index(e) for e in names.group(1).split()]
    ob_names: dict[str, str] = {}
    fn_names: dict[str, str] = {}
    out: dict[str, list[int]] = {}
    obj = fn = "?"
    skip = False

    current: list[int] | None = None
    for line in text.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if skip:
                skip = False
                continue
            if current is None:
                name = re.sub(r"'\d+$", "", fn)  # callgrind's recursion-depth suffix
                current = out.setdefault(f"{name} [{obj.rsplit('/', 1)[-1]}]", [0] * len(EVENTS))
            for i, v in zip(order, line.split()[1:]):
                current[i] += int(v)
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            obj = resolve_name(ob_names, value)
        elif key == "fn":
            fn = resolve_name(fn_names, value)
            current = None
        elif key == "cob":  # (a callee's names may be defined here, used later)
            resolve_name(ob_names, value)
        elif key == "cfn":
            resolve_name(fn_names, value)
        elif key == "calls":
            skip = True
    return out


def run_app(app: str, args: argparse.Namespace, tmp: Path) -> tuple[Counts, Path]:
    """One server under callgrind: warm-up uninstrumented, one instrumented timed wrk run."""
    script = tmp / "users.lua"
    script.write_text(f"USERS = {args.users}\n" + LUA)
    port = free_port()
    out = tmp / f"callgrind.{app}"
    valgrind = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--branch-sim=yes",
                "--instr-atstart=no", f"--LL={args.ll}", f"--callgrind-out-file={out}"]
    server = start_server(app, port, "httptools", args.code, prefix=valgrind,
                          env={"PYTHONHASHSEED": "0"}, quiet=True)
    control = ["callgrind_control"]
    try:
        wait_port(port, timeout=600)
        wrk(port, "/ok", args.warmup, args.connections, str(script))
        subprocess.run([*control, "-i", "on", str(server.pid)], check=True, capture_output=True)
        report = wrk(port, "/ok", args.seconds, args.connections, str(script))
        subprocess.run([*control, "-i", "off", str(server.pid)], check=True, capture_output=True)
        subprocess.run([*control, "-d", str(server.pid)], check=True, capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=120)
    _, n, bad, sock = parse_wrk(report)
    if bad or sock:
        raise RuntimeError(f"{app}: {bad} non-2xx responses, {sock} socket errors")
    dump = Path(f"{out}.1")  # the first dump of the run: the timed window
    return Counts(app, n, tuple(t / n for t in totals(dump.read_text()))), dump


def report(counts: list[Counts]) -> str:
    """The per-request table, the additions over ``bare`` and their miss densities."""
    rows = [[c.app, f"{c.requests:,}"] + [f"{c.get(e):,.0f}" for e in SHOWN]
            + [f"{c.stall_cycles():,.0f}"] for c in counts]
    lines = ["Per request (simulated):", "",
             table(["app", "requests", *SHOWN, "stall model (cycles)"], rows)]
    base = next((c for c in counts if c.app == "bare"), None)
    if base is None:
        return "\n".join(lines)
    rows = []
    for c in counts:
        added = {e: c.get(e) - base.get(e) for e in (*EVENTS, "LLm")} if c is not base else {
            e: c.get(e) for e in (*EVENTS, "LLm")}
        ir = added["Ir"]
        dens = [f"{1000 * added[e] / ir:.1f}" if ir > 0 else "" for e in
                ("I1mr", "D1mr", "Bcm", "Bim")]
        cyc = stall_cycles(added)
        rows.append([c.app if c is base else f"+{c.app}", f"{ir:,.0f}", f"{added['I1mr']:,.0f}",
                     f"{added['D1mr'] + added['D1mw']:,.0f}",
                     f"{added['Bcm'] + added['Bim']:,.0f}", *dens, f"{cyc:,.0f}",
                     f"{cyc / ir:.2f}" if ir > 0 else ""])
    lines += ["", "Added over bare (bare: the whole request); misses per 1,000 of those "
              "instructions:", "",
              table(["app", "Ir", "I1 misses", "D1 misses", "mispredicts", "I1mr/kI",
                     "D1mr/kI", "Bcm/kI", "Bim/kI", "stall model", "cycles/instr"], rows)]
    return "\n".join(lines)


def function_report(base: dict[str, list[int]], n_base: int, app: str,
                    other: dict[str, list[int]], n_other: int, top: int) -> str:
    """The ``top`` functions whose own events per request grow most from bare to ``app``."""
    rows = []
    for name in set(base) | set(other):
        a = [v / n_other for v in other.get(name, [0] * len(EVENTS))]
        b = [v / n_base for v in base.get(name, [0] * len(EVENTS))]
        d = dict(zip(EVENTS, (x - y for x, y in zip(a, b))))
        rows.append((stall_cycles(d), name, d))
    rows.sort(key=lambda r: -r[0])
    by_object: dict[str, float] = {}
    for cyc, name, _ in rows:
        obj = name.rsplit(" [", 1)[-1].rstrip("]")
        by_object[obj] = by_object.get(obj, 0.0) + cyc
    lines = [f"Functions whose own events grow most, bare -> {app} (per request):", "",
             table(["function [object]", "Ir", "I1mr", "D1mr", "Bcm+Bim", "stall model"],
                   [[name[:90], f"{d['Ir']:,.0f}", f"{d['I1mr']:,.0f}", f"{d['D1mr']:,.0f}",
                     f"{d['Bcm'] + d['Bim']:,.0f}", f"{cyc:,.0f}"]
                    for cyc, name, d in rows[:top]]),
             "", "By object (stall model, cycles per request):", "",
             table(["object", "stall model"],
                   [[o, f"{c:,.0f}"] for o, c in sorted(by_object.items(),
                                                      key=lambda kv: -kv[1])[:8]])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", default=",".join(APPS))
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--ll", default="33554432,16,64",
                        help="simulated last-level cache: size,associativity,line (bytes)")
    parser.add_argument("--functions", type=int, default=20, metavar="N")
    parser.add_argument("--code", metavar="DIR")
    args = parser.parse_args()
    apps = args.apps.split(",")
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    counts: list[Counts] = []
    dumps: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="simulate_server-") as tmp:
        for app in apps:
            c, dump = run_app(app, args, Path(tmp))
            counts.append(c)
            dumps[app] = dump
            print(f"{app}: {c.requests:,} requests", file=sys.stderr)
        print(report(counts))
        if args.functions and "bare" in dumps:
            base = own_costs(dumps["bare"].read_text())
            n_base = next(c.requests for c in counts if c.app == "bare")
            for c in counts:
                if c.app in ("bare", "passthrough", "spin"):
                    continue
                print()
                print(function_report(base, n_base, c.app, own_costs(dumps[c.app].read_text()),
                                      c.requests, args.functions))


if __name__ == "__main__":
    main()
