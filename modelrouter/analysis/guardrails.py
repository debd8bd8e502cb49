"""Guardrails: sequentially valid non-inferiority tests of the metrics that must not get worse.

For each configured guardrail (see :mod:`modelrouter.config.guardrails`), each treatment and the
overall population (plus each value of the guardrail's ``segments`` dimensions), the change
``treatment - control`` gets an **always-valid** interval (the mSPRT confidence sequence of
:mod:`modelrouter.stats.always_valid`, normal mixture with ``tau2 = margin**2``, so its power is
centred on changes of the margin's size). Then, for a metric that must not increase by more
than ``margin``:

- ``fail``: the whole interval lies above the margin (a breach is shown);
- ``pass``: the whole interval lies below the margin (a breach is excluded);
- ``inconclusive``: otherwise (not enough data yet).

(mirrored for ``max_decrease``). Because the intervals hold uniformly over time, the guardrails
may be checked after every batch of data (the rollback monitor does) and the chance that a
guardrail whose true change is within the margin ever *fails* stays below ``guardrail_alpha``.

Absolute margins compare the difference of means (per unit, or per event with the delta method
for ``aggregate="mean"`` metrics such as ``latency_ms``). Relative margins work on the log
ratio ``log(mean_t / mean_c)`` with delta-method variance ``(se_t/mean_t)^2 + (se_c/mean_c)^2``
and the margin ``log(1 + m)`` (``log(1 - m)`` for decreases); the interval is reported back on
the relative scale ``exp(.) - 1``. The log ratio is used instead of ``mean_t/mean_c - 1``
because its sampling distribution is closer to normal and its variance does not depend on the
unknown ratio itself.

Quantile guardrails (``quantile=0.95``: the p95 of ``latency_ms``) take the estimate and its
variance from :mod:`modelrouter.analysis.quantile_guardrails` (log ratio of the two quantiles,
variances from Woodruff intervals) and are decided by the same always-valid rule
(:func:`decide`, in :func:`quantile_guardrail_results`). On adaptively routed traffic (bandit
decisions, or a switch between A/B and bandit) they are refused: ``inconclusive`` with the
reason, never a biased number (see :mod:`modelrouter.analysis.quantile_guardrails`).

**Events per arm.** As in ``analysis.always_valid()`` (:mod:`modelrouter.analysis.always_valid`,
issue 12), a guardrail on a continuous metric *passes*, and its interval is shown, only once
each arm has :data:`~modelrouter.stats.always_valid.MIN_EVENTS` (100) events
(:func:`guardrail_events`: units with a non-zero value, at request level the recorded values;
within the segment checked): before that the variance of a skewed or heavy-tailed metric is
typically under-estimated. Until then the guardrail is ``inconclusive`` and says how many events
the smaller arm has (its ``estimate`` is shown, ``low``/``high`` are NaN). **A breach is acted
on before the gate** (``fail``, noted in the reason): a rollback must not wait for the control
to accumulate 100 events of a rare bad outcome. Binary
metrics (errors) are not gated: their variance is a function of the rate, with no tail to miss,
and an error guardrail whose arms have no errors at all must still be able to pass. Quantile
guardrails count requests in the latency histogram and wait for 100 per arm. Measured false
fails with the gate: docs/statistics.md, "Guardrails".

**CUPED.** On A/B traffic a guardrail whose metric declares covariates is decided on the
covariate-adjusted estimate (absolute margins: the adjusted difference and its standard error;
relative margins: the log ratio of the adjusted means, delta method), as ``compare()`` reports
it, whenever units have usable pre-exposure values; ``GuardrailResult.adjusted`` says which
(see :mod:`modelrouter.analysis.adjusted_guardrails`).

Per-segment checks are Bonferroni-corrected across the segment values tested for that guardrail
(each at ``alpha / m``); segments with fewer than ``min_segment_units`` units in either arm are
reported as ``inconclusive`` with the reason. Caveats: the validity is asymptotic (estimated
variances); the per-look interval is used, not the running intersection, which is slightly
conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from modelrouter.analysis.adjusted_guardrails import adjusted_scale
from modelrouter.analysis.always_valid import arm_events
from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrail_result import GuardrailResult, Status
from modelrouter.analysis.quantile_guardrails import adaptive_refusal, quantile_ratio
from modelrouter.config.guardrails import GuardrailSpec
from modelrouter.exceptions import AnalysisError
from modelrouter.stats.always_valid import MIN_EVENTS, always_valid_test
from modelrouter.stats.moments import Moments

__all__ = ["GuardrailResult", "Status", "check_guardrail", "decide", "guardrail_events",
           "guardrail_results", "quantile_guardrail_results"]

def _relative(log_ratio: float) -> float:
    """A log ratio as a relative change, ``exp(x) - 1``; ``inf`` beyond the float range."""
    return math.expm1(log_ratio) if log_ratio < 709.0 else math.inf


def _fmt(x: float, relative: bool) -> str:
    return f"{x:+.2%}" if relative else f"{x:+.4g}"


def _scale(spec: GuardrailSpec, mc: Moments, mt: Moments, ratio: bool
           ) -> tuple[float, float, float, float, float] | str:
    """(estimate on the test scale, its variance, breach threshold, mean_c, mean_t) or why not."""
    if ratio:
        mean_c, mean_t = mc.ratio, mt.ratio
        var_c, var_t = mc.ratio_var, mt.ratio_var
    else:
        mean_c, mean_t = mc.mean_x, mt.mean_x
        var_c, var_t = mc.var_x / mc.n, mt.var_x / mt.n
    return _scale_means(spec, mean_c, var_c, mean_t, var_t)


def _scale_means(spec: GuardrailSpec, mean_c: float, var_c: float, mean_t: float, var_t: float
                 ) -> tuple[float, float, float, float, float] | str:
    """:func:`_scale` from each arm's mean and the variance of that mean."""
    if not all(math.isfinite(v) for v in (mean_c, mean_t, var_c, var_t)):
        return "no events recorded yet in one arm"
    sign = 1.0 if spec.direction == "increase" else -1.0
    if not spec.relative:
        return mean_t - mean_c, var_c + var_t, sign * spec.margin, mean_c, mean_t
    if mean_c <= 0 or mean_t <= 0:
        return "a relative margin needs positive means in both arms"
    if spec.direction == "decrease" and spec.margin >= 1:
        return "a relative decrease margin must be below 100%"
    # a difference of logs and squared coefficients of variation: no ratio or square of a mean
    # that could overflow or underflow to 0 (var is inf when beyond the float range: decide()
    # then reports the estimate as not bounded yet)
    est = math.log(mean_t) - math.log(mean_c)
    cv_t, cv_c = math.sqrt(var_t) / mean_t, math.sqrt(var_c) / mean_c
    var = cv_t * cv_t + cv_c * cv_c
    return est, var, math.log1p(sign * spec.margin), mean_c, mean_t


