"""The HTTP surface itself: which endpoints are on, 404/405 and the headers every answer
carries, the login cookie, and that any RouterHandle (not only the router) can serve it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.asgi.types import Message
from modelrouter.routing.experiment import Experiment
from modelrouter.store.looks import Look
from modelrouter.testing import ASGIClient
from modelrouter.web.surface import HTTPSurface
from tests.web.conftest import ADMIN, BEARER, PREFIX, SECRET, Client, make_router


@dataclass
class Handle:
    """A RouterHandle without the router: the surface needs nothing else."""

    config: RouterConfig
    experiment: Experiment

    def analysis(self) -> Analysis:
        return Analysis.from_experiment(self.experiment)

    def record_look(self, metric: str | None = None, *, variant: str | None = None) -> Look:
        raise AssertionError("not called in these tests")


def handle(**config: Any) -> Handle:
    cfg = RouterConfig(experiment="handled", metrics={"click": "binary"}, **config)
    return Handle(cfg, Experiment({"control": 1, "treatment": 2}, cfg))


def test_any_router_handle_serves_the_surface() -> None:
    h = handle(admin_token=ADMIN)
    h.experiment.configure(weights={"control": 0.75, "treatment": 0.25})
    client = ASGIClient(HTTPSurface(h))
    r = client.run("GET", f"{PREFIX}/config", headers=BEARER)
    assert r.status == 200
    assert r.json()["weights"] == {"control": 0.75, "treatment": 0.25} and r.json()["epoch"] == 1
    r = client.run("GET", f"{PREFIX}/stats", headers=BEARER)
    assert r.status == 200 and r.json()["variants"] == ["control", "treatment"]
    r = client.run("GET", f"{PREFIX}/metrics", headers=BEARER)
    assert r.status == 200
    assert 'modelrouter_weight{experiment="handled",variant="control"} 0.75' in r.text


@pytest.mark.parametrize(("config", "enabled", "on"), [
    ({}, False, set()),
    ({"secret": SECRET}, True, {"/feedback"}),
    ({"metrics_public": True}, True, {"/metrics"}),
    ({"admin_token": ADMIN}, True, {"/stats", "/config", "/looks", "/dashboard", "/metrics"}),
])
def test_endpoints_are_on_only_when_configured(config: dict[str, Any], enabled: bool,
                                               on: set[str]) -> None:
    surface = HTTPSurface(handle(**config))
    assert surface.enabled is enabled
    client = ASGIClient(surface)
    for path in ("/feedback", "/stats", "/config", "/looks", "/dashboard", "/metrics"):
        statuses = {client.run(method, PREFIX + path).status for method in ("GET", "POST")}
        assert (statuses != {404}) is (path in on), (path, statuses)


def test_404_and_405_are_json_with_the_security_headers(client: Client) -> None:
    for r, status in ((client.get(f"{PREFIX}/nothing"), 404),
                      (client.post(f"{PREFIX}/stats", headers=BEARER), 405)):
        assert r.status == status and "error" in r.json()
        assert r.header("content-type") == "application/json"
        assert r.header("cache-control") == "no-store"
        assert r.header("x-content-type-options") == "nosniff"
        assert r.header("referrer-policy") == "no-referrer"
        assert r.header("content-length") == str(len(r.body))
    assert client.post(f"{PREFIX}/stats").header("allow") == "GET"
    assert client.get(f"{PREFIX}/config").status == 401  # both methods exist: auth decides


def test_login_cookie_is_secure_over_https() -> None:
    router = make_router()
    form = {"headers": {"content-type": "application/x-www-form-urlencoded"},
            "body": f"token={ADMIN}".encode()}

    async def login(scheme: str) -> str:
        sent: list[Message] = []
        body = [{"type": "http.request", "body": form["body"], "more_body": False}]

        async def receive() -> Message:
            return body.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": f"{PREFIX}/dashboard",
                 "scheme": scheme, "headers": [], "query_string": b""}
        await router(scope, receive, send)
        assert sent[0]["status"] == 303
        return dict(sent[0]["headers"])[b"set-cookie"].decode()

    assert asyncio.run(login("https")).endswith("; Secure")
    assert "Secure" not in asyncio.run(login("http"))


def test_every_output_says_the_memory_store_covers_one_process() -> None:
    """With the memory store the numbers are this process's traffic only: /stats, the
    dashboard and the report say so, with the pid (a second worker would differ)."""
    router = make_router()
    client = Client(router)
    client.tokens(5)
    source = f"one process (pid {os.getpid()}, memory store)"
    stats = client.get(f"{PREFIX}/stats", headers=BEARER).json()
    assert stats["data_source"] == source
    page = client.get(f"{PREFIX}/dashboard", headers=BEARER).text
    assert f'<p id="data-source">data of {source}</p>' in page
    assert f"data of {source}" in router.analysis().report().splitlines()[0]
