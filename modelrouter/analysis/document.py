"""``Analysis.to_dict()``: everything the report holds, as one versioned JSON document.

The document validates against the JSON Schema shipped in the package
(``modelrouter/analysis/schema/analysis.v1.json``, see :mod:`modelrouter.analysis.schema`);
``schema_version`` names it ("1.<minor>": a minor version only adds keys). ``GET
{prefix}/stats`` answers it. Top-level keys:

- the original ones (kept for code that reads them): ``variants``, ``control``,
  ``data_source``, ``units``, ``requests`` and ``metrics`` (per-metric ``summary`` and
  ``comparisons``, or ``{"error": ...}`` for a metric that cannot be compared yet);
- ``experiment``, ``mode`` (of the latest epoch), ``level``, ``primary``;
- ``verdict`` (decision, reasons, with 3+ variants ``per_variant``), ``srm``,
  ``sequential`` and ``always_valid`` (per treatment, on the primary metric), ``segments``
  (per dimension, per treatment, on the primary), ``guardrails``, ``bandit``,
  ``phases`` (the epochs with their modes and weights; per-phase estimates after a mode
  switch), ``rollback_events`` and ``notes``.

Every part that can fail to be computed is a **part**: an object with ``status``:

- ``"ok"``: the result's own keys follow;
- ``"not_applicable"``: the config does not ask for it (no primary metric, no plan, no bandit,
  no guardrail, no mode switch); ``reason`` says which setting;
- ``"not_enough_data"``: the analysis refused (``AnalysisError``: before any data, too few
  units, decisions or events in an arm, ...); ``reason`` is its message;
- ``"error"``: anything else went wrong (a bug: the tests require that it never appears);
  ``reason`` names it. ``to_dict()`` itself never raises, so ``/stats`` always answers.

NaN and +-inf are JSON ``null`` everywhere (:func:`~modelrouter.analysis.jsondata.plain`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from modelrouter.analysis.always_valid import always_valid_analysis
from modelrouter.analysis.bandit import bandit_result
from modelrouter.analysis.compare import metrics_dict
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import guardrail_results
from modelrouter.analysis.phases import phase_estimates
from modelrouter.analysis.segments import segment_analysis
from modelrouter.analysis.sequential import SequentialAnalysis, sequential_analysis
from modelrouter.analysis.srm import SampleRatioCheck, check_sample_ratio
from modelrouter.analysis.verdict import Verdict, decide
from modelrouter.config.plan import ExperimentPlan
from modelrouter.exceptions import AnalysisError

__all__ = ["SCHEMA_VERSION", "analysis_document", "not_applicable", "part"]

SCHEMA_VERSION = "1.0"
"""The version of the document (and of the shipped schema ``analysis.v1.json``)."""


def not_applicable(reason: str) -> dict[str, Any]:
    """A part the config does not ask for."""
    return {"status": "not_applicable", "reason": reason}


def part(compute: Callable[[], Any]) -> dict[str, Any]:
    """``compute()``'s ``to_dict()`` with ``status: "ok"``, or the status that says why
    there is none (see the module docstring); never raises."""
    try:
        result = compute()
    except (AnalysisError, ValueError) as exc:
        return {"status": "not_enough_data", "reason": str(exc)}
    except Exception as exc:  # the document must always answer; tests forbid this status
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    body = result if isinstance(result, dict) else result.to_dict()
    return {"status": "ok", **body}


def _verdict(data: AnalysisData) -> tuple[dict[str, Any], Verdict | None]:
    """The verdict part and the verdict (None when it could not be decided)."""
    box: list[Verdict] = []

    def compute() -> dict[str, Any]:
        v = decide(data)
        box.append(v)
        out = v.to_dict()
        out["summary"] = v.summary()
        if v.srm is None:  # no check ran: no p-value to report (not "p = 1")
            for one in (out, *out["per_variant"].values()):
                one["srm_pvalue"] = None
        return out

    return part(compute), (box[0] if box else None)


def _srm(data: AnalysisData, verdict: Verdict | None) -> dict[str, Any]:
    """The sample-ratio check the verdict used (with its words)."""
    if verdict is None:
        return part(lambda: _explained(check_sample_ratio(data)))
    srm: SampleRatioCheck | None = verdict.srm
    if srm is None:
        return {"status": "not_enough_data",
                "reason": "no units (or bandit decisions) yet: the sample ratio cannot be "
                          "checked"}
    return part(lambda: {**srm.to_dict(), "explanation": srm.explain()})


def _per_treatment(data: AnalysisData, treatments: Sequence[str], verdict: Verdict | None,
                   ) -> dict[str, Any]:
    """Sequential and always-valid parts per treatment, on the primary metric."""
    config = data.config
    primary = config.primary
    seq: dict[str, Any] = {}
    av: dict[str, Any] = {}
    k = max(len(treatments), 1)
    plan = config.plan if isinstance(config.plan, ExperimentPlan) else None
    for t in treatments:
        if primary is None:
            seq[t] = av[t] = not_applicable("no primary metric: set RouterConfig(primary=...)")
            continue
        if plan is None:
            seq[t] = av[t] = not_applicable("no plan: set RouterConfig(plan=...)")
            continue
        decided = verdict.per_variant.get(t, verdict) if verdict is not None else None
        held = decided.sequential if decided is not None and decided.variant == t else None
        alpha = None if k == 1 else float(plan.alpha) / k
        if isinstance(held, SequentialAnalysis):  # the very test the verdict decided on
            seq[t] = part(partial(_explained, held))
        else:
            seq[t] = part(partial(_call_explained, sequential_analysis, data, primary, t,
                                  alpha=alpha))
        av[t] = part(partial(_call_explained, always_valid_analysis, data, primary, t,
                             alpha=alpha))
    return {"sequential": seq, "always_valid": av}


def _explained(result: Any) -> dict[str, Any]:
    """A result's ``to_dict()`` with its ``explain()`` text."""
    return {**result.to_dict(), "explanation": result.explain()}