def guardrail_events(data: AnalysisData, metric: str, variant: str,
                     segment: Mapping[str, str] | None, mc: Moments, mt: Moments
                     ) -> int | None:
    """The smaller of the control's and ``variant``'s events within ``segment`` (None:
    everyone), counted as :func:`~modelrouter.analysis.always_valid.arm_events` counts them
    (units with a non-zero value; at request level the recorded values; ``mc``/``mt``: the two
    arms' moments in the segment); None for a binary metric, which is not gated (see the module
    docstring)."""
    if data.spec(metric).kind == "binary":
        return None
    units = data.snapshot.units
    if units is None:
        return min(int(round(m.mean_y * m.n)) for m in (mc, mt))
    mask = data.unit_mask(segment)
    variant_of = units.variant if mask is None else units.variant[mask]
    values = units.x[metric] if mask is None else units.x[metric][mask]
    nonzero = np.bincount(variant_of, weights=(values != 0).astype(np.float64),
                          minlength=len(data.variants))
    return int(min(nonzero[data.variant_index(data.control)],
                   nonzero[data.variant_index(variant)]))


def check_guardrail(spec: GuardrailSpec, mc: Moments, mt: Moments, *, ratio: bool,
                    alpha: float, variant: str, segment: dict[str, str] | None = None,
                    min_units: int = 2, events: int | None = None,
                    adjusted: tuple[float, float, float] | None = None) -> GuardrailResult:
    """Decide one guardrail from the control's and the treatment's moments; ``events`` (the
    smaller arm's, :func:`guardrail_events`) gates the interval (None: no gate); ``adjusted``
    (estimate, variance, threshold: analysis/adjusted_guardrails.py) replaces the moments'."""
    if min(mc.n, mt.n) < max(min_units, 2):
        return decide(spec, f"too few units ({mc.n} control, {mt.n} {variant}; need "
                      f"{max(min_units, 2)} each)", alpha=alpha, variant=variant,
                      segment=segment, units=(mc.n, mt.n))
    scaled = _scale(spec, mc, mt, ratio) if adjusted is None else (*adjusted, 0.0, 0.0)
    if isinstance(scaled, str):
        return decide(spec, scaled, alpha=alpha, variant=variant, segment=segment,
                      units=(mc.n, mt.n))
    est, var, threshold, _c, _t = scaled
    if var <= 0 and not spec.relative:
        # e.g. no error at all in either arm: as uncertain as one event per arm would be
        var = 1.0 / mc.n**2 + 1.0 / mt.n**2
    return decide(spec, (est, var, threshold), alpha=alpha, variant=variant, segment=segment,
                  units=(mc.n, mt.n), events=events)


