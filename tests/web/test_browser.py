"""The dashboard in a real browser: uvicorn on 127.0.0.1, headless Chromium via Playwright.

Skipped only when /usr/bin/chromium is absent (CI installs the Debian ``chromium`` package; the
python ``playwright`` package drives it, no ``playwright install`` needed). Saves a screenshot
to ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelrouter import ModelRouter, RouterConfig
from tests.conftest import make_app
from tests.web.conftest import ADMIN, PREFIX, SECRET

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ModelRouter, str]]:
    import uvicorn

    router = ModelRouter(make_app(), {"control": lambda x: x, "treatment": lambda x: 2 * x},
                         RouterConfig(experiment="checkout-model",
                                      metrics={"click": "binary", "revenue": "continuous"},
                                      secret=SECRET, admin_token=ADMIN, primary="click",
                                      plan={"max_units": 400}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(router, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    asyncio.run(_traffic(base))
    yield router, base
    server.should_exit = True
    thread.join(timeout=10)


async def _traffic(base: str) -> None:
    """Real HTTP: 120 users, tokens from response headers, feedback POSTed back."""
    async with httpx.AsyncClient(base_url=base) as client:
        items = []
        for i in range(120):
            r = await client.get("/predict", headers={"x-user-id": f"user-{i}"})
            token = r.headers["x-modelrouter-token"]
            treated = r.json()["variant"] == "treatment"
            items.append({"token": token, "metric": "click",
                          "value": int(i % 5 < (3 if treated else 2))})
            if i % 4 == 0:
                items.append({"token": token, "metric": "revenue",
                              "value": 10.0 + i % 7 + (2 if treated else 0)})
        r = await client.post(f"{PREFIX}/feedback", json={"items": items})
        assert r.status_code == 200 and r.json()["recorded"] == len(items)
        r = await client.post(f"{PREFIX}/looks", json={"metric": "click"},
                              headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text


def _launch(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def test_dashboard_in_chromium(served: tuple[ModelRouter, str]) -> None:
    from playwright.sync_api import sync_playwright

    router, base = served
    analysis = router.analysis()
    requests: list[str] = []
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda req: requests.append(req.url))
            r = page.goto(f"{base}{PREFIX}/dashboard")
            assert r is not None and r.status == 401
            page.fill("#token", "not-the-admin-token-at-all")
            page.click("#login")
            assert "Wrong admin token" in page.inner_text("#login-error")
            page.fill("#token", ADMIN)
            page.click("#login")
            page.wait_for_selector("#metric-click svg.effect")
            assert page.url == f"{base}{PREFIX}/dashboard"
            cookies = {c["name"]: c for c in page.context.cookies()}
            cookie = cookies["modelrouter_admin"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert ADMIN not in cookie["value"]

            # the effect plot shows exactly what the analysis reports
            rows = page.eval_on_selector_all(
                "#metric-click svg.effect g.row",
                "els => els.map(e => [e.dataset.label, +e.dataset.estimate, +e.dataset.lo, "
                "+e.dataset.hi])")
            d = analysis.compare("click").to_dict()
            assert rows[0] == ["treatment", d["difference"], d["ci_low"], d["ci_high"]]
            circle = page.locator('#metric-click svg.effect g.row[data-label="treatment"] '
                                  "circle")
            assert circle.count() == 2 and circle.first.is_visible()  # absolute and relative
            summaries = analysis.summary("click")
            means = page.locator("#metric-click table.summary .mean").all_inner_texts()
            assert means == [f"{s.mean * 100:.4g}%" for s in summaries]
            c = analysis.compare("click")
            cells = page.locator("#metric-click table.comparisons td").all_inner_texts()
            assert f"{c.difference * 100:+.4g} pp" in cells and f"{c.pvalue:.3g}" in cells

            # sequential section: chart with the z path and its boundaries, the look's numbers
            seq = page.locator("#sequential")
            assert seq.locator("svg g.series").count() >= 2
            z = seq.locator('g.series[data-name="z"]').get_attribute("data-points")
            assert z is not None
            look = analysis.sequential("click")
            statistic = float(z.split(";")[-1].split(",")[1])
            assert statistic == pytest.approx(getattr(look, "statistic", statistic), rel=1e-9)
            for section in ("overview", "verdict", "srm"):
                assert page.locator(f"#{section}").count() == 1, section
            assert "checkout-model" in page.inner_text("header")

            # self-contained: every request went to our server
            assert requests and all(u.startswith(base) for u in requests)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    assert not math.isnan(c.pvalue)
