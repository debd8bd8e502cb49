"""The sequential test as a chart: z at each recorded look (then now) against the group-sequential
boundaries of those looks (Lan & DeMets 1983 alpha spending, as the analysis computes them),
with the boundary of the looks still to come dotted, on labelled axes (x: information
fraction, y: z). Used by the Sequential section (the primary metric, every treatment) and by
the metric sections of the other metrics that have recorded looks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from modelrouter.stats import spending_boundaries
from modelrouter.web.charts import Reference, Series, xy_chart
from modelrouter.web.svg import fmt

if TYPE_CHECKING:
    from modelrouter.analysis.sequential import SequentialAnalysis
    from modelrouter.store.looks import Look

__all__ = ["planned_boundary", "sequential_chart"]


def planned_boundary(result: SequentialAnalysis) -> list[tuple[float, float]]:
    """The boundary of the looks still to come, at equal steps to information 1 (the plan's
    number of looks), from the same spending function: where z must go to stop early."""
    if result.test is None or result.plan is None:
        return []
    design = result.test.design
    rates = [float(x) for x in design.information_rates]
    remaining = result.plan.looks - len(rates)
    if remaining <= 0 or rates[-1] >= 1.0:
        return []
    future = [float(x) for x in np.linspace(rates[-1], 1.0, remaining + 1)[1:]]
    try:
        plan = result.plan
        full = spending_boundaries(rates + future, design.alpha, plan.sided, plan.spending,
                                   plan.gamma)
    except (ValueError, ArithmeticError):  # a design the solver cannot extend: leave it out
        return []
    t = [float(x) for x in full.information_rates]
    z = [float(x) for x in full.z]
    return list(zip(t[len(rates) - 1:], z[len(rates) - 1:]))


def sequential_chart(result: SequentialAnalysis, looks: Sequence[Look], color: str = "",
                     height: int = 300) -> str:
    """z at each recorded look (then now) against the boundaries of those looks; the planned
    boundary of the remaining looks dotted; the non-binding futility bounds (when the plan has
    them) grey; x is the information fraction."""
    if result.test is None:
        return ""
    design = result.test.design
    mine = [k for k in looks if k.metric == result.metric and k.variant == result.variant]
    path = [(float(k.information_rate), float(k.statistic)) for k in mine]
    if not result.recorded:
        path.append((float(result.information_rate), float(result.statistic)))
    bound = list(zip(map(float, design.information_rates), map(float, design.z)))
    series = [Series("z", path, color=color),
              Series("boundary", bound, style="boundary", color="#cf222e")]
    planned = planned_boundary(result)
    if planned:
        series.append(Series("planned boundary", planned, style="planned", color="#cf222e"))
    if design.sided == 2:
        series.append(Series("-boundary", [(x, -z) for x, z in bound], style="boundary",
                             color="#cf222e"))
        if planned:
            series.append(Series("planned -boundary", [(x, -z) for x, z in planned],
                                 style="planned", color="#cf222e"))
    futility = result.futility
    if futility is not None:  # non-binding: one-sided stop at z <= bound, two-sided |z| < bound
        rates = [float(x) for x in design.information_rates]
        pts = [(x, float(b)) for x, b in zip(rates, futility.bounds) if math.isfinite(b)]
        if pts:
            series.append(Series("futility", pts, style="boundary", color="#57606a"))
            if futility.sided == 2:
                series.append(Series("-futility", [(x, -b) for x, b in pts],
                                     style="boundary", color="#57606a"))
    sides = "two-sided" if design.sided == 2 else "one-sided"
    return xy_chart(series, title=f"{result.metric}: {result.variant} vs {result.control}, z at "
                    f"each look against the {sides} boundary (alpha {fmt(design.alpha)})",
                    x_label="information fraction (units / planned units)",
                    y_label="z statistic", references=[Reference(0.0, "0", "zero")],
                    x_include=[0.0, 1.0], x_floor=0.0, height=height)