def decide(spec: GuardrailSpec, scaled: tuple[float, float, float] | str, *, alpha: float,
           variant: str, segment: dict[str, str] | None, units: tuple[int, int],
           events: int | None = None, min_events: int = MIN_EVENTS, counted: str = "events"
           ) -> GuardrailResult:
    """The always-valid decision from ``(estimate, variance, breach threshold)`` on the test
    scale (the log ratio for relative margins), or ``inconclusive`` with the reason given.
    With ``events`` (the smaller arm's) below ``min_events`` no interval is computed yet (see
    the module docstring); ``counted`` names what ``events`` counts in the reason."""
    def result(status: Status, est: float, lo: float, hi: float, reason: str
               ) -> GuardrailResult:
        return GuardrailResult(spec.metric, variant, segment, status, spec.direction,
                               spec.margin, spec.relative, est, lo, hi, alpha, units[0],
                               units[1], reason, spec.quantile)

    where = "" if not segment else " in " + ", ".join(f"{k}={v}" for k, v in segment.items())
    name = spec.key
    nan = math.nan
    if isinstance(scaled, str):
        return result("inconclusive", nan, nan, nan, f"{name}{where}: {scaled}")
    est, var, threshold = scaled
    waiting = (None if events is None or events >= min_events else
               f"{name}{where}: the smaller arm has {events:,} {counted}; a pass and the "
               f"always-valid interval wait for {min_events} per arm (before that the variance "
               "of a skewed or heavy-tailed metric is typically under-estimated)")
    if waiting is not None and not (math.isfinite(est) and math.isfinite(var) and var > 0):
        return result("inconclusive", nan, nan, nan, waiting)
    if not (math.isfinite(est) and math.isfinite(var)):
        return result("inconclusive", nan, nan, nan,
                      f"{name}{where}: too few observations to bound the estimate yet")
    if var <= 0:
        return result("inconclusive", nan, nan, nan, f"{name}{where}: no variation observed yet")
    # the mixing variance only tunes when the test is most powerful (any tau2 > 0 is valid):
    # kept inside the float range for margins whose square is not
    tau2 = min(max(threshold * threshold, 1e-300), 1e300)
    ci = always_valid_test(est, var, tau2=tau2).confidence_interval(1.0 - alpha)
    lo, hi = ci.low, ci.high
    back = _relative if spec.relative else (lambda v: v)
    e, low, high = back(est), back(lo), back(hi)
    bound = _fmt(back(threshold), spec.relative)
    shown = (f"{variant} vs control {_fmt(e, spec.relative)}, always-valid "
             f"{1 - alpha:.1%} interval [{_fmt(low, spec.relative)}, "
             f"{_fmt(high, spec.relative)}]")
    breach = lo > threshold if spec.direction == "increase" else hi < threshold
    safe = hi < threshold if spec.direction == "increase" else lo > threshold
    if breach:
        early = ("" if waiting is None else
                 f" (before {min_events} {counted} per arm: a breach is acted on at once, a "
                 f"pass would wait; the smaller arm has {events:,})")
        return result("fail", e, low, high, f"{name}{where}: {shown} lies entirely "
                      f"beyond the margin {bound}: the guardrail is breached{early}")
    if waiting is not None:  # the point estimate, but no interval yet
        return result("inconclusive", e, nan, nan, waiting)
    if safe:
        return result("pass", e, low, high, f"{name}{where}: {shown} excludes a "
                      f"change beyond {bound}")
    return result("inconclusive", e, low, high, f"{name}{where}: {shown} still "
                  f"contains the margin {bound}: not enough data to decide")


