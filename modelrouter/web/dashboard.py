"""The dashboard page: one self-contained HTML document (inline CSS and SVG, no script, no
external asset), rebuilt from a fresh analysis on every load and refreshed by a meta tag.

The page shows the allocation, one section per analysis question (:data:`SECTIONS`: the
verdict, SRM, guardrails, the sequential test and the bandit; the caller may choose fewer), the
weights over time when they changed, and every metric. A section whose question cannot be
answered yet (no plan, no bandit, too little data: :class:`AnalysisError`) says so in a muted
note; one that fails otherwise renders its error as an alarm instead of breaking the page.
Every value that reaches the page goes through :func:`html.escape`: variant and metric names
come from the config, but unit ids and segment values come from users.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from html import escape
from typing import TYPE_CHECKING

from modelrouter.exceptions import AnalysisError
from modelrouter.web.handle import RouterHandle
from modelrouter.web.svg import ForestRow, fmt, forest_plot, line_chart

if TYPE_CHECKING:  # types only: the analysis (scipy) is loaded by whoever builds one
    from modelrouter.analysis import Analysis
    from modelrouter.analysis.sequential import SequentialAnalysis
    from modelrouter.store.looks import Look

__all__ = ["SECTIONS", "render_dashboard", "render_login"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#f6f7f9}header{background:#1d2733;color:#fff;padding:12px 24px}
header h1{font-size:18px;margin:0}header p{margin:4px 0 0;color:#c9d1d9}
main{padding:16px 24px;max-width:1100px}section{background:#fff;border:1px solid #e1e4e8;
border-radius:6px;padding:12px 16px;margin:0 0 16px}h2{font-size:16px;margin:0 0 8px}
h3{font-size:14px;margin:12px 0 6px}table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{color:#1a7f37}.alarm{color:#cf222e;
font-weight:600}.muted{color:#666}svg text{font:12px system-ui,sans-serif}
.chart-title{font-weight:600}pre{white-space:pre-wrap;margin:4px 0}
form input{font:inherit;padding:4px 8px;margin-right:8px}
"""


def _page(title: str, body: str, refresh: int | None = None) -> str:
    """A whole HTML document around ``body``, reloading itself every ``refresh`` seconds."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}"
            f"</body></html>")


def render_login(prefix: str, message: str = "") -> str:
    """The login form; POSTs the admin token to the dashboard, which sets the cookie."""
    note = f'<p class="alarm" id="login-error">{escape(message)}</p>' if message else ""
    body = (f"<header><h1>modelrouter dashboard</h1></header><main><section><h2>Log in</h2>"
            f"{note}<form method=\"post\" action=\"{escape(prefix)}/dashboard\">"
            f'<label>Admin token <input type="password" name="token" id="token" '
            f'autocomplete="current-password" required></label>'
            f'<button type="submit" id="login">Log in</button></form>'
            f'<p class="muted">The token is kept in an HttpOnly, SameSite=Strict cookie.</p>'
            f"</section></main>")
    return _page("modelrouter: log in", body)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table of already escaped cells (the header is escaped here)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _section(key: str, title: str, html: str) -> str:
    """A section with id ``key`` (what tests and links find it by)."""
    return f'<section id="{escape(key)}"><h2>{escape(title)}</h2>{html}</section>'


def _decision(decision: str) -> str:
    """A result's decision word, prominent."""
    return f'<p class="decision"><strong>{escape(decision.upper())}</strong></p>'


_STOP = ("harmful", "blocked_by_guardrail", "invalid")


def _verdict(analysis: Analysis) -> str:
    """The verdict and its reasons; a stopping verdict, and later data that disagree with the
    decision (a possible novelty effect), are marked as alarms."""
    verdict = analysis.verdict()
    flag = ""
    if verdict.later_disagreement and verdict.disagreement:
        flag = (f'<p class="alarm" id="verdict-disagreement">later data disagree: '
                f"{escape(verdict.disagreement)}</p>")
    cls = "alarm" if verdict.decision in _STOP else ""
    table = ""
    if verdict.per_variant:  # several treatments: one row each, the recommended one marked
        rows = []
        for name, v in verdict.per_variant.items():
            cells = [escape(name), escape(v.decision), escape(fmt(v.estimate_now)),
                     escape(fmt(v.alpha_per_comparison)),
                     "recommended" if name == verdict.recommended else ""]
            if v.decision in _STOP:
                cells[1] = f'<span class="alarm">{cells[1]}</span>'
            rows.append(cells)
        table = _table(["treatment", "decision", "estimate (treatment - control)",
                        "alpha per comparison", ""], rows, "verdicts")
    return (f'<div class="{cls}">{_decision(verdict.decision)}{flag}{table}'
            f"<pre>{escape(verdict.summary())}</pre></div>")


