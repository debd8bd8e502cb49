"""The dashboard's effect, cumulative and sequential charts against the numbers they draw, with
independent references: the normal-mixture interval of Johari, Pekelis & Walsh (2022) for the
always-valid band, gsDesign's Lan-DeMets O'Brien-Fleming boundaries for the planned boundary."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from modelrouter import ModelRouter
from modelrouter.analysis import Verdict
from modelrouter.web.charts import nice_axis
from modelrouter.web.dashboard import render_dashboard
from modelrouter.web.units import DisplayUnit, display_unit
from tests.web.conftest import PREFIX, Client, make_router
from tests.web.test_dashboard_browser import ab, bandit, three


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str, tag: str, **attrs: str) -> list[dict[str, str | None]]:
    p = _Tags()
    p.feed(html)
    return [a for t, a in p.tags if t == tag and all(a.get(k.replace("_", "-")) == v
                                                     for k, v in attrs.items())]


def section(html: str, key: str) -> str:
    part = html[html.index(f'id="{key}"'):]
    return part[:part.index("</section>")]


def num(value: str | None) -> float:
    assert value is not None
    return float(value)


def triples(value: str | None) -> list[tuple[float, ...]]:
    assert value is not None
    return [tuple(float(x) for x in p.split(",")) for p in value.split(";")]


@pytest.fixture(scope="module")
def ab_router() -> ModelRouter:
    return ab()


@pytest.fixture(scope="module")
def ab_page(ab_router: ModelRouter) -> str:
    return render_dashboard(ab_router, ab_router.analysis(), PREFIX)


def test_nice_axis() -> None:
    assert nice_axis([0.0, 0.0], floor=0.0).ticks == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert nice_axis([0.0]).ticks[0] == -1.0 and nice_axis([0.0]).ticks[-1] == 1.0
    axis = nice_axis([0.2246, 7.035], include=[0.0])
    assert axis.ticks == (0.0, 2.0, 4.0, 6.0, 8.0)
    axis = nice_axis([-0.6073, 1.252], include=[0.0, -1.0])
    assert axis.low <= -1.0 and axis.high >= 1.252 and 0.0 in axis.ticks
    step = axis.ticks[1] - axis.ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1.0, 2.0, 2.5, 5.0))
    assert nice_axis([5.0, 5.0]).low < 5.0 < nice_axis([5.0, 5.0]).high  # constant, not zero
    assert nice_axis([math.nan, math.inf]).ticks[0] == 0.0  # nothing finite: a default range


def test_units() -> None:
    router = make_router()
    metrics = router.config.metrics
    click, latency, revenue = (display_unit(metrics[m]) for m in ("click", "latency_ms",
                                                                  "revenue"))
    assert (click.value(0.2202), click.change(0.0363), click.interval(0.002246, 0.07035)) == (
        "22.02%", "+3.63 pp", "[+0.2246, +7.035] pp")
    assert (latency.value(59.38), latency.change(-4.7)) == ("59.38 ms", "-4.7 ms")
    assert (revenue.value(3.284), revenue.change(0.3222)) == ("3.284", "+0.3222")
    assert display_unit(metrics["error"]) == DisplayUnit("error", 100.0, "%", "pp", True)
    assert click.interval(-math.inf, 0.1) == "[-inf, +10] pp"


def test_page_units_verdict_once_and_full_width(ab_router: ModelRouter, ab_page: str) -> None:
    html = ab_page
    assert html.count('class="banner') == 1 and "verdict: " not in html  # the verdict once
    decision = ab_router.analysis().verdict().decision
    assert f'data-decision="{decision}"' in section(html, "verdict")
    assert "svg.chart{width:100%" in html  # every chart stretches to its section
    assert re.search(r"mean</th>.*?<td>.*?ms</span>", section(html, "metric-latency_ms"))
    assert " pp</td>" in section(html, "metric-click")
    assert "%</span>" in section(html, "metric-click")  # rates in percent
    # the error metric has no error at all: said in words, no chart, no [0, 0]
    error = section(html, "metric-error")
    assert "not enough data yet" in error and "<svg" not in error and "[0%, 0%]" not in error
    assert "-1.16" not in html


def test_effect_plots_match_to_dict_for_each_treatment() -> None:
    router = three()
    html = render_dashboard(router, router.analysis(), PREFIX)
    for metric in ("click", "revenue"):
        part = section(html, f"metric-{metric}")
        rows = tags(part, "g", **{"class": "row"})
        assert [r["data-label"] for r in rows] == ["b", "c", "b", "c"]  # absolute, relative
        for row, rel in zip(rows[:2], rows[2:]):
            d = router.analysis().compare(metric, row["data-label"]).to_dict()
            assert (num(row["data-lo"]), num(row["data-hi"])) == (d["ci_low"], d["ci_high"])
            assert (num(rel["data-lo"]), num(rel["data-hi"])) == (d["relative_ci_low"],
                                                                 d["relative_ci_high"])


def test_guardrail_margins_are_drawn(ab_router: ModelRouter, ab_page: str) -> None:
    revenue = section(ab_page, "metric-revenue")
    refs = tags(revenue, "g", **{"class": "reference margin"})
    # max_decrease 1.0 (absolute): at -1 on the effect plot and the cumulative chart
    assert [num(r["data-value"]) for r in refs] == [-1.0, -1.0]
    latency = section(ab_page, "metric-latency_ms")
    refs = tags(latency, "g", **{"class": "reference margin"})
    assert [num(r["data-value"]) for r in refs] == [0.10]  # +10% relative: the relative plot
    g = next(g for g in ab_router.analysis().guardrails()
             if g.metric == "latency_ms" and g.quantile is None)
    row = tags(latency, "g", **{"class": "guardrail-row"})[0]
    assert (num(row["data-lo"]), num(row["data-hi"])) == (g.low, g.high)


def _mixture_half_width(variance: float, tau2: float, alpha: float) -> float:
    """Johari, Pekelis & Walsh (2022), normal mixture: reject theta when
    sqrt(V / (V + tau2)) * exp(tau2 (d - theta)^2 / (2 V (V + tau2))) >= 1 / alpha."""
    return math.sqrt(variance * (variance + tau2) / tau2
                     * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance)))


def test_cumulative_band_is_the_always_valid_interval(ab_router: ModelRouter,
                                                      ab_page: str) -> None:
    analysis = ab_router.analysis()
    for metric in ("click", "revenue", "latency_ms"):
        part = section(ab_page, f"metric-{metric}")
        series = tags(part, "g", **{"class": "series line", "data-name": "treatment"})
        assert len(series) == 1
        band = triples(series[0]["data-band"])
        points = triples(series[0]["data-points"])
        looks = [k for k in analysis.snapshot.looks if k.metric == metric]
        assert [x for x, _ in points] == [*(k.units for k in looks), 2400]
        av = analysis.always_valid(metric).to_dict()
        assert band[-1][1:] == (av["confidence_interval"]["low"],
                                av["confidence_interval"]["high"])  # now: to_dict's
        widths = [hi - lo for _, lo, hi in band if math.isfinite(hi - lo)]
        assert widths == sorted(widths, reverse=True)  # a running intersection narrows
        # the first bounded band is that look's own mixture interval (nothing to intersect)
        first = next(i for i, (_, lo, hi) in enumerate(band) if math.isfinite(hi - lo))
        k = looks[first]
        h = _mixture_half_width(k.variance, av["tau2"], av["alpha"])
        assert band[first][1:] == pytest.approx((k.difference - h, k.difference + h),
                                                rel=1e-9)


def test_sequential_chart_axes_and_planned_boundary() -> None:
    """Looks at 20% and 40% of the planned units: the recorded and planned boundaries are
    the Lan-DeMets O'Brien-Fleming bounds for 5 equally spaced looks, two-sided alpha 0.05
    (gsDesign::gsDesign(k=5, test.type=2, sfu=sfLDOF): 4.877, 3.357, 2.680, 2.290, 2.031)."""
    router = make_router(primary="click", plan={"max_units": 1000, "looks": 5})
    client = Client(router)
    for batch in ("a", "b"):  # 400 units each: information 0.2, then 0.4 of 2,000
        for i, t in enumerate(client.tokens(400, batch)):
            router.record_token(t, "click", int(i % 3 == 0))
        router.record_look()
    html = render_dashboard(router, router.analysis(), PREFIX, sections=("sequential",))
    part = section(html, "sequential")
    assert "information fraction" in part and ">z statistic</text>" in part
    bound = triples(tags(part, "g", data_name="boundary")[0]["data-points"])
    planned = triples(tags(part, "g", data_name="planned boundary")[0]["data-points"])
    gsdesign = [4.877, 3.357, 2.680, 2.290, 2.031]
    assert [x for x, _ in bound] == pytest.approx([0.2, 0.4])
    assert [z for _, z in bound] == pytest.approx(gsdesign[:2], abs=1e-3)
    assert [x for x, _ in planned] == pytest.approx([0.4, 0.6, 0.8, 1.0])
    assert [z for _, z in planned] == pytest.approx(gsdesign[1:], abs=1e-3)
    lower = triples(tags(part, "g", data_name="-boundary")[0]["data-points"])
    assert [z for _, z in lower] == pytest.approx([-z for z in gsdesign[:2]], abs=1e-3)
    path = triples(tags(part, "g", data_name="z")[0]["data-points"])
    looks = router.analysis().snapshot.looks
    assert path == [(k.information_rate, k.statistic) for k in looks]


def test_bandit_section_is_a_table() -> None:
    router = bandit()
    html = render_dashboard(router, router.analysis(), PREFIX)
    part = section(html, "bandit")
    result = router.analysis().bandit()
    assert 'class="bandit"' in part and "<pre>" not in part
    for v, p in result.p_best.items():
        assert f"{p:.1%}" in part, v
    assert 'id="weights"' in html and "since the first epoch" in section(html, "weights")


def test_futility_bounds_are_drawn() -> None:
    """A one-sided plan with non-binding futility bounds: the grey series holds the analysis'
    bounds at the recorded looks (to_dict), the efficacy boundary above them."""
    router = make_router(primary="click", plan={"max_units": 1000, "looks": 5, "sided": 1,
                                                "futility_spending": "obrien-fleming"})
    client = Client(router)
    for batch in ("a", "b"):
        for i, t in enumerate(client.tokens(400, batch)):
            router.record_token(t, "click", int(i % 3 == 0))
        router.record_look()
    html = render_dashboard(router, router.analysis(), PREFIX, sections=("sequential",))
    part = section(html, "sequential")
    futility = router.analysis().sequential().to_dict()["futility"]
    drawn = triples(tags(part, "g", data_name="futility")[0]["data-points"])
    assert [z for _, z in drawn] == futility["bounds"]
    bound = triples(tags(part, "g", data_name="boundary")[0]["data-points"])
    assert all(f < b for (_, f), (_, b) in zip(drawn, bound))
    assert 'data-name="-boundary"' not in part and 'data-name="-futility"' not in part


@pytest.mark.parametrize(("decision", "tone"), [
    ("ship", "good"), ("keep_testing", "wait"), ("no_effect", "neutral"), ("harmful", "stop"),
    ("blocked_by_guardrail", "stop"), ("invalid", "stop")])
def test_verdict_banner_colour_follows_the_decision(decision: str, tone: str) -> None:
    router = make_router(primary="click")
    Client(router).tokens(10)
    analysis: Any = router.analysis()
    analysis.verdict = lambda: Verdict(decision=decision, reasons=("why",), primary="click",
                                       variant="treatment", srm_pvalue=1.0)
    html = render_dashboard(router, analysis, PREFIX, sections=("verdict",))
    assert html.count('class="banner') == 1
    assert f'class="banner {tone}" id="verdict-banner" data-decision="{decision}"' in html
    assert f">{decision.replace('_', ' ').upper()}</strong>" in html
    assert "<li>why</li>" in html


def test_guardrail_table_speaks_one_unit_per_guardrail(ab_router: ModelRouter,
                                                       ab_page: str) -> None:
    """Relative guardrails in %, absolute ones in the metric's unit (pp for the error rate),
    the margin as the allowed change; the interval is the guardrail's own."""
    rows = re.findall(r"<tr>(.*?)</tr>", section(ab_page, "guardrails"))
    cells = {re.sub(r"<[^>]+>", "", r.split("</td>")[0]): re.findall(r"<td>(.*?)</td>", r)
             for r in rows}
    results = {g.label: g for g in ab_router.analysis().guardrails()}
    latency = cells["latency_ms"]
    g = results["latency_ms"]
    assert latency[4] == f"{g.estimate * 100:+.4g}%" and latency[6] == "at most +10%"
    assert latency[5] == f"[{g.low * 100:+.4g}%, {g.high * 100:+.4g}%]"
    assert cells["error"][6] == "at most +1 pp" and cells["error"][5].endswith("] pp")
    assert cells["revenue"][6] == "at least -1"