def guardrail_results(data: AnalysisData) -> tuple[GuardrailResult, ...]:
    """Every configured guardrail, for every treatment, overall and per declared segment."""
    config = data.config
    alpha = config.guardrail_alpha
    c_idx = data.variants.index(data.control)
    out: list[GuardrailResult] = []
    specs: Mapping[str, GuardrailSpec] = config.guardrails or {}
    for spec in specs.values():
        if spec.quantile is not None:
            out += quantile_guardrail_results(data, spec, alpha)
            continue
        if data.adaptive:  # bandit traffic: inverse-propensity means, never naive ones
            out += _adaptive_guardrails(data, spec, alpha)
            continue
        ratio = data.snapshot.metrics[spec.metric].is_ratio
        overall = data.moments(spec.metric)
        families: list[tuple[dict[str, str] | None, list[Moments], float, int]] = [
            (None, overall, alpha, 2)]
        for dim in spec.segments:
            segs = data.present_segments([dim])
            per = [(seg, data.moments(spec.metric, seg)) for seg in segs]
            big = [p for p in per if min(p[1][i].n for i in range(len(p[1]))) >=
                   config.min_segment_units]
            m = max(len(big), 1)
            families += [(seg, mom, alpha / m, config.min_segment_units) for seg, mom in per]
        for t_idx, variant in enumerate(data.variants):
            if variant not in data.treatments:  # the control, or never served
                continue
            for seg, mom, a, min_units in families:
                events = guardrail_events(data, spec.metric, variant, seg, mom[c_idx],
                                          mom[t_idx])
                adj = adjusted_scale(data, spec, variant, seg)  # CUPED, when it applies
                res = check_guardrail(spec, mom[c_idx], mom[t_idx], ratio=ratio, alpha=a,
                                      variant=variant, segment=seg, min_units=min_units,
                                      events=events,
                                      adjusted=None if adj is None else adj.scaled)
                out.append(res if adj is None else adj.mark(res))
    return tuple(out)