def _srm(analysis: Analysis) -> str:
    """The sample-ratio check (the anytime-valid sequential test: the page reloads itself, so
    it is checked continuously), marked as an alarm when it fails."""
    check = analysis.srm()
    return (f'<div class="{"alarm" if check.alarm else "ok"}" data-method="'
            f'{escape(check.method)}" data-pvalue="{check.pvalue!r}"><pre>'
            f"{escape(check.explain())}</pre></div>")


_GUARDRAIL_COLUMNS = ("guardrail", "variant", "segment", "status", "estimate", "low", "high",
                      "margin", "reason")


def _guardrails(analysis: Analysis) -> str:
    """One row per guardrail (and segment); a failing one's name is marked as an alarm."""
    results = analysis.guardrails()
    if not results:
        return '<div class=""><p class="muted">none</p></div>'
    rows = []
    for g in results:
        cells = [escape(c) for c in (g.label, g.variant, g.where, g.status, fmt(g.estimate),
                                     fmt(g.low), fmt(g.high), fmt(g.margin), g.reason)]
        if g.status == "fail":
            cells[0] = f'<span class="alarm">{cells[0]}</span>'
        rows.append(cells)
    return f'<div class="">{_table(_GUARDRAIL_COLUMNS, rows, "results")}</div>'


def _sequential(analysis: Analysis) -> str:
    """The sequential test: its chart, decision and explanation; with several treatments one
    per treatment, each at the plan's alpha split across them (as the verdict decides)."""
    treatments = [v for v in analysis.variants if v != analysis.control]
    if len(treatments) <= 1:
        results = [analysis.sequential()]
    else:
        alpha = analysis.verdict().alpha_per_comparison
        results = [analysis.sequential(variant=t, alpha=alpha if math.isfinite(alpha) else None)
                   for t in treatments]
    return "".join(
        _sequential_chart(result, analysis.snapshot.looks)
        + f'<div class="">{_decision(result.decision)}<pre>{escape(result.explain())}'
        "</pre></div>" for result in results)


def _bandit(analysis: Analysis) -> str:
    """The bandit's weights, posterior and regret."""
    return f'<div class=""><pre>{escape(analysis.bandit().summary())}</pre></div>'


SECTIONS: dict[str, tuple[str, Callable[[Analysis], str]]] = {
    "verdict": ("Verdict", _verdict),
    "srm": ("Sample ratio (SRM)", _srm),
    "guardrails": ("Guardrails", _guardrails),
    "sequential": ("Sequential test", _sequential),
    "bandit": ("Bandit", _bandit),
}
"""The analysis sections of the page, in order: key (the section's id), title, renderer."""


def _metric_section(analysis: Analysis, metric: str) -> str:
    """Forest plot and table of the metric's per-variant means, then each treatment against
    the control (a comparison that cannot be made yet shows why)."""
    summaries = analysis.summary(metric)
    rows, forest = [], []
    for s in summaries:
        ci = s.confidence_interval()
        control = s.variant == analysis.control
        rows.append([escape(s.variant) + (" <span class=\"muted\">(control)</span>"
                                          if control else ""),
                     f"{s.units:,}", f'<span class="mean">{escape(fmt(s.mean))}</span>',
                     f"[{escape(fmt(ci.low))}, {escape(fmt(ci.high))}]", f"{s.events:,}"])
        forest.append(ForestRow(s.variant, s.mean, ci.low, ci.high))
    html = forest_plot(forest, title=f"{metric}: mean per variant, 95% CI")
    html += _table(["variant", "units", "mean", "95% CI", "events"], rows, "summary")
    comparisons = []
    for v in analysis.variants:
        if v == analysis.control:
            continue
        try:
            c = analysis.compare(metric, v)
        except Exception as exc:  # not enough data yet is the common case
            comparisons.append([escape(v), f'<span class="muted">{escape(str(exc))}</span>',
                                "", "", ""])
            continue
        ci = c.confidence_interval()
        lift = f"{c.relative_lift:+.2%}" if math.isfinite(c.relative_lift) else "n/a"
        comparisons.append([escape(v), escape(fmt(c.difference)),
                            f"[{escape(fmt(ci.low))}, {escape(fmt(ci.high))}]", escape(lift),
                            escape(fmt(c.pvalue, 3))])
    html += "<h3>vs control</h3>" + _table(
        ["variant", "difference", "95% CI", "relative lift", "p-value"], comparisons,
        "comparisons")
    return _section(f"metric-{metric}", f"Metric: {metric}", html)


