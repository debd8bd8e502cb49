"""Drive simulated experiments with a pre-period covariate through the real router (issue 16).

Each run builds a real :class:`~modelrouter.Experiment` (memory store, a counting clock), and for
every unit records its covariate with ``record_covariate`` BEFORE the unit's first exposure,
routes it with ``assign`` and records its outcome with ``record_unit``. Official looks are
recorded with ``Experiment.record_look`` and read with ``analysis.sequential()`` /
``analysis.always_valid()`` / ``analysis.compare()``: the code under test is the production
analysis path, nothing is recomputed here.

Metrics (one experiment carries all of them, so each run tests each on the same units):

- ``y``: continuous, ``y = rho x + sqrt(1 - rho^2) e + effect * treated`` with ``x, e ~ N(0, 1)``;
  covariate ``pre_y = x`` (correlation ``rho`` with the outcome within an arm).
- ``c``: binary, ``c = 1{r x' + sqrt(1 - r^2) e' > q} `` (rate ``P0`` in the control, ``q`` its
  normal quantile), ``r`` chosen so that the point-biserial correlation of ``c`` with its
  covariate ``pre_c = x'`` is ``rho``: ``r = rho sqrt(P0 (1 - P0)) / phi(q)``; a treatment adds
  ``effect`` to the latent mean. Only the 1s are recorded (a unit without a record is a 0).
- ``y_raw`` / ``c_raw`` (``raw=True``): the same values with no covariate declared, i.e. the
  unadjusted test on the same data, through the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis

P0 = 0.3  # the binary metric's control rate
ALPHA = 0.05


class Clock:
    """A counting clock: every call is one tick later (recorded-at times are ordered)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def latent_loading(rho: float, p0: float = P0) -> float:
    """The latent correlation ``r`` that gives a binary outcome of rate ``p0`` the
    point-biserial correlation ``rho`` with its normal covariate."""
    q = float(stats.norm.ppf(1.0 - p0))
    r = rho * math.sqrt(p0 * (1.0 - p0)) / float(stats.norm.pdf(q))
    assert 0.0 < r < 1.0, r
    return r


def config(max_units: int, looks: int, *, raw: bool = False,
           plan: dict[str, object] | None = None) -> RouterConfig:
    """Both metrics adjusted for their covariate (``raw``: also unadjusted copies); a
    group-sequential plan of ``looks`` looks with ``max_units`` units per group (``plan``:
    these plan fields instead of ``max_units``, e.g. ``mde``, ``sd`` and ``rho``)."""
    metrics: dict[str, object] = {
        "y": {"kind": "continuous", "covariates": ["pre_y"]},
        "c": {"kind": "binary", "covariates": ["pre_c"]}}
    if raw:
        metrics |= {"y_raw": "continuous", "c_raw": "binary"}
    return RouterConfig(metrics=metrics, primary="y", salt="cuped-sim",
                        plan={"looks": looks, "spending": "obrien-fleming",
                              **(plan or {"max_units": max_units})})


@dataclass
class Run:
    """What one simulated experiment decided, read the way a user reads it."""

    fixed: dict[str, list[bool]] = field(default_factory=dict)  # metric -> per treatment
    sequential: dict[str, bool] = field(default_factory=dict)  # a recorded look rejected
    always_valid: dict[str, bool] = field(default_factory=dict)  # p <= alpha at some look
    stop: dict[str, int] = field(default_factory=dict)  # units at the first AV rejection
    adjusted: dict[str, bool] = field(default_factory=dict)  # compare() said adjusted


def simulate(rng: np.random.Generator, run: int, *, n: int, looks: int, rho: float,
             effect: float = 0.0, variants: Sequence[str] = ("a", "b"), raw: bool = False,
             every: int | None = None, plan: dict[str, object] | None = None) -> Run:
    """One experiment of ``n`` units (metrics in the module docstring), ``effect`` in the last
    arm. The plan's maximum is ``n / len(variants)`` units per group.

    Two variants: ``looks`` official looks equally spaced in units, each recorded with
    ``record_look`` (its decision is the group-sequential decision there) and followed by a
    reading of ``always_valid()``; the last look is at the planned maximum. ``every``: one
    look recorded at ``every`` units (it freezes the horizon, hence the always-valid mixing
    variance) and ``always_valid()`` read every ``every`` units, as a user watching a
    dashboard would; ``stop`` is where it first rejects (``n`` when it never does). Three or
    more variants: no looks, the final ``compare()`` of each treatment only. ``plan``: plan
    fields replacing ``max_units`` (:func:`config`); looks are then recorded and read for
    the primary metric ``y`` only (a horizon from ``mde`` is the primary's).
    """
    k = len(variants)
    exp = Experiment({v: i for i, v in enumerate(variants)},
                     config(n // k, looks, raw=raw, plan=plan), clock=Clock())
    r_c = latent_loading(rho)
    q = float(stats.norm.ppf(1.0 - P0))
    x, e = rng.normal(size=n), rng.normal(size=n)
    xc, ec = rng.normal(size=n), rng.normal(size=n)
    step = every if every is not None else n // looks
    marks = set(range(step, n + 1, step)) if k == 2 else set()
    metrics = ("y", "c") + (("y_raw", "c_raw") if raw else ())
    out = Run()
    for m in metrics:
        out.sequential[m] = out.always_valid[m] = False
        out.stop[m] = n
    names = tuple(variants)
    s = math.sqrt(1.0 - rho * rho)
    s_c = math.sqrt(1.0 - r_c * r_c)
    for i in range(n):
        unit = f"r{run}-{i}"
        exp.record_covariate(unit, "pre_y", float(x[i]))
        exp.record_covariate(unit, "pre_c", float(xc[i]))
        treated = names.index(exp.assign(unit).variant) == k - 1
        y = rho * x[i] + s * e[i] + (effect if treated else 0.0)
        exp.record_unit(unit, "y", float(y))
        click = r_c * xc[i] + s_c * ec[i] + (effect if treated else 0.0) > q
        if click:
            exp.record_unit(unit, "c", 1.0)
        if raw:
            exp.record_unit(unit, "y_raw", float(y))
            if click:
                exp.record_unit(unit, "c_raw", 1.0)
        if i + 1 in marks:
            _look(exp, metrics if plan is None else ("y",), i + 1, out,
                  record=every is None or i + 1 == step)
    a = Analysis.from_experiment(exp)
    for m in metrics:
        res = [a.compare(m, v) for v in names[1:]]
        out.fixed[m] = [r.pvalue <= ALPHA for r in res]
        out.adjusted[m] = all(r.adjusted for r in res)
    return out


def _look(exp: Experiment, metrics: Sequence[str], units: int, out: Run, *,
          record: bool) -> None:
    """Record an official look of every metric (``record``) and read always_valid()."""
    for m in metrics:
        if record:
            look = exp.record_look(m)
            out.sequential[m] |= look.decision == "reject"
    a = Analysis.from_experiment(exp)
    for m in metrics:
        if out.always_valid[m]:
            continue  # stopped: the user does not read it again
        av = a.always_valid(m)
        if av.decision == "reject":
            out.always_valid[m] = True
            out.stop[m] = units


def rate(hits: Sequence[bool]) -> tuple[float, float]:
    """A proportion and its Monte Carlo standard error."""
    h = np.asarray(hits, dtype=float)
    p = float(h.mean())
    return p, math.sqrt(max(p * (1.0 - p), 1e-12) / h.size)