def quantile_guardrail_results(data: AnalysisData, spec: GuardrailSpec, alpha: float
                               ) -> list[GuardrailResult]:
    """One quantile guardrail for every treatment (overall only), from the quantile ratio of
    :func:`~modelrouter.analysis.quantile_guardrails.quantile_ratio`; ``inconclusive`` with the
    reason on adaptively routed traffic (see
    :func:`~modelrouter.analysis.quantile_guardrails.adaptive_refusal`) and until each arm has
    :data:`~modelrouter.stats.always_valid.MIN_EVENTS` requests in the latency histogram."""
    assert spec.quantile is not None
    moments = data.moments(spec.metric)
    c_idx = data.variants.index(data.control)
    refused = adaptive_refusal(data, spec.quantile)
    hist = data.snapshot.latency
    out = []
    sign = 1.0 if spec.direction == "increase" else -1.0
    for t_idx, variant in enumerate(data.variants):
        if variant not in data.treatments:  # the control, or never served
            continue
        units = (moments[c_idx].n, moments[t_idx].n)
        scaled: tuple[float, float, float] | str
        r = quantile_ratio(data, variant, spec.quantile) if min(units) >= 2 else None
        if refused is not None:
            scaled = refused
        elif r is None:
            scaled = f"too few units ({units[0]} control, {units[1]} {variant}; need 2 each)"
        elif isinstance(r, str):
            scaled = r
        elif spec.relative and spec.direction == "decrease" and spec.margin >= 1:
            scaled = "a relative decrease margin must be below 100%"
        elif spec.relative:
            scaled = (r.log_ratio, r.variance, math.log1p(sign * spec.margin))
        else:
            ec, et = r.control_estimate, r.treatment_estimate
            scaled = (et.estimate - ec.estimate, ec.se**2 + et.se**2, sign * spec.margin)
        requests = (None if hist is None else
                    int(min(hist.counts[c_idx].sum(), hist.counts[t_idx].sum())))
        out.append(decide(spec, scaled, alpha=alpha, variant=variant, segment=None,
                          units=units, events=requests,
                          counted="requests in the latency histogram"))
    return out


def _adaptive_guardrails(data: AnalysisData, spec: GuardrailSpec, alpha: float
                         ) -> list[GuardrailResult]:
    """Guardrails on adaptively allocated traffic: each arm's Hajek (IPW) mean and its
    variance from ``compare`` (:func:`~modelrouter.analysis.adaptive.adaptive_compare`, or the
    phase-stratified estimate after a mode switch), the same always-valid decision and event
    gate (:func:`~modelrouter.analysis.always_valid.arm_events` overall,
    :func:`guardrail_events` in a segment); the two arms' estimates are treated as
    independent, as the compare does."""
    out: list[GuardrailResult] = []
    families: list[tuple[dict[str, str] | None, float]] = [(None, alpha)]
    for dim in spec.segments:
        segs = data.present_segments([dim])
        families += [(seg, alpha / max(len(segs), 1)) for seg in segs]
    for variant in data.treatments:
        for seg, a in families:
            try:
                cmp = compare(data, spec.metric, variant, segment=seg)
            except AnalysisError as exc:
                out.append(decide(spec, str(exc), alpha=a, variant=variant, segment=seg,
                                  units=(0, 0)))
                continue
            c, t = cmp.control, cmp.treatment
            scaled = _scale_means(spec, c.mean, c.std_err**2, t.mean, t.std_err**2)
            if not isinstance(scaled, str) and not spec.relative:  # the compare's own variance
                scaled = (cmp.difference, cmp.std_err**2, *scaled[2:])
            events: int | None
            if data.spec(spec.metric).kind == "binary":
                events = None  # not gated: see the module docstring
            elif seg is None:
                events = arm_events(data, spec.metric, variant, cmp)
            else:
                mom = data.moments(spec.metric, seg)
                events = guardrail_events(data, spec.metric, variant, seg,
                                          mom[data.variant_index(data.control)],
                                          mom[data.variant_index(variant)])
            out.append(decide(spec, scaled if isinstance(scaled, str) else scaled[:3], alpha=a,
                              variant=variant, segment=seg, units=(c.units, t.units),
                              events=events))
    return out
