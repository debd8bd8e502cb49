"""Command line: ``modelrouter demo | plan | status | export`` (also ``python -m modelrouter``).

``status`` and ``export`` (a running service or a snapshot file) live in
:mod:`modelrouter.service_cli`, with their own exit statuses.

Bad input ends with a one-line ``modelrouter: error: ...`` on stderr and exit status 2, never a
traceback: the numbers go through the same validated helpers as the Python API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from modelrouter.service_cli import add_commands, commands, run

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """``modelrouter demo``: the end-to-end experiment of :mod:`modelrouter.demo`.

    The report goes to stdout; the progress bar to stderr, and only when stderr is a terminal,
    so ``modelrouter demo > report.txt`` writes the report alone."""
    from modelrouter.demo import run_demo

    run_demo(users=args.users, seed=args.seed, progress=not args.quiet and sys.stderr.isatty(),
             progress_stream=sys.stderr)
    return 0


def _plan(args: argparse.Namespace) -> int:
    """``modelrouter plan``: units per group to detect ``--mde`` on a ``--baseline`` rate, or
    (with ``--sd``) a difference ``--mde`` in means; ``--looks`` adds a group-sequential design's
    inflation (the test ``RouterConfig(plan=...)`` runs). With ``--ratio`` (per-unit moments
    ``MEAN_X,MEAN_Y,VAR_X,VAR_Y,COV_XY``) ``--mde`` is an absolute change of a ratio metric."""
    from modelrouter.stats import (
        sample_size_means,
        sample_size_proportions,
        sample_size_ratio,
        spending_boundaries,
    )

    design = None
    if args.looks > 1:
        rates = [(k + 1) / args.looks for k in range(args.looks)]
        design = spending_boundaries(rates, alpha=args.alpha, sided=args.sided,
                                     spending=args.spending)
    if args.ratio is not None:
        mx, my, vx, vy, cxy = args.ratio
        result = sample_size_ratio(args.mde, mx, my, vx, vy, cxy, alpha=args.alpha,
                                   power=args.power, ratio=args.allocation_ratio,
                                   sided=args.sided, sequential=design)
        what = f"ratio metric {mx / my:.4g} (per-unit mean_x {mx:.4g}, mean_y {my:.4g}), " \
               f"minimum detectable effect {args.mde:+.4g} (absolute)"
    elif args.sd is None:
        if args.rho is not None or args.variance_reduction is not None:
            args.null_variance = "unpooled"  # the adjusted test is Welch's t (power_adjusted)
        result = sample_size_proportions(args.baseline, args.baseline + args.mde,
                                         alpha=args.alpha, power=args.power,
                                         ratio=args.allocation_ratio, sided=args.sided,
                                         sequential=design, null_variance=args.null_variance)
        what = f"baseline rate {args.baseline:.4g}, minimum detectable effect {args.mde:+.4g} " \
               f"(absolute; {args.null_variance} variance under H0)"
    else:
        result = sample_size_means(args.mde, args.sd, alpha=args.alpha, power=args.power,
                                   ratio=args.allocation_ratio, sided=args.sided,
                                   sequential=design)
        what = f"difference in means {args.mde:+.4g} with per-unit sd {args.sd:.4g}"
    print(f"{what}, alpha {args.alpha:g} ({args.sided}-sided), power {args.power:g}")
    if design is not None:
        print(f"group-sequential: {args.looks} equally spaced looks, {args.spending} spending, "
              f"inflation factor {result.inflation_factor:.4f}")
    n, n_t = result.n_per_group, result.n_treatment
    groups = f"control {n:,}, treatment {n_t:,}" if n_t != n else f"units per group: {n:,}"
    print(f"{groups}   total (2 groups): {result.n_total:,}")
    total = result.n_total
    if args.rho is not None or args.variance_reduction is not None:
        from modelrouter.stats.power_adjusted import adjust_sample_size

        adj = adjust_sample_size(result, rho=args.rho, variance_reduction=args.variance_reduction,
                                 ratio=args.allocation_ratio)
        total = adj.n_total
        print(f"with covariate adjustment (CUPED, variance -{adj.variance_reduction:.1%}): "
              f"control {adj.n_per_group:,}, treatment {adj.n_treatment:,}   total "
              f"{adj.n_total:,}   saved {adj.units_saved:,} units")
    if args.per_day:
        print(f"duration at {args.per_day:,.0f} units/day: "
              f"{total / args.per_day:.1f} days")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelrouter",
                                     description="Online experiments between model predictors.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an end-to-end experiment on scikit-learn models")
    demo.add_argument("--users", type=int, default=4000, help="simulated users (default 4000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    plan = sub.add_parser("plan", help="units needed to detect a change (rate or mean)",
                          description="Units needed per group. A conversion rate: --baseline "
                          "and --mde (absolute change). A mean: --mde (difference) and --sd "
                          "(per-unit standard deviation; --baseline is then not needed). A "
                          "ratio metric sum(x)/sum(y): --mde (absolute change of the ratio) and "
                          "--ratio with the per-unit moments of x (sum of values) and y (events).")
    plan.add_argument("--baseline", type=float, default=None, help="control rate, e.g. 0.05")
    plan.add_argument("--mde", type=float, required=True,
                      help="absolute change to detect, e.g. 0.005")
    plan.add_argument("--sd", type=float, default=None,
                      help="per-unit standard deviation: plan for a difference in means")
    plan.add_argument("--ratio", default=None, metavar="MEAN_X,MEAN_Y,VAR_X,VAR_Y,COV_XY",
                      help="per-unit moments of a ratio metric sum(x)/sum(y): plan for a "
                      "change --mde of the ratio (linearised variance, delta method)")
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--power", type=float, default=0.8)
    plan.add_argument("--sided", type=int, choices=(1, 2), default=2)
    plan.add_argument("--allocation-ratio", type=float, default=1.0, dest="allocation_ratio",
                      help="treatment units per control unit (default 1)")
    plan.add_argument("--looks", type=int, default=1,
                      help="equally spaced looks of a group-sequential test (default 1: fixed)")
    plan.add_argument("--spending", default="obrien-fleming",
                      choices=("obrien-fleming", "pocock"), help="alpha spending with --looks")
    plan.add_argument("--null-variance", default="pooled", choices=("pooled", "unpooled"),
                      dest="null_variance",
                      help="rates: variance under H0 of the planned z-test (default pooled, the "
                           "two-proportion z-test compare() runs; unpooled: a Wald test)")
    plan.add_argument("--per-day", type=float, default=None, help="units per day")
    plan.add_argument("--rho", type=float, default=None,
                      help="expected correlation of a pre-exposure covariate with the outcome: "
                           "also plan the CUPED-adjusted test (n times 1 - rho^2)")
    plan.add_argument("--variance-reduction", type=float, default=None,
                      dest="variance_reduction", help="instead of --rho: expected share of "
                      "variance removed by the adjustment, in [0, 1)")
    plan.set_defaults(func=_plan)
    add_commands(sub)
    return parser


def _ratio_moments(text: str, parser: argparse.ArgumentParser) -> tuple[float, ...]:
    """``--ratio MEAN_X,MEAN_Y,VAR_X,VAR_Y,COV_XY`` as five floats (else a one-line error)."""
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(parts) != 5 or len(values) != 5:
        parser.error(f"plan: --ratio ({text!r}) must be five numbers "
                     "MEAN_X,MEAN_Y,VAR_X,VAR_Y,COV_XY")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelrouter`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "plan":
        if args.ratio is not None:
            if args.sd is not None or args.baseline is not None:
                parser.error("plan: --ratio plans a ratio metric; give it without --baseline "
                             "and --sd")
            args.ratio = _ratio_moments(args.ratio, parser)
        elif args.sd is None and args.baseline is None:
            parser.error("plan: give --baseline (a rate), --sd (a mean) or --ratio (a ratio "
                         "metric)")
        if args.looks < 1:
            parser.error(f"plan: --looks ({args.looks}) must be at least 1")
        if args.rho is not None or args.variance_reduction is not None:
            from modelrouter.stats.power_adjusted import expected_variance_reduction
            try:  # refused before anything is printed
                expected_variance_reduction(args.rho, args.variance_reduction)
            except ValueError as exc:
                parser.error(f"plan: {exc}")
    command: Callable[[argparse.Namespace], int] = args.func
    if args.command in commands():
        return run(command, args)
    try:
        return command(args)
    except ValueError as exc:  # a value the helpers refuse, with the reason (ConfigError too)
        parser.error(f"{args.command}: {exc}")
    return 2  # pragma: no cover - parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