def _sequential_chart(result: SequentialAnalysis, looks: Sequence[Look]) -> str:
    """z at each look (the recorded ones, then now) against the boundaries of those looks."""
    if result.test is None:
        return ""
    design = result.test.design
    t = [float(x) for x in design.information_rates]
    path = [float(k.statistic) for k in looks
            if k.metric == result.metric and k.variant == result.variant]
    path = path[:len(t)]
    if len(path) < len(t):
        path.append(float(result.statistic))
    series = {"z": list(zip(t[:len(path)], path)),
              "boundary": list(zip(t, map(float, design.z)))}
    if design.sided == 2:
        series["-boundary"] = [(x, -float(b)) for x, b in zip(t, design.z)]
    return line_chart(series, title="Sequential test: z at each look against its boundary",
                      x_label="information rate", dashed=("boundary", "-boundary"))


def _weights_chart(analysis: Analysis) -> str:
    """Each variant's weight as a step line, one step per epoch, up to the snapshot."""
    epochs = analysis.snapshot.epochs
    now = analysis.snapshot.taken_at
    start = epochs[0].started_at if epochs else now
    series = {}
    for i, v in enumerate(analysis.variants):
        pts = [((e.started_at - start) / 60.0, e.weights[i]) for e in epochs]
        pts.append(((now - start) / 60.0, epochs[-1].weights[i] if epochs else math.nan))
        series[v] = pts
    return line_chart(series, title="Weights over time", x_label="minutes since start",
                      step=True, height=200)


def render_dashboard(router: RouterHandle, analysis: Analysis, prefix: str, refresh: int = 10,
                     *, sections: Collection[str] = tuple(SECTIONS)) -> str:
    """The whole page for ``router`` from one ``analysis`` snapshot, with the analysis
    ``sections`` named (keys of :data:`SECTIONS`; all by default) in their usual order."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"sections: {unknown[0]!r} is not one of {list(SECTIONS)}")
    config, experiment = router.config, router.experiment
    alloc = experiment.allocation
    snap = analysis.snapshot
    requests = dict(zip(snap.variants, snap.requests.tolist()))
    primary = config.primary
    header = (f"<header><h1>{escape(config.experiment)}</h1><p>mode {escape(experiment.mode)}"
              f" · level {escape(config.level)} · epoch {alloc.epoch} · "
              f"{snap.n_units:,} units · updated "
              f"{escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(snap.taken_at)))}"
              f" · refreshes every {int(refresh)} s</p>"
              + (f'<p id="data-source">data of {escape(snap.source)}</p>' if snap.source else "")
              + "</header>")
    overview = _table(
        ["variant", "weight", "requests"],
        [[escape(v) + (" <span class=\"muted\">(control)</span>" if v == alloc.control else ""),
          f"{w:.3f}" + (' <span class="alarm">paused</span>' if w == 0 else ""),
          f"{requests.get(v, 0):,}"] for v, w in alloc.weights.items()], "overview")
    if snap.uncounted_requests:
        overview += (f'<p class="muted">{snap.uncounted_requests:,} requests without a unit id '
                     "were served but not counted.</p>")
    parts = [_section("overview", "Overview", overview)]
    for key, (title, section) in SECTIONS.items():
        if key not in sections:
            continue
        try:
            html = section(analysis)
        except AnalysisError as exc:  # not configured or not enough data: a note, no alarm
            html = f'<p class="muted">not available: {escape(str(exc))}</p>'
        except Exception as exc:  # one section failing must not take the page down
            html = f'<p class="alarm">unavailable: {escape(str(exc))}</p>'
        parts.append(_section(key, title, html))
    if len(snap.epochs) > 1 or experiment.mode == "bandit":
        parts.append(_section("weights", "Weights over time", _weights_chart(analysis)))
    custom = [m for m in snap.metrics if m not in ("latency_ms", "error")]
    if primary in custom:
        custom.remove(primary)
        custom.insert(0, primary)
    for metric in [*custom, "latency_ms", "error"]:
        if metric in snap.metrics:
            try:
                parts.append(_metric_section(analysis, metric))
            except Exception as exc:
                parts.append(_section(f"metric-{metric}", f"Metric: {metric}",
                                      f'<p class="alarm">unavailable: {escape(str(exc))}</p>'))
    body = header + "<main>" + "".join(parts) + (
        f'<p class="muted">JSON: {escape(prefix)}/stats · Prometheus: {escape(prefix)}/metrics'
        "</p></main>")
    return _page(f"modelrouter: {config.experiment}", body, refresh=refresh)
