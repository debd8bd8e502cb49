"""CORS for the feedback endpoint (issue 14 part 4): a browser front end posts feedback.

Without ``cors_origins`` a preflight is refused with a 405 naming the setting (the router
answers its own prefix before any CORSMiddleware of the app); with it, an allowed origin gets
a 204 preflight and the allow-origin header on the POST, another origin a 403.
"""

from __future__ import annotations

import pytest

from modelrouter import ConfigError, RouterConfig
from tests.web.conftest import PREFIX, Client, make_router

PREFLIGHT = {"origin": "https://shop.example", "access-control-request-method": "POST",
             "access-control-request-headers": "content-type"}


def test_preflight_without_cors_origins_names_the_setting() -> None:
    client = Client(make_router())
    r = client.asgi.run("OPTIONS", PREFIX + "/feedback", headers=PREFLIGHT)
    assert r.status == 405 and "cors_origins" in r.json()["error"]
    assert r.header("access-control-allow-origin") is None


def test_an_allowed_origin_gets_the_preflight_and_the_post_header() -> None:
    client = Client(make_router(cors_origins=["https://shop.example"]))
    r = client.asgi.run("OPTIONS", PREFIX + "/feedback", headers=PREFLIGHT)
    assert r.status == 204
    assert r.header("access-control-allow-origin") == "https://shop.example"
    assert r.header("access-control-allow-methods") == "POST"
    assert r.header("access-control-allow-headers") == "content-type"
    assert r.header("vary") == "origin"
    token = client.tokens(1)[0]
    post = client.post(PREFIX + "/feedback", headers={"origin": "https://shop.example"},
                       json={"token": token, "metric": "click", "value": 1})
    assert post.status == 200 and post.json()["recorded"] is True
    assert post.header("access-control-allow-origin") == "https://shop.example"
    bad = client.post(PREFIX + "/feedback", headers={"origin": "https://shop.example"},
                      json={"token": "x", "metric": "click", "value": 1})
    assert bad.status == 403  # refusals carry the header too, so the page can read them
    assert bad.header("access-control-allow-origin") == "https://shop.example"


def test_another_origin_is_refused_and_a_wildcard_allows_any() -> None:
    client = Client(make_router(cors_origins=["https://shop.example"]))
    evil = {**PREFLIGHT, "origin": "https://evil.example"}
    r = client.asgi.run("OPTIONS", PREFIX + "/feedback", headers=evil)
    assert r.status == 403 and r.header("access-control-allow-origin") is None
    any_client = Client(make_router(cors_origins=["*"]))
    r = any_client.asgi.run("OPTIONS", PREFIX + "/feedback", headers=evil)
    assert r.status == 204 and r.header("access-control-allow-origin") == "*"
    # the admin API never answers CORS: it is not meant for browsers of other origins
    r = any_client.asgi.run("OPTIONS", PREFIX + "/config", headers=evil)
    assert r.status == 405 and r.header("access-control-allow-origin") is None


@pytest.mark.parametrize("bad", ["https://a.example", ["https://a.example/"], ["ftp://a"],
                                 ["https://a.example/path"], [3]])
def test_malformed_origins_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="cors_origins"):
        RouterConfig(cors_origins=bad)  # type: ignore[arg-type]
