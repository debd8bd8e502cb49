"""The dashboard's analysis sections: verdict banner, sample ratio, guardrails, sequential test
(the z path against its boundaries) and bandit. Each renderer takes the
:class:`~modelrouter.analysis.Analysis` and returns the inside of its section; an
:class:`AnalysisError` it raises (not configured, too little data) becomes a muted note in
:mod:`modelrouter.web.dashboard`. Everything from the analysis goes through :func:`html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING

from modelrouter.web.dashboard_metrics import table, variant_color
from modelrouter.web.dashboard_sequential import sequential_chart
from modelrouter.web.svg import fmt
from modelrouter.web.units import display_unit, percent

if TYPE_CHECKING:
    from modelrouter.analysis import Analysis, GuardrailResult
    from modelrouter.analysis.sequential import SequentialAnalysis

__all__ = ["STOP", "bandit_html", "guardrails_html", "paragraphs", "rollout_html",
           "sequential_html", "srm_html", "verdict_html"]

STOP = ("harmful", "blocked_by_guardrail", "invalid")
_TONE = {"ship": "good", "no_effect": "neutral", "keep_testing": "wait"}


def paragraphs(text: str, cls: str = "") -> str:
    """Plain text as escaped paragraphs, one per line (prose, not a monospace block)."""
    attr = f' class="{escape(cls)}"' if cls else ""
    return "".join(f"<p{attr}>{escape(line.strip())}</p>" for line in text.splitlines()
                   if line.strip())


def verdict_html(analysis: Analysis) -> str:
    """The verdict once, as a banner coloured by its decision, then its reasons; with several
    treatments one row per treatment (the recommended one marked). Later data that disagree
    with the decision (a possible novelty effect) are an alarm."""
    verdict = analysis.verdict()
    tone = "stop" if verdict.decision in STOP else _TONE.get(verdict.decision, "neutral")
    words = verdict.decision.replace("_", " ").upper()
    sub = ""
    if verdict.per_variant:
        sub = (f"recommended: {verdict.recommended}" if verdict.recommended else
               "no treatment recommended") + f" · {verdict.comparisons} treatments"
    elif verdict.variant:
        sub = f"{verdict.variant} vs {analysis.control} on {verdict.primary or 'the primary'}"
    banner = (f'<div class="banner {tone}" id="verdict-banner" data-decision="'
              f'{escape(verdict.decision)}"><strong class="decision">{escape(words)}</strong>'
              + (f" <span>{escape(sub)}</span>" if sub else "") + "</div>")
    flag = ""
    if verdict.later_disagreement and verdict.disagreement:
        flag = (f'<p class="alarm" id="verdict-disagreement">later data disagree: '
                f"{escape(verdict.disagreement)}</p>")
    table_html = ""
    if verdict.per_variant:
        spec = analysis.config.metrics.get(verdict.primary or "")
        change = fmt if spec is None else display_unit(spec).change
        rows = []
        for name, v in verdict.per_variant.items():
            cells = [escape(name), escape(v.decision), escape(change(v.estimate_now)),
                     escape(fmt(v.alpha_per_comparison)),
                     "recommended" if name == verdict.recommended else ""]
            if v.decision in STOP:
                cells[1] = f'<span class="alarm">{cells[1]}</span>'
            rows.append(cells)
        table_html = table(["treatment", "decision", "estimate now (treatment - control)",
                            "alpha per comparison", ""], rows, "verdicts")
    items = "".join(f"<li>{escape(r)}</li>" for r in verdict.reasons)
    notes = "".join(f'<li class="muted">{escape(n)}</li>' for n in verdict.notes)
    return (f"{banner}{flag}{table_html}<ul class=\"reasons\">{items}</ul>"
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))


def srm_html(analysis: Analysis) -> str:
    """The sample-ratio check (the anytime-valid sequential test: the page reloads itself, so
    it is checked continuously), marked as an alarm when it fails."""
    check = analysis.srm()
    status = ("sample ratio mismatch: the split differs from the configured weights"
              if check.alarm else "no evidence of a sample ratio mismatch")
    return (f'<div class="{"alarm" if check.alarm else "ok"}" data-method="'
            f'{escape(check.method)}" data-pvalue="{check.pvalue!r}"><p><strong>'
            f"{escape(status)}</strong></p></div>{paragraphs(check.explain())}")


_GUARDRAIL_COLUMNS = ("guardrail", "variant", "segment", "status", "change",
                      "always-valid interval", "allowed change", "reason")


def _guardrail_row(analysis: Analysis, g: GuardrailResult) -> list[str]:
    """One guardrail's cells: change, interval and margin in one unit (a relative guardrail
    in %, an absolute one in the metric's unit: pp, ms, ...)."""
    spec = analysis.config.metrics.get(g.metric)
    show: Callable[[float], str] = (percent if g.relative else fmt if spec is None
                                    else display_unit(spec).change)
    margin = show(g.margin if g.direction == "increase" else -g.margin)
    if math.isfinite(g.low) and math.isfinite(g.high):
        change = show(g.estimate)
        interval = (display_unit(spec).interval(g.low, g.high) if spec is not None
                    and not g.relative else f"[{show(g.low)}, {show(g.high)}]")
    else:
        change, interval = "", "not bounded yet"
    status = {"fail": "alarm", "pass": "ok"}.get(g.status, "muted")
    cells = [escape(g.label), escape(g.variant), escape(g.where),
             f'<span class="{status}">{escape(g.status)}</span>', escape(change),
             escape(interval),
             escape(("at most " if g.direction == "increase" else "at least ") + margin),
             escape(g.reason)]
    if g.status == "fail":
        cells[0] = f'<span class="alarm">{cells[0]}</span>'
    return cells


