"""Command line: ``modelrouter demo | plan``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """``modelrouter demo``: the end-to-end experiment of :mod:`modelrouter.demo`."""
    from modelrouter.demo import run_demo

    run_demo(users=args.users, seed=args.seed, progress=not args.quiet)
    return 0


def _plan(args: argparse.Namespace) -> int:
    """``modelrouter plan``: units per group to detect ``--mde`` on a ``--baseline`` rate."""
    from modelrouter.stats import sample_size_proportions

    result = sample_size_proportions(args.baseline, args.baseline + args.mde, alpha=args.alpha,
                                     power=args.power)
    n = int(result.n_per_group)
    print(f"baseline {args.baseline:.4g}, minimum detectable effect {args.mde:+.4g} "
          f"(absolute), alpha {args.alpha:g}, power {args.power:g}")
    print(f"units per group: {n:,}   total (2 groups): {2 * n:,}")
    if args.per_day:
        print(f"duration at {args.per_day:,.0f} units/day: {2 * n / args.per_day:.1f} days")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelrouter`` command."""
    parser = argparse.ArgumentParser(prog="modelrouter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an end-to-end experiment on scikit-learn models")
    demo.add_argument("--users", type=int, default=4000, help="simulated users (default 4000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    plan = sub.add_parser("plan", help="units needed to detect a change in a conversion rate")
    plan.add_argument("--baseline", type=float, required=True, help="control rate, e.g. 0.05")
    plan.add_argument("--mde", type=float, required=True, help="absolute change, e.g. 0.005")
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--power", type=float, default=0.8)
    plan.add_argument("--per-day", type=float, default=None, help="units per day")
    plan.set_defaults(func=_plan)
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
