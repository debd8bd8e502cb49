"""The pure parts of the server simulation (benchmarks/simulate_server.py) and of
``profile_server.py --perf``: reading a callgrind dump (its totals, each function's own events
with callgrind's name compression, call lines skipped), the stall model, the report's added
events and miss densities, and perf's CSV per request. The dump is written by hand after
callgrind's format reference; every expected value is worked out by hand from it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from profile_server import perf_per_request  # noqa: E402 - benchmarks/ is not a package
from simulate_server import (  # noqa: E402
    EVENTS,
    Counts,
    own_costs,
    report,
    stall_cycles,
    totals,
)

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir I1mr Bcm
summary: 0

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100 5 1
+2 50 1 0
cob=(2) /x/modelrouter/asgi/middleware_c.cpython-311-x86_64-linux-gnu.so
cfi=(2) middleware_c.c
cfn=(2) _message
calls=3 20
12 900 40 9
fn=(3) _PyEval_EvalFrameDefault'2
5 30 2 0
ob=(2)
fl=(2)
fn=(2)
20 400 30 4
* 7 1 1

totals: 587 39 6
"""


def test_totals_map_the_dump_events_onto_the_fixed_order() -> None:
    got = dict(zip(EVENTS, totals(DUMP)))
    assert (got["Ir"], got["I1mr"], got["Bcm"]) == (587, 39, 6)
    assert all(v == 0 for e, v in got.items() if e not in ("Ir", "I1mr", "Bcm"))
    with pytest.raises(ValueError, match="totals"):
        totals("events: Ir\n")


def test_own_costs_resolve_compressed_names_and_skip_call_lines() -> None:
    own = own_costs(DUMP)
    # the recursion suffix '2 merged into its function; the 900 after calls= is the callee's
    # inclusive cost, not the caller's own
    assert set(own) == {"_PyEval_EvalFrameDefault [libpython3.11.so.1.0]",
                        "_message [middleware_c.cpython-311-x86_64-linux-gnu.so]"}
    ev = own["_PyEval_EvalFrameDefault [libpython3.11.so.1.0]"]
    assert (ev[EVENTS.index("Ir")], ev[EVENTS.index("I1mr")], ev[EVENTS.index("Bcm")]) == (
        180, 8, 1)
    msg = own["_message [middleware_c.cpython-311-x86_64-linux-gnu.so]"]
    assert (msg[EVENTS.index("Ir")], msg[EVENTS.index("I1mr")], msg[EVENTS.index("Bcm")]) == (
        407, 31, 5)
    # the own costs add up to the dump's totals, as callgrind's do
    assert [sum(v[i] for v in own.values()) for i in range(len(EVENTS))] == list(totals(DUMP))


def test_stall_model_prices_each_event_once() -> None:
    # 1,000 instructions, 10 L1i misses (12), 2 last-level data misses (150), 4 mispredicts (15)
    assert stall_cycles({"Ir": 1000, "I1mr": 10, "DLmr": 2, "Bcm": 3, "Bim": 1,
                         "Dr": 999, "Bc": 999}) == 1000 + 120 + 300 + 60


def _counts(app: str, n: int, **per: float) -> Counts:
    return Counts(app, n, tuple(per.get(e, 0.0) for e in EVENTS))