def guardrails_html(analysis: Analysis) -> str:
    """One row per guardrail (and segment); a failing one's name is marked as an alarm."""
    results = analysis.guardrails()
    if not results:
        return '<p class="muted">none configured</p>'
    rows = [_guardrail_row(analysis, g) for g in results]
    return table(_GUARDRAIL_COLUMNS, rows, "results guardrails")


def _facts(result: SequentialAnalysis) -> str:
    """This look in one row: the numbers the decision rests on."""
    row = [f"{result.look}" + ("" if result.recorded else " (now, not recorded)"),
           f"{result.information_rate:.3f}", f"{result.units:,} of {result.planned_units:,}",
           fmt(result.statistic), fmt(result.boundary), fmt(result.alpha_spent),
           f"<strong>{escape(result.decision)}</strong>"]
    return table(["look", "information", "units", "z", "boundary", "alpha spent",
                  "decision"], [row], "sequential-facts")


def sequential_html(analysis: Analysis) -> str:
    """The sequential test: its chart, this look's numbers and (folded) the explanation; with
    several treatments one per treatment, each at the plan's alpha split across them (as the
    verdict decides)."""
    treatments = list(analysis.data.treatments)
    if len(treatments) <= 1:
        results = [analysis.sequential()]
    else:
        alpha = analysis.verdict().alpha_per_comparison
        results = [analysis.sequential(variant=t, alpha=alpha if math.isfinite(alpha) else None)
                   for t in treatments]
    return "".join(
        f'<div class="sequential" data-variant="{escape(r.variant)}">'
        + sequential_chart(r, analysis.snapshot.looks, variant_color(analysis, r.variant))
        + _facts(r)
        + "<details><summary>How this was decided</summary>"
        + paragraphs(r.explain()) + "</details></div>" for r in results)


def bandit_html(analysis: Analysis) -> str:
    """The bandit's arms (weight, P(best), posterior mean and expected loss in the reward's
    unit, decisions) and its regret estimate."""
    result = analysis.bandit()
    spec = analysis.config.metrics.get(analysis.config.reward or "")
    unit = None if spec is None else display_unit(spec)
    value = fmt if unit is None else unit.value
    loss = fmt if unit is None else unit.change
    rows = [[escape(v) + (' <span class="alarm">paused</span>' if v in result.paused else "")
             + (' <span class="ok">best</span>' if v == result.best else ""),
             f"{result.weights[v]:.1%}", f"{result.p_best[v]:.1%}",
             escape(value(result.posterior_mean[v])), escape(loss(result.expected_loss[v])),
             f"{result.decisions[v]:,}"] for v in result.weights]
    regret = (f"Cumulative regret estimate {fmt(result.regret)} (a uniform split of the same "
              f"decisions: {fmt(result.regret_uniform)})" if result.regret_uniform > 0 else
              f"Cumulative regret estimate {fmt(result.regret)}")
    return (f"<p>{escape(result.policy)} sampling, mode {escape(result.mode)}, epoch "
            f"{result.epoch}: best arm <strong>{escape(result.best)}</strong> with P(best) "
            f"{result.p_best[result.best]:.1%}.</p>"
            + table(["arm", "weight", "P(best)", f"posterior mean of {analysis.config.reward}",
                     "expected loss", "decisions"], rows, "bandit")
            + f"<p>{escape(regret)}; {len(result.history)} epochs; "
            f"{result.holdout_decisions:,} holdout decisions.</p>")


def rollout_html(analysis: Analysis) -> str:
    """The shadow candidates' stages and every stage transition, one line each (newest
    last), with the reason and the numbers behind it."""
    stages = analysis.stages
    if stages is None or not stages.current:
        return '<p class="muted">no shadow candidates</p>'
    items = "".join(f"<li>{escape(line)}</li>" for line in stages.lines())
    return f'<ul id="rollout-events">{items}</ul>'

