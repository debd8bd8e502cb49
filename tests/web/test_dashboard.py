"""The dashboard page: login and cookie, self-containment, escaping, sections, SVG numbers."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from modelrouter import ModelRouter
from modelrouter.analysis import GuardrailResult, Verdict
from modelrouter.web.admin import COOKIE_NAME
from modelrouter.web.charts import EffectRow, effect_plot
from modelrouter.web.dashboard import SECTIONS, render_dashboard
from tests.web.conftest import ADMIN, BEARER, PREFIX, Client, make_router

URL = f"{PREFIX}/dashboard"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(html)
    return p.tags


def login(client: Client) -> str:
    r = client.post(URL, body=f"token={ADMIN}".encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status == 303 and r.header("location") == URL
    cookie = r.header("set-cookie")
    assert cookie is not None
    return cookie


def test_login_flow(client: Client) -> None:
    r = client.get(URL)
    assert r.status == 401 and '<form method="post"' in r.text and 'name="token"' in r.text
    r = client.post(URL, body=b"token=wrong", headers={"content-type":
                                                       "application/x-www-form-urlencoded"})
    assert r.status == 403 and "Wrong admin token" in r.text and r.header("set-cookie") is None
    cookie = login(client)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and f"Path={PREFIX}" in cookie
    assert ADMIN not in cookie
    value = cookie.split(";")[0]
    page = client.get(URL, headers={"cookie": value})
    assert page.status == 200 and "Metric: click" in page.text
    # the cookie also opens the read-only JSON, never the state-changing endpoints
    assert client.get(f"{PREFIX}/stats", headers={"cookie": value}).status == 200
    assert client.post(f"{PREFIX}/config", headers={"cookie": value},
                       json={"mode": "ab"}).status == 401
    r = client.get(URL, headers={"cookie": f"{COOKIE_NAME}=x{value[-10:]}"})
    assert r.status == 403 and "log in again" in r.text
    assert client.get(URL, headers=BEARER).status == 200


def test_page_is_self_contained_and_locked_down(client: Client) -> None:
    client.tokens(5)
    r = client.get(URL, headers=BEARER)
    html = r.text
    assert r.header("content-type") == "text/html; charset=utf-8"
    csp = r.header("content-security-policy") or ""
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert r.header("x-frame-options") == "DENY" and r.header("cache-control") == "no-store"
    for tag, attrs in tags(html):
        assert tag not in ("script", "link", "iframe", "img"), tag
        assert not any(k in ("src", "href") for k in attrs), (tag, attrs)
    urls = set(re.findall(r"https?://[^\"' )]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, not a fetch
    assert '<meta http-equiv="refresh" content="10">' in html


def test_effect_plot_numbers_are_the_comparison(router: ModelRouter, client: Client) -> None:
    """The effect plot's rows are the treatments; their interval endpoints (data-lo/data-hi)
    are compare(...).to_dict()'s exactly, and the printed ones equal them to the printed
    precision (4 significant digits, in percentage points for a proportion)."""
    for i, t in enumerate(client.tokens(60)):
        router.record_token(t, "click", int(i % 3 == 0))
    html = client.get(URL, headers=BEARER).text
    section = html[html.index('id="metric-click"'):]
    section = section[:section.index("</section>")]
    rows = [a for t, a in tags(section) if t == "g" and a.get("class") == "row"]
    d = router.analysis().compare("click").to_dict()
    absolute, relative = rows  # one treatment: a row in each plot
    assert absolute["data-label"] == relative["data-label"] == "treatment"
    assert float(absolute["data-estimate"] or "nan") == d["difference"]
    assert (float(absolute["data-lo"] or "nan"), float(absolute["data-hi"] or "nan")) == (
        d["ci_low"], d["ci_high"])
    assert (float(relative["data-lo"] or "nan"), float(relative["data-hi"] or "nan")) == (
        d["relative_ci_low"], d["relative_ci_high"])
    printed = re.search(r'class="value">([+-][0-9.e+-]+) pp \[([+-][0-9.e+-]+), '
                        r"([+-][0-9.e+-]+)\] pp</text>", section)
    assert printed is not None
    for text, value in zip(printed.groups(), (d["difference"], d["ci_low"], d["ci_high"])):
        assert float(text) == float(f"{value * 100:.4g}")  # pp, to the printed precision
    # the table says the same, once more
    assert f"[{printed.group(2)}, {printed.group(3)}] pp" in section


def test_everything_user_supplied_is_escaped(router: ModelRouter) -> None:
    evil = '<script>alert("x")</script>'
    verdict = Verdict(decision="keep_testing", reasons=(f"segment {evil} looks odd",),
                      primary="click", variant="treatment", srm_pvalue=math.nan)
    guardrail = GuardrailResult(
        metric=evil, variant="treatment", segment={"platform": evil}, status="fail",
        direction="increase", margin=0.1, relative=True, estimate=0.2, low=0.1, high=0.3,
        alpha=0.05, units_control=10, units_treatment=10, reason=evil)
    analysis: Any = router.analysis()
    analysis.verdict = lambda: verdict
    analysis.guardrails = lambda: (guardrail,)
    analysis.bandit = lambda: (_ for _ in ()).throw(RuntimeError(evil))
    html = render_dashboard(router, analysis, PREFIX)
    section = html[html.index('id="guardrails"'):]
    assert '<span class="alarm">' in section[:section.index("</section>")]  # a failing one
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'id="bandit"' in html and "unavailable" in html  # a failing section says so
    svg = effect_plot([EffectRow(evil, 1.0, 0.5, 1.5, evil)], title=evil, axis_label=evil)
    # title (aria-label, <title>, caption), row label, data-label, text, axis: all escaped
    assert "<script>" not in svg and svg.count("&lt;script&gt;") == 7


def test_verdict_disagreement_and_stop_decisions_are_alarms(router: ModelRouter) -> None:
    Client(router).tokens(20)  # some units, so that the sample ratio can be checked
    analysis: Any = router.analysis()
    ship = Verdict(decision="ship", reasons=("click: decided at look 1",), primary="click",
                   variant="treatment", srm_pvalue=1.0, decided_at_look=1, direction="better",
                   later_disagreement=True, disagreement="the data after look 1 disagree <b>")
    analysis.verdict = lambda: ship
    html = render_dashboard(router, analysis, PREFIX, sections=("verdict",))
    section = html[html.index('id="verdict"'):]
    assert '<p class="alarm" id="verdict-disagreement">' in section
    assert "the data after look 1 disagree &lt;b&gt;" in section and "<b>" not in section
    harmful = Verdict(decision="harmful", reasons=("click: significantly worse",),
                      primary="click", variant="treatment", srm_pvalue=1.0)
    analysis.verdict = lambda: harmful
    html = render_dashboard(router, analysis, PREFIX, sections=("verdict", "srm"))
    assert ('<div class="banner stop" id="verdict-banner" data-decision="harmful"><strong '
            'class="decision">HARMFUL</strong>') in html
    assert "verdict-disagreement" not in html
    assert 'data-method="sequential"' in html  # the SRM section: the anytime-valid test


def test_sections_follow_the_analysis() -> None:
    router = make_router(primary="click", plan={"max_units": 200})
    client = Client(router)
    for i, t in enumerate(client.tokens(10)):
        router.record_token(t, "click", i % 2)
    html = render_dashboard(router, router.analysis(), PREFIX, sections=())  # none of them
    for name in ("verdict", "srm", "guardrails", "sequential", "bandit", "weights", "rollout"):
        assert f'id="{name}"' not in html, name
    router.configure(weights={"control": 0.7, "treatment": 0.3})
    router.record_look()
    html = render_dashboard(router, router.analysis(), PREFIX)
    assert 'id="sequential"' in html and 'data-name="boundary"' in html
    # weights history: one point per epoch plus now, as a step line
    assert 'id="weights"' in html and 'data-name="treatment"' in html
    with pytest.raises(ValueError, match="'charts' is not one of"):
        render_dashboard(router, router.analysis(), PREFIX, sections=("charts",))
    assert list(SECTIONS) == ["verdict", "srm", "guardrails", "sequential", "bandit",
                              "rollout"]
    assert "no shadow candidates" in html  # the rollout section of a router without shadows


def test_features_not_configured_are_a_note_not_an_alarm(router: ModelRouter,
                                                         client: Client) -> None:
    # no plan and no bandit: sequential() and bandit() raise AnalysisError, which is expected
    client.tokens(10)
    html = client.get(URL, headers=BEARER).text
    for key in ("sequential", "bandit"):
        section = html[html.index(f'id="{key}"'):]
        section = section[:section.index("</section>")]
        assert "not available" in section and 'class="alarm"' not in section, section