def _call_explained(question: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``question(*args, **kwargs)`` as :func:`_explained` data."""
    return _explained(question(*args, **kwargs))


def _segments(data: AnalysisData, treatments: Sequence[str]) -> dict[str, Any]:
    """Per dimension, per treatment: the primary metric's segment analysis."""
    primary = data.config.primary
    out: dict[str, Any] = {}
    for dim in data.snapshot.segment_dims:
        out[dim] = {t: not_applicable("no primary metric: set RouterConfig(primary=...)")
                    if primary is None else
                    part(partial(segment_analysis, data, primary, dim, t))
                    for t in treatments}
    return out


def _guardrails(data: AnalysisData) -> dict[str, Any]:
    """Every guardrail check, with counts by status."""
    if not data.config.guardrails:
        return not_applicable("no guardrail is configured: RouterConfig(guardrails=...)")

    def compute() -> dict[str, Any]:
        results = [g.to_dict() for g in guardrail_results(data)]
        counts = {s: sum(r["status"] == s for r in results)
                  for s in ("pass", "fail", "inconclusive")}
        return {"results": results, "counts": counts}

    return part(compute)


def _bandit(data: AnalysisData) -> dict[str, Any]:
    """The bandit's weights, P(best), posterior means and epoch."""
    if data.bandit_status is None:
        return not_applicable("this experiment has no bandit (RouterConfig(reward=...), "
                              "mode='bandit')")
    return part(lambda: bandit_result(data))


def _phase_estimates(data: AnalysisData, metric: str, variant: str) -> dict[str, Any]:
    """One treatment's per-phase estimates on ``metric``."""
    return {"metric": metric,
            "estimates": [p.to_dict() for p in phase_estimates(data, metric, variant)]}


def _phases(data: AnalysisData, treatments: Sequence[str]) -> dict[str, Any]:
    """The epochs (mode, weights, start) and, after a switch between A/B and bandit mode
    with data on both sides, each treatment's per-phase estimates on the primary metric."""
    snap = data.snapshot
    epochs = [{"epoch": e.epoch, "mode": e.mode, "weights": dict(zip(data.variants, e.weights)),
               "started_at": e.started_at} for e in snap.epochs]
    switched = False
    try:
        switched = data.switched
    except Exception:  # never raise from the document
        switched = False
    primary = data.config.primary
    estimates: dict[str, Any] = {}
    for t in treatments:
        if not switched:
            estimates[t] = not_applicable("the experiment has not switched between A/B and "
                                          "bandit mode with data on both sides")
        elif primary is None:
            estimates[t] = not_applicable("no primary metric: set RouterConfig(primary=...)")
        else:
            estimates[t] = part(partial(_phase_estimates, data, primary, t))
    return {"switched": switched, "modes": sorted({e.mode for e in snap.epochs}),
            "epochs": epochs, "estimates": estimates}


def analysis_document(data: AnalysisData, metrics: Sequence[str] | None = None
                      ) -> dict[str, Any]:
    """The whole analysis of ``data`` as plain data (see the module docstring); ``metrics``
    restricts the per-metric ``metrics`` section (default: every metric). Never raises for
    any state of the experiment (an undeclared metric in ``metrics`` is UnknownMetricError)."""
    snap = data.snapshot
    for metric in metrics or ():
        data.spec(metric)  # an unknown metric is the caller's mistake: UnknownMetricError
    try:
        out: dict[str, Any] = metrics_dict(data, metrics)
    except Exception as exc:  # never raise for a state of the experiment
        out = {"variants": list(data.variants), "control": data.control,
               "data_source": snap.source, "units": snap.n_units,
               "requests": dict(zip(data.variants, snap.requests.tolist())),
               "metrics": {}, "metrics_error": f"{type(exc).__name__}: {exc}"}
    treatments = list(data.treatments)
    verdict_part, verdict = _verdict(data)
    out.update({
        "schema_version": SCHEMA_VERSION,
        "experiment": data.config.experiment,
        "mode": snap.epochs[-1].mode if snap.epochs else None,
        "level": snap.level,
        "primary": data.config.primary,
        "treatments": treatments,
        "verdict": verdict_part,
        "srm": _srm(data, verdict),
        **_per_treatment(data, treatments, verdict),
        "segments": _segments(data, treatments),
        "guardrails": _guardrails(data),
        "bandit": _bandit(data),
        "phases": _phases(data, treatments),
        "rollback_events": [e.to_dict() for e in data.rollback_events],
        **({} if data.stages is None else {"rollout": data.stages.to_dict()}),
        "notes": list(data.notes()) + ([
            f"{snap.segment_overflow:,} segment values past the cap were counted as 'other'"]
            if snap.segment_overflow else []),
    })
    return out
