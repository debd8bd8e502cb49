"""The dashboard in real headless Chromium at 1280 px: A/B, 3-variant and bandit states.

Each state is a router with simulated traffic (seeded), served by uvicorn on a free port in a
thread; Chromium (/usr/bin/chromium, driven by the ``playwright`` package: no download) logs in
through the login form, checks what the page shows against the in-process analysis (effect
interval endpoints against ``compare(...).to_dict()``, the verdict banner once and coloured,
labelled axes, charts as wide as their section) and takes a full-page screenshot. The
screenshots go to pytest's ``tmp_path`` and are copied to ``artifacts/dashboard/`` at the
repository root (git-ignored) for people to look at: ``dashboard-ab.png``,
``dashboard-3-variants.png``, ``dashboard-bandit.png``.

Skipped when /usr/bin/chromium is absent (apt-get install chromium; scripts/test.sh does).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from tests.conftest import make_app
from tests.web.conftest import ADMIN, PREFIX, SECRET

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
WIDTH = 1280

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is not installed (apt-get install chromium)")

CLICK = {"control": 0.20, "treatment": 0.26, "b": 0.22, "c": 0.27}
LATENCY = {"control": 120.0, "treatment": 126.0, "b": 118.0, "c": 131.0}


def _router(variants: tuple[str, ...], **config: Any) -> ModelRouter:
    config.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
    return ModelRouter(make_app(), {v: (lambda x: x) for v in variants},
                       RouterConfig(secret=SECRET, admin_token=ADMIN, exclude_paths=["/health"],
                                    **config))


def _traffic(router: ModelRouter, units: int, *, batches: int, seed: int,
             looks: tuple[str, ...] = ()) -> None:
    """``units`` users in ``batches``, routed in process (``experiment.assign``, as the
    middleware does): click (binary), revenue for clickers, latency and error (none) per
    decision; after each batch a look at each of ``looks`` for every treatment."""
    rng = np.random.default_rng(seed)
    alloc = router.experiment.allocation
    treatments = [v for v in alloc.weights if v != alloc.control]
    for b in range(batches):
        for i in range(units // batches):
            d = router.experiment.assign(f"user-{b}-{i}")
            click = int(rng.random() < CLICK[d.variant])
            router.record(d, "click", click)
            if click:
                router.record(d, "revenue", float(rng.lognormal(2.5, 0.6)))
            router.record(d, "latency_ms", float(rng.gamma(9.0, LATENCY[d.variant] / 9)))
            router.record(d, "error", 0)
        for metric in looks:
            for v in treatments:
                router.record_look(metric, variant=v)


def ab() -> ModelRouter:
    """Two variants, a plan with 5 looks (3 recorded), guardrails on revenue, latency, error."""
    router = _router(("control", "treatment"), experiment="checkout-model", primary="click",
                     plan={"max_units": 4000, "looks": 5},
                     guardrails={"revenue": {"max_decrease": 1.0},
                                 "latency_ms": {"max_increase": 0.10, "relative": True},
                                 "error": {"max_increase": 0.01}})
    _traffic(router, 2400, batches=3, seed=14, looks=("click", "revenue", "latency_ms"))
    return router


def three() -> ModelRouter:
    """A control and two treatments, 3 recorded looks on click and revenue."""
    router = _router(("control", "b", "c"), experiment="ranker-3way", primary="click",
                     plan={"max_units": 6000, "looks": 5})
    _traffic(router, 2700, batches=3, seed=15, looks=("click", "revenue"))
    return router


def bandit() -> ModelRouter:
    """Thompson sampling over three variants on click (weights refreshed every 50 rewards)."""
    router = _router(("control", "treatment", "c"), experiment="bandit-demo", mode="bandit",
                     reward="click", primary="click", refresh_every=50, refresh_seconds=None)
    _traffic(router, 1500, batches=1, seed=16)
    return router


STATES = {"ab": ab, "3-variants": three, "bandit": bandit}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(router: ModelRouter) -> Iterator[str]:
    """The router under uvicorn on a free local port, in a thread; yields the base URL."""
    import uvicorn

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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of an 8-bit RGB(A) PNG, after checking that its IDAT stream inflates
    (zlib) to exactly the announced size: height rows of 1 filter byte + width pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    assert len(zlib.decompress(idat)) == height * (1 + width * (3 if color == 2 else 4))
    return width, height


_PIXELS = """async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas');  // a quarter of the size: enough to tell
  c.width = Math.ceil(img.width / 4); c.height = Math.ceil(img.height / 4);
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0, c.width, c.height);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const counts = new Map();
  for (let i = 0; i < d.length; i += 4) {
    const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  const top = Math.max(...counts.values());
  return [counts.size, 1 - top / (d.length / 4)];
}"""


def pixel_stats(browser: Any, path: Path) -> tuple[int, float]:
    """(distinct colours, share of pixels not of the most common colour) of a PNG, decoded by
    the browser into a canvas at a quarter of its size, on a blank page (not the dashboard:
    its CSP forbids scripts)."""
    page = browser.new_page()
    try:
        src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        colours, busy = page.evaluate(_PIXELS, src)
        return int(colours), float(busy)
    finally:
        page.close()


def _launch(p: Any) -> Any:
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def _check_page(page: Any, router: ModelRouter) -> None:
    """What the rendered page shows, against the in-process analysis."""
    analysis = router.analysis()
    verdict = analysis.verdict()
    banners = page.locator(".banner")
    assert banners.count() == 1  # the verdict once
    assert banners.first.get_attribute("data-decision") == verdict.decision
    background = banners.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")  # coloured
    treatments = [v for v in analysis.variants if v != analysis.control]
    for metric in ("click", "revenue"):
        rows = page.eval_on_selector_all(
            f"#metric-{metric} svg.effect:first-of-type g.row",
            "els => els.map(e => [e.dataset.label, +e.dataset.lo, +e.dataset.hi])")
        assert [r[0] for r in rows] == treatments
        for label, lo, hi in rows:
            d = analysis.compare(metric, label).to_dict()
            assert (lo, hi) == (d["ci_low"], d["ci_high"])  # full precision
    # every chart uses the width of its section
    widths = page.eval_on_selector_all(
        "svg.chart", "els => els.map(e => [e.getBoundingClientRect().width, "
        "e.closest('section').getBoundingClientRect().width])")
    assert widths and all(w >= 0.9 * s for w, s in widths), widths
    assert min(s for _, s in widths) > 0.9 * (WIDTH - 48 - 20)
    # latency in ms, proportions in % and pp
    assert " ms" in page.inner_text("#metric-latency_ms table.comparisons")
    assert " pp" in page.inner_text("#metric-click table.comparisons")


def _shoot(browser: Any, base: str, name: str, router: ModelRouter, tmp: Path,
           requests: list[str]) -> Path:
    """Log in through the form, check the page, take the full-page screenshot."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 2400})
    try:
        page.on("request", lambda req: requests.append(req.url))
        r = page.goto(f"{base}{PREFIX}/dashboard")
        assert r is not None and r.status == 401  # the login form
        page.fill("#token", ADMIN)
        page.click("#login")
        page.wait_for_selector("#metric-click")
        assert page.url == f"{base}{PREFIX}/dashboard"
        path = tmp / f"dashboard-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)  # kept even when a check below fails
        shutil.copy(path, ARTIFACTS / path.name)
        _check_page(page, router)
        if name != "bandit":
            seq = page.locator("#sequential svg.chart")
            assert seq.count() == len(router.analysis().variants) - 1
            assert "information fraction" in seq.first.locator(".x-label").text_content()
            assert seq.first.locator(".y-label").text_content() == "z statistic"
        return path
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module; checks once that a blank page reads as blank."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = _launch(p)
        try:
            blank = tmp_path_factory.mktemp("blank") / "blank.png"
            empty = chromium.new_page(viewport={"width": WIDTH, "height": 600})
            empty.screenshot(path=str(blank))
            empty.close()
            assert pixel_stats(chromium, blank) == (1, 0.0)  # the control of the check
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("name", list(STATES))
def test_dashboard_screenshots_in_chromium(name: str, browser: Any, tmp_path: Path) -> None:
    router = STATES[name]()
    requests: list[str] = []
    with serve(router) as base:
        path = _shoot(browser, base, name, router, tmp_path, requests)
    assert requests and all(u.startswith(base) for u in requests)  # self-contained
    colours, busy = pixel_stats(browser, path)
    width, height = png_size(path)
    assert width == WIDTH and height > 1500  # the full page: sections, charts, tables
    # text, charts and coloured bands: many colours, a good share of non-background pixels
    assert colours > 200 and busy > 0.05, (colours, busy)
    assert path.stat().st_size > 60_000
