"""The dashboard page: one self-contained HTML document (inline CSS and SVG, no script, no
external asset), rebuilt from a fresh analysis on every load and refreshed by a meta tag.

The page shows the allocation, one section per analysis question (:data:`SECTIONS`: the
verdict as one coloured banner, SRM, guardrails, the sequential test's z path against its
boundaries and the bandit; see :mod:`modelrouter.web.dashboard_sections`; the caller may
choose fewer), the weights over time when they changed, and every metric: the treatment
effects against zero and the guardrail margins, the cumulative effect with its always-valid
band (:mod:`modelrouter.web.dashboard_metrics`), in one unit per metric (%, pp, ms:
:mod:`modelrouter.web.units`). Charts are inline SVG stretched to the page width
(:mod:`modelrouter.web.charts`), so the strict CSP (no script, inline styles) holds.

A section whose question cannot be answered yet (no plan, no bandit, too little data:
:class:`AnalysisError`) says so in a muted note; one that fails otherwise renders its error
as an alarm instead of breaking the page. Every value that reaches the page goes through
:func:`html.escape`: variant and metric names come from the config, but unit ids and segment
values come from users.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from html import escape
from typing import TYPE_CHECKING

from modelrouter.exceptions import AnalysisError
from modelrouter.web.charts import Series, xy_chart
from modelrouter.web.dashboard_metrics import metric_html, table, variant_color
from modelrouter.web.dashboard_sections import (
    bandit_html,
    guardrails_html,
    rollout_html,
    sequential_html,
    srm_html,
    verdict_html,
)
from modelrouter.web.handle import RouterHandle
from modelrouter.web.units import display_unit

if TYPE_CHECKING:  # types only: the analysis (scipy) is loaded by whoever builds one
    from modelrouter.analysis import Analysis, GuardrailResult

__all__ = ["SECTIONS", "render_dashboard", "render_login"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#f6f7f9}header{background:#1d2733;color:#fff;padding:12px 24px}
header h1{font-size:18px;margin:0}header p{margin:4px 0 0;color:#c9d1d9}
main{padding:16px 24px;max-width:1600px}section{background:#fff;border:1px solid #e1e4e8;
border-radius:6px;padding:12px 16px;margin:0 0 16px}h2{font-size:16px;margin:0 0 8px}
h3{font-size:14px;margin:12px 0 6px}table{border-collapse:collapse;margin:6px 16px 6px 0}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
td:first-child,th:first-child{text-align:left}table.guardrails td:nth-child(-n+4),
table.guardrails th:nth-child(-n+4),table.guardrails td:last-child,
table.guardrails th:last-child{text-align:left}table.guardrails td:last-child{max-width:440px}
table.guardrails td:nth-child(n+5):nth-child(-n+7){white-space:nowrap}
.ok{color:#1a7f37}
.alarm{color:#cf222e;font-weight:600}.muted{color:#666}p{margin:4px 0}
svg.chart{width:100%;height:auto;display:block;margin:4px 0 10px}
svg text{font:12px system-ui,sans-serif;fill:#333}svg .chart-title{font-weight:600;
font-size:13px}svg .axis-label{fill:#555}svg .ref-label{fill:#cf222e;font-size:11px}
svg .zero-label{fill:#555;font-size:11px}.caption{color:#666;font-size:12px;margin:-6px 0 8px}
.tables{display:flex;flex-wrap:wrap;align-items:flex-start}
.banner{padding:10px 14px;border-radius:6px;font-size:16px;margin:0 0 8px;border:1px solid}
.banner.good{background:#dafbe1;border-color:#1a7f37;color:#116329}
.banner.stop{background:#ffebe9;border-color:#cf222e;color:#a40e26}
.banner.wait{background:#fff8c5;border-color:#bf8700;color:#7d4e00}
.banner.neutral{background:#ddf4ff;border-color:#0969da;color:#0a3069}
.banner span{font-size:14px;margin-left:8px}ul{margin:4px 0;padding-left:20px}
details summary{cursor:pointer;color:#0969da}pre{white-space:pre-wrap;margin:4px 0}
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


def _section(key: str, title: str, html: str) -> str:
    """A section with id ``key`` (what tests and links find it by)."""
    return f'<section id="{escape(key)}"><h2>{escape(title)}</h2>{html}</section>'


SECTIONS: dict[str, tuple[str, Callable[[Analysis], str]]] = {
    "verdict": ("Verdict", verdict_html),
    "srm": ("Sample ratio (SRM)", srm_html),
    "guardrails": ("Guardrails", guardrails_html),
    "sequential": ("Sequential test", sequential_html),
    "bandit": ("Bandit", bandit_html),
    "rollout": ("Rollout (shadow to ship)", rollout_html),
}
"""The analysis sections of the page, in order: key (the section's id), title, renderer."""


def _weights_chart(analysis: Analysis) -> str:
    """Each variant's weight as a step line, one step per epoch, up to the snapshot; time in
    seconds, minutes or hours since the first epoch, whichever reads best."""
    epochs = analysis.snapshot.epochs
    now = analysis.snapshot.taken_at
    start = epochs[0].started_at if epochs else now
    span = now - start
    name, per = (("seconds", 1.0) if span < 120 else ("minutes", 60.0) if span < 7200
                 else ("hours", 3600.0))
    series = []
    for i, v in enumerate(analysis.variants):
        pts = [((e.started_at - start) / per, float(e.weights[i])) for e in epochs]
        pts.append(((now - start) / per, float(epochs[-1].weights[i]) if epochs else math.nan))
        series.append(Series(v, pts, style="step", color=variant_color(analysis, v)))
    return xy_chart(series, title="Each variant's share of the traffic, epoch by epoch",
                    x_label=f"{name} since the first epoch", y_label="weight",
                    x_include=[0.0], x_floor=0.0, height=220)


def _unit_note(analysis: Analysis, metric: str) -> str:
    """The section title's unit note: what the metric's rates and changes are shown in."""
    unit = display_unit(analysis.config.metrics[metric])
    if unit.proportion:
        return " (a proportion: rates in %, changes in percentage points)"
    if unit.value_suffix:
        return f" (in {unit.value_suffix})"
    return ""


def _context(analysis: Analysis) -> tuple[float | None, tuple[GuardrailResult, ...]]:
    """What every metric section shares: the always-valid level (the verdict's alpha per
    comparison with several treatments, else the plan's) and the guardrail results."""
    alpha: float | None = None
    if len(analysis.variants) > 2:
        try:
            a = analysis.verdict().alpha_per_comparison
            alpha = a if math.isfinite(a) else None
        except Exception:  # no plan, no data: the always-valid call says why itself
            alpha = None
    try:
        guardrails = analysis.guardrails()
    except Exception:  # drawn without margins; the guardrails section shows the error
        guardrails = ()
    return alpha, guardrails


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
    overview = table(
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
    alpha, guardrails = _context(analysis)
    for metric in [*custom, "latency_ms", "error"]:
        if metric in snap.metrics:
            try:
                parts.append(_section(f"metric-{metric}", f"Metric: {metric}"
                                      + _unit_note(analysis, metric),
                                      metric_html(analysis, metric, alpha=alpha,
                                                  guardrails=guardrails)))
            except Exception as exc:
                parts.append(_section(f"metric-{metric}", f"Metric: {metric}",
                                      f'<p class="alarm">unavailable: {escape(str(exc))}</p>'))
    body = header + "<main>" + "".join(parts) + (
        f'<p class="muted">JSON: {escape(prefix)}/stats · Prometheus: {escape(prefix)}/metrics'
        "</p></main>")
    return _page(f"modelrouter: {config.experiment}", body, refresh=refresh)
