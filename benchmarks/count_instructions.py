"""Instructions per request of the router's parts, counted by valgrind: a noise-free measure.

    python benchmarks/count_instructions.py [--calls 20000] [--users 10000] [--code DIR]

CPU time on a shared machine moves by several microseconds from run to run (other processes,
their cache pollution); the number of instructions a request executes does not. For each case
this runs the in-process request loop of ``bench_middleware.py`` (direct ASGI calls on a trivial
Starlette endpoint, a fresh per-request ``state`` dict as uvicorn gives, ``--users`` distinct
``x-user-id`` values cycled, all known after a warm-up) under ``valgrind --tool=callgrind``
twice, with 0 and with ``--calls`` timed requests after the same warm-up, and prints
``(Ir(calls) - Ir(0)) / calls``: the instructions one request adds, startup excluded.

Cases: ``bare`` (the app alone), ``pass`` (a pass-through pure ASGI middleware), ``ab``
(``ModelRouter`` in A/B mode, user level, every unit known), ``abnew`` (the same, every timed
request a unit's first exposure, as in a server run over 100,000 users), ``bandit`` (bandit
mode, Thompson sampling on a binary reward, every unit known), ``glue`` (the router
with routing replaced by a constant decision: reader + middleware), ``noreader`` (also the unit
id reader replaced), ``record`` (``Experiment.record(decision_id, "revenue", 1.0)`` as
``bench_middleware.record_cost_us`` calls it: memory store, user level, A/B, 10,000 decisions
cycled) and ``routerrecord`` (the same through ``ModelRouter.record``): instructions per event.
``--code DIR`` counts another modelrouter package (``git archive <commit> modelrouter | tar
-x -C DIR``) for before/after. Needs valgrind (Debian package ``valgrind``); about a minute per
case on 2 cores (two valgrind runs at a time).

Instructions are not time: under uvicorn the router's instructions run at a lower rate than in
a hot loop, because between two requests the server runs ~400 KB of other code and the
router's code is no longer in the L1 instruction cache: ``simulate_server.py`` counts ~800
L1 instruction misses per A/B request, 90 per 1,000 of its instructions. A change that cuts
instructions without cutting the cache lines they run through shows here and barely in the
server; count both. See README, Performance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = ("bare", "pass", "ab", "abnew", "bandit", "glue", "noreader", "record", "routerrecord")


def child(case: str, calls: int, users: int, pool: int) -> None:
    """The measured process: warm up, then ``calls`` requests (0: warm-up only). ``pool``: the
    new units ``abnew`` prepares, the same in both runs of a count (``calls`` of the timed
    run), so the setup the two runs subtract is identical."""
    from _harness import _receive, _send, fix_decision, fix_unit, scope
    from bench_middleware import PassThrough, make_app

    from modelrouter import ModelRouter, RouterConfig

    if case in ("record", "routerrecord"):
        record_events(case, calls)
        return
    app: Any
    if case == "bare":
        app = make_app()
    elif case == "pass":
        app = PassThrough(make_app())
    else:
        mode = {"mode": "bandit", "reward": "click"} if case == "bandit" else {}
        router = ModelRouter(make_app(), {"control": 0, "treatment": 1},
                             RouterConfig(metrics={"click": "binary"}, **mode))
        if case in ("glue", "noreader"):
            fix_decision(router)
        if case == "noreader":
            fix_unit(router)
        app = router
    if case == "abnew":  # every timed request a unit's first exposure
        scopes = [scope(user=f"user-{i}") for i in range(users + pool)]
    else:
        scopes = [scope(user=f"user-{i}") for i in range(users)]

    async def go(n: int, first: int = 0) -> None:
        for i in range(first, first + n):
            s = dict(scopes[i % len(scopes)])
            s["state"] = {}
            await app(s, _receive, _send)

    if case == "abnew":
        asyncio.run(go(users))  # the first `users` units, the journal folded at least once
        asyncio.run(go(calls, first=users))  # then only units never seen
        return
    asyncio.run(go(users + 2_000))  # every unit known, the journal folded at least once
    asyncio.run(go(calls))


def record_events(case: str, calls: int) -> None:
    """The ``record`` cases: 10,000 decisions, a warm-up, then ``calls`` feedback events."""
    from bench_middleware import make_app

    from modelrouter import ModelRouter, RouterConfig

    router = ModelRouter(make_app(), {"control": 0, "treatment": 1},
                         RouterConfig(metrics={"click": "binary", "revenue": "continuous"}))
    exp = router.experiment
    decisions = [exp.assign(f"user-{i}").decision_id for i in range(10_000)]
    record = exp.record if case == "record" else router.record
    for i in range(12_000):
        record(decisions[i % 10_000], "revenue", 1.0)
    for i in range(calls):
        record(decisions[i % 10_000], "revenue", 1.0)


def resolve_name(table: dict[str, str], value: str) -> str:
    """A name in a callgrind dump under name compression: ``(7) name`` defines id 7 (recorded in
    ``table``) and means ``name``; a later ``(7)`` means it again; an uncompressed name is
    itself; an id never defined is ``"?"``."""
    m = re.match(r"\((\d+)\)(?:\s+(.*))?$", value)
    if m is None:
        return value
    if m.group(2):
        table[m.group(1)] = m.group(2)
    return table.get(m.group(1), "?")


def callgrind_pair(case: str, calls: int, users: int, code: str | None, tmp: Path,
                   options: tuple[str, ...] = ()) -> tuple[str, str]:
    """The callgrind dumps (text) of ``case`` with 0 and with ``calls`` timed requests after the
    same warm-up, run side by side; ``options``: more callgrind options (footprint.py's
    ``--dump-instr=yes``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [*([code] if code else []), str(HERE.parent), str(HERE)]),
        "PYTHONHASHSEED": "0",  # the same dict layouts in both runs and from run to run
        # no OpenBLAS worker threads: the bandit case loads numpy and scipy, whose threads spin
        # for a while after the libraries load, a count that varies from run to run (by ~1,000
        # per request between the two runs in one bandit count) and no request executes
        "OPENBLAS_NUM_THREADS": "1"}
    procs = []
    for n in (0, calls):
        out = tmp / f"cg.{case}.{n}"
        procs.append((out, subprocess.Popen(
            ["valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={out}",
             sys.executable, __file__, "--child", case, "--calls", str(n),
             "--users", str(users), "--pool", str(calls)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)))
    for _, proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"valgrind run of {case} failed")
    return procs[0][0].read_text(), procs[1][0].read_text()


def count(case: str, calls: int, users: int, code: str | None) -> int:
    """Instructions per request of ``case`` (two callgrind runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        dumps = callgrind_pair(case, calls, users, code, Path(tmp))
    totals = [int(next(x for x in d.splitlines() if x.startswith("totals:")).split()[1])
              for d in dumps]
    return round((totals[1] - totals[0]) / calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--code", metavar="DIR", help="count the modelrouter package in DIR")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls, args.users, args.pool)
        return
    from _harness import table

    cases = [c for c in args.cases.split(",") if c]
    counts = {c: count(c, args.calls, args.users, args.code) for c in cases}
    bare = counts.get("bare")
    print(f"Instructions per request (valgrind callgrind, {args.calls:,} in-process requests "
          f"after a warm-up, {args.users:,} users{', code: ' + args.code if args.code else ''})"
          ":\n")
    print(table(["case", "instructions / request", "added over bare"],
                [[c, f"{n:,}", f"{n - bare:+,}" if bare is not None and c != "bare" else ""]
                 for c, n in counts.items()]))


if __name__ == "__main__":
    main()
