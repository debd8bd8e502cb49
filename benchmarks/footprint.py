"""The request path's code footprint: how many distinct 64-byte lines of machine code one request
runs through, per shared object, counted exactly by valgrind.

    python benchmarks/footprint.py [--cases bare,pass,ab,abnew,bandit] [--calls 5000]
        [--users 2000] [--code DIR] [--every 0.5] [--functions N]

Why: under a server, the router's cost is set by its instruction-cache misses more than by its
instruction count (``simulate_server.py``: the bare request runs through ~400 KB of code, so
every line the router's request touches comes from L2 again, one miss per line). Those misses
track the request path's *footprint*: the number of distinct code lines it runs through. The
simulation measures the misses under a real server, with a spread of about +-50 per request
from how requests batch; this counts the footprint itself in the in-process loop of
``count_instructions.py``: a measure a change to the request path can be judged by. The count
moves by a line or two from run to run of one build at one path (the clock's readings differ);
another path (the checkout against a ``--code`` directory) moves the allocator's layout, and
the count by up to ~10 lines: compare builds through ``--code`` directories whose paths have
the same length.

Cases are ``count_instructions.py``'s (``abnew``: every timed request a unit's first
exposure). For each case, the loop of ``count_instructions.py --child`` runs twice under
``valgrind --tool=callgrind --dump-instr=yes`` (0 and ``--calls`` timed requests after the same
warm-up);
a code line is in the request's footprint when its instructions ran, on average, at least
``--every`` more times per timed request (0.5 by default: a line that runs in most requests
counts; code that runs once per journal fold, every few dozen requests, does not; the warm-up's
first exposures are in both runs and cancel). Prints the lines per object and their
total for each case, and for each routed case what it adds over ``bare``: the router's own
extension modules, and the interpreter's and libc's lines that the router's calls bring in.
``--code DIR`` counts another build (as ``count_instructions.py --code``); ``--functions N``
lists, per routed case, the N functions with the most lines the bare request does not run
(where a change can cut). A minute or two per case on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from _harness import table
from count_instructions import callgrind_pair, resolve_name

LINE = 64  # bytes per instruction-cache line on x86-64
CASES = ("bare", "pass", "ab", "abnew", "bandit")


def instruction_costs(text: str, where: dict[tuple[str, int], str] | None = None
                      ) -> dict[tuple[str, int], int]:
    """``(object, instruction address) -> Ir`` of a callgrind dump made with ``--dump-instr=yes``
    (positions ``instr line`` or ``instr``; names and relative addresses decompressed; the cost
    lines after ``calls=`` are a callee's inclusive cost: their address moves the position, their
    cost is not this address's own). ``where``, when given, is filled with the function of each
    code line that has a cost: ``(object, address // LINE) -> function`` (where two functions
    share a line, the one seen last)."""
    pos = re.search(r"^positions:\s*(.+)$", text, re.M)
    names = re.search(r"^events:\s*(.+)$", text, re.M)
    if pos is None or "instr" not in pos.group(1).split() or names is None:
        raise ValueError("not a callgrind dump with instruction positions (--dump-instr=yes)")
    n_pos = len(pos.group(1).split())
    ir = names.group(1).split().index("Ir")
    objects: dict[str, str] = {}
    functions: dict[str, str] = {}  # (fn= and cfn= share their own table of compressed names)
    obj = fn = "?"
    addr = 0
    call = False
    out: dict[tuple[str, int], int] = defaultdict(int)
    for line in text.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*" or line.startswith("0x"):
            fields = line.split()
            a = fields[0]
            if a.startswith("0x"):
                addr = int(a, 16)
            elif a[0] in "+-":
                addr += int(a)
            elif a != "*":
                addr = int(a)
            if call:
                call = False
                continue
            costs = fields[n_pos:]
            if len(costs) > ir and costs[ir]:
                out[obj, addr] += int(costs[ir])
                if where is not None:
                    where[obj, addr // LINE] = fn
            continue
        key, _, value = line.partition("=")
        if key in ("ob", "cob"):
            name = resolve_name(objects, value)
            if key == "ob":  # the router's modules keep their package as a prefix
                base = name.rsplit("/", 1)[-1]
                obj = f"modelrouter/{base}" if "/modelrouter/" in name else base
        elif key in ("fn", "cfn"):
            name = resolve_name(functions, value)
            if key == "fn":
                fn = name
        elif key == "calls":
            call = True
    return dict(out)


def request_lines(base: dict[tuple[str, int], int], run: dict[tuple[str, int], int],
                  calls: int, every: float) -> set[tuple[str, int]]:
    """The code lines ``(object, address // LINE)`` that ran at least ``every`` times per
    request, on average over the line's instructions: from the run without timed requests
    (``base``) to the run with ``calls`` of them (``run``), the line's added instructions divided
    by the number of its instructions that ran more (a long rare path does not count as a short
    common one)."""
    grown: dict[tuple[str, int], int] = defaultdict(int)  # per line: instructions run more
    ran: dict[tuple[str, int], int] = defaultdict(int)  # per line: instructions that ran more
    for key, n in run.items():
        more = n - base.get(key, 0)
        if more > 0:
            grown[key[0], key[1] // LINE] += more
            ran[key[0], key[1] // LINE] += 1
    # each of a counted line's instructions ran ``every`` times per request
    return {key for key, n in grown.items() if n >= every * calls * ran[key]}


def per_request_lines(base: dict[tuple[str, int], int], run: dict[tuple[str, int], int],
                      calls: int, every: float) -> dict[str, int]:
    """Per object, the number of :func:`request_lines`."""
    return dict(Counter(obj for obj, _ in request_lines(base, run, calls, every)))


def footprint(case: str, calls: int, users: int, code: str | None, every: float
              ) -> tuple[set[tuple[str, int]], dict[tuple[str, int], str]]:
    """The code lines of one request of ``case`` (two callgrind runs: :func:`request_lines`),
    and the function of each line."""
    where: dict[tuple[str, int], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base, run = callgrind_pair(case, calls, users, code, Path(tmp), ("--dump-instr=yes",))
    lines = request_lines(instruction_costs(base), instruction_costs(run, where), calls, every)
    return lines, where


def functions(lines: set[tuple[str, int]], bare: set[tuple[str, int]],
              where: dict[tuple[str, int], str], top: int) -> str:
    """The ``top`` functions with the most lines of a request that the bare request does not
    run (the lines a change to the router can remove), with their object."""
    count = Counter((where.get(key, "?"), key[0].split(".")[0].rsplit("/", 1)[-1])
                    for key in lines - bare)
    return table(["function", "object", "lines"],
                 [[fn, obj, f"{n:,}"] for (fn, obj), n in count.most_common(top)])


def own(obj: str) -> bool:
    """Whether a shared object (as :func:`instruction_costs` names it) is one of the router's
    compiled extension modules."""
    return obj.startswith("modelrouter/")


def report(found: dict[str, dict[str, int]]) -> str:
    """Lines per request per case, and what each routed case adds over ``bare`` by group."""
    rows = []
    for case, lines in found.items():
        total = sum(lines.values())
        top = sorted(lines.items(), key=lambda kv: -kv[1])[:4]
        rows.append([case, f"{total:,}", f"{total * LINE / 1024:,.1f}",
                     ", ".join(f"{o} {n:,}" for o, n in top)])
    text = [table(["case", "code lines / request", "KiB", "largest objects (lines)"], rows)]
    bare = found.get("bare")
    if bare is not None:
        rows = []
        for case, lines in found.items():
            if case == "bare":
                continue
            router = sum(n for o, n in lines.items() if own(o))
            others = {o: n - bare.get(o, 0) for o, n in lines.items() if not own(o)}
            for o in bare:
                others.setdefault(o, -bare[o])
            added = router + sum(others.values())
            rows.append([case, f"{added:+,}", f"{router:,}",
                         f"{sum(n for o, n in others.items() if o.startswith('libpython')):+,}",
                         f"{sum(others.values()):+,}"])
        text += ["", "Added over bare (lines per request):", "",
                 table(["case", "added", "router's extensions", "libpython",
                        "all but the router's"], rows)]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--code", metavar="DIR")
    parser.add_argument("--functions", type=int, default=0, metavar="N",
                        help="also list, per routed case, the N functions with the most lines "
                             "the bare request does not run")
    args = parser.parse_args()
    runs = {c: footprint(c, args.calls, args.users, args.code, args.every)
            for c in args.cases.split(",") if c}
    found = {c: dict(Counter(obj for obj, _ in lines)) for c, (lines, _) in runs.items()}
    print(f"Code footprint per in-process request (valgrind --dump-instr, {args.calls:,} "
          f"requests after a warm-up, {args.users:,} users; a line counts when it runs in at "
          f"least {args.every:g} of the requests{', code: ' + args.code if args.code else ''})"
          ":\n")
    print(report(found))
    if args.functions and "bare" in runs:
        for case, (lines, where) in runs.items():
            if case != "bare":
                print(f"\n{case}: lines the bare request does not run, by function:\n")
                print(functions(lines, runs["bare"][0], where, args.functions))


if __name__ == "__main__":
    main()
