"""Import cost of modelrouter (what a service pays at every worker start), against starlette.

    python benchmarks/bench_import.py [--runs 15]

Each measurement is a fresh interpreter timing ``CODE`` with ``time.perf_counter`` after its
own startup (``python -X importtime`` shows where the time goes). Interleaved rounds,
medians. Targets (architecture issue): importing modelrouter and everything the middleware
needs to route takes <= 2.5x ``import starlette.applications`` and imports no scipy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CASES = {
    "import starlette.applications": "import starlette.applications",
    "import modelrouter": "import modelrouter",
    "modelrouter: what the middleware needs to route":
        "import modelrouter; modelrouter.ModelRouter; modelrouter.RouterConfig",
    "modelrouter.Analysis (loads scipy)": "import modelrouter; modelrouter.Analysis",
}


def import_us(code: str) -> tuple[int, bool]:
    """Wall time of ``code`` in a fresh interpreter (after its startup), in microseconds, and
    whether scipy was imported."""
    probe = ("import time, sys; t0 = time.perf_counter(); " + code +
             "; print(int((time.perf_counter() - t0) * 1e6), 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    us, loaded = out.stdout.split()
    return int(us), loaded == "True"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[int]] = {k: [] for k in CASES}
    scipy: dict[str, bool] = {}
    for _ in range(args.runs):
        for label, code in CASES.items():
            us, loaded = import_us(code)
            times[label].append(us)
            scipy[label] = loaded
    base = statistics.median(times["import starlette.applications"])
    print(f"Import time, {args.runs} fresh interpreters per case, interleaved (median):\n")
    print("| what | ms | ratio to starlette.applications | scipy imported |")
    print("|---|---|---|---|")
    for label in CASES:
        med = statistics.median(times[label])
        print(f"| {label} | {med / 1000:.1f} | {med / base:.2f} | {scipy[label]} |")


if __name__ == "__main__":
    main()