def test_report_subtracts_bare_and_gives_densities_of_the_addition() -> None:
    bare = _counts("bare", 100, Ir=200_000, I1mr=5_000, D1mr=3_000, Bcm=2_000)
    ab = _counts("ab", 90, Ir=210_000, I1mr=5_800, D1mr=3_400, D1mw=50, Bcm=2_300, Bim=100,
                 ILmr=2)
    text = report([bare, ab])
    row = next(line for line in text.splitlines() if line.startswith("| +ab"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # added: 10,000 instructions, 800 I1 misses (80 per 1,000), 450 D1 misses, 400 mispredicts
    assert cells[:5] == ["+ab", "10,000", "800", "450", "400"]
    assert cells[5:9] == ["80.0", "40.0", "30.0", "10.0"]
    # stall model: 10,000 + 12 * (800 + 400 + 50) + 150 * 2 + 15 * (300 + 100) = 31,300
    assert cells[9:] == ["31,300", "3.13"]
    assert ab.get("LLm") == 2
    # bare's own row: densities of its whole request (25 I1 misses per 1,000)
    bare_row = next(line for line in text.splitlines() if line.startswith("| bare |")
                    and "25.0" in line)
    assert "200,000" in bare_row


def test_perf_csv_per_request_keeps_what_the_machine_lacks() -> None:
    csv = ("<not supported>,,cycles,0,100.00,,\n"
           "2000.00,msec,task-clock,2000000000,100.00,0.99,CPUs utilized\n"
           "30000,,raw_syscalls:sys_enter,2000000000,100.00,,\n")
    got = dict(perf_per_request(csv, served=10_000))
    assert got == {"cycles": "not supported", "task-clock (us)": "200.00",
                   "raw_syscalls:sys_enter": "3.000"}


# benchmarks/footprint.py: a dump with instruction positions (--dump-instr=yes), addresses
# absolute, relative (+N / -N) and repeated (*); the line after calls= moves the position only
INSTR_DUMP = """# callgrind format
version: 1
positions: instr line
events: Ir Dr

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) eval
0x1000 10 3 1
+4 11 2 0
+60 12 5 0
cob=(2) /x/modelrouter/asgi/middleware_c.cpython-311-x86_64-linux-gnu.so
cfn=(2) _message
calls=1 0x2000
+4 12 900 9
* 12 1 0
ob=(2)
fn=(2)
0x2000 20 7 0
"""


def test_instruction_costs_decompress_addresses_and_skip_call_costs() -> None:
    from footprint import instruction_costs

    got = instruction_costs(INSTR_DUMP)
    # 0x1000 -> +4 = 0x1004 -> +60 = 0x1040 -> (call line) +4 = 0x1044 -> * = 0x1044
    assert got == {("libpython3.11.so.1.0", 0x1000): 3, ("libpython3.11.so.1.0", 0x1004): 2,
                   ("libpython3.11.so.1.0", 0x1040): 5, ("libpython3.11.so.1.0", 0x1044): 1,
                   ("modelrouter/middleware_c.cpython-311-x86_64-linux-gnu.so", 0x2000): 7}
    with pytest.raises(ValueError, match="dump-instr"):
        instruction_costs("positions: line\nevents: Ir\n")


def test_each_code_line_is_named_by_its_function_and_listed_unless_bare_runs_it() -> None:
    from footprint import functions, instruction_costs

    where: dict[tuple[str, int], str] = {}
    instruction_costs(INSTR_DUMP, where)
    lib, mod = "libpython3.11.so.1.0", "modelrouter/middleware_c.cpython-311-x86_64-linux-gnu.so"
    # fn=(1) eval owns 0x1000..0x1044 (lines 64 and 65); the cfn= of the call names no line;
    # fn=(2), a name compressed by the cfn= before it, owns 0x2000 (line 128)
    assert where == {(lib, 64): "eval", (lib, 65): "eval", (mod, 128): "_message"}
    text = functions({(lib, 64), (lib, 65), (mod, 128)}, {(lib, 64)}, where, 5)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    assert sorted(rows) == [["_message", "middleware_c", "1"], ["eval", "libpython3", "1"]]


def test_per_request_lines_count_lines_that_grew_by_the_threshold() -> None:
    from footprint import own, per_request_lines, report

    lib, mod = "libpython3.11.so.1.0", "modelrouter/middleware_c.cpython-311-x86_64-linux-gnu.so"
    base = {(lib, 0x1000): 100, (lib, 0x1040): 50, (mod, 0x2000): 0}
    # 100 requests. Line 0x1000: its 2 instructions ran 120 more times (0.6 per request each:
    # counted). Line 0x1040: 49 more (0.49: not counted at 0.5). Line 0x1080: 4 instructions
    # that ran 30 more times each, 120 in all but 0.3 per request each (a rare long path:
    # counted only from 0.3). Line 0x2000: exactly 0.5; line 0x2040, a new line: counted.
    run = {(lib, 0x1000): 200, (lib, 0x1010): 20, (lib, 0x1040): 99, (mod, 0x2000): 50,
           (mod, 0x2040): 400, **{(lib, 0x1080 + 4 * i): 30 for i in range(4)}}
    assert per_request_lines(base, run, 100, 0.5) == {lib: 1, mod: 2}
    assert per_request_lines(base, run, 100, 0.4) == {lib: 2, mod: 2}
    assert per_request_lines(base, run, 100, 0.3) == {lib: 3, mod: 2}
    assert own(mod) and not own(lib) and not own("_json.cpython-311-x86_64-linux-gnu.so")
    text = report({"bare": {lib: 10, "libc.so.6": 4}, "ab": {lib: 13, mod: 5, "libc.so.6": 3}})
    row = next(line for line in text.splitlines() if line.startswith("| ab |")
               and "+" in line)
    # added: the router's 5 lines, libpython +3, libc -1: +7 in all, +2 outside the router
    assert [c.strip() for c in row.strip("|").split("|")] == ["ab", "+7", "5", "+3", "+2"]
