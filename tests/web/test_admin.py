"""Admin API: the 401/403/404 matrix, /stats, /config (read, change, validation), /looks."""

from __future__ import annotations

import json

import pytest

from modelrouter import ModelRouter
from modelrouter.web.admin import COOKIE_NAME, AdminAuth
from modelrouter.web.messages import jsonable
from tests.web.conftest import ADMIN, BEARER, PREFIX, Client, fingerprint, make_router

ADMIN_ENDPOINTS = [("GET", "/stats"), ("GET", "/config"), ("POST", "/config"),
                   ("POST", "/looks"), ("GET", "/metrics")]


def _call(client: Client, method: str, path: str, headers: dict[str, str]) -> int:
    body = {"metric": "click"} if path == "/looks" else {"mode": "ab"}
    kwargs = {"json": body} if method == "POST" else {}
    return (client.post if method == "POST" else client.get)(
        PREFIX + path, headers=headers, **kwargs).status


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"authorization": "Bearer wrong-token-0123456789"}, 403),
    ({"authorization": f"Bearer {ADMIN}x"}, 403),
    ({"authorization": f"Bearer {ADMIN[:-1]}"}, 403),
    ({"authorization": f"Basic {ADMIN}"}, 401),
    ({"authorization": "Bearer"}, 401),
    ({"authorization": "Bearer "}, 401),
    ({"cookie": f"{COOKIE_NAME}=forged"}, 403),
])
def test_refused(client: Client, method: str, path: str, headers: dict[str, str],
                 status: int) -> None:
    expected = status
    if headers.get("cookie") and method == "POST":
        expected = 401  # state-changing endpoints ignore cookies altogether (no CSRF)
    assert _call(client, method, path, headers) == expected


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
def test_allowed_with_the_bearer_token(client: Client, method: str, path: str) -> None:
    client.tokens(4)
    status = _call(client, method, path, BEARER)
    assert status == (409 if path == "/looks" else 200)  # looks: no plan configured


def test_401_says_how_to_authenticate(client: Client) -> None:
    r = client.get(f"{PREFIX}/stats")
    assert r.header("www-authenticate") == 'Bearer realm="modelrouter"'
    assert "Bearer" in r.json()["error"]


@pytest.mark.parametrize(("method", "path"), [*ADMIN_ENDPOINTS, ("GET", "/dashboard"),
                                              ("POST", "/dashboard")])
def test_everything_admin_is_404_without_an_admin_token(method: str, path: str) -> None:
    client = Client(make_router(admin_token=None))
    assert _call(client, method, path, BEARER) == 404


def test_metrics_public_needs_no_token() -> None:
    client = Client(make_router(admin_token=None, metrics_public=True))
    assert client.get(f"{PREFIX}/metrics").status == 200
    assert client.get(f"{PREFIX}/stats", headers=BEARER).status == 404


def test_the_admin_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest",
                        lambda a, b: calls.append((len(a), len(b))) or real(a, b))
    auth = AdminAuth(ADMIN)
    assert auth.check([(b"authorization", f"Bearer {ADMIN}".encode())], cookie=False) is None
    assert auth.check([(b"authorization", b"Bearer x")], cookie=False) == (
        403, "authorization: wrong admin token")
    assert calls == [(32, 32), (32, 32)]  # SHA-256 digests: not even the length leaks
    assert ADMIN not in repr(auth)


def test_stats_is_the_analysis(router: ModelRouter, client: Client) -> None:
    for t in client.tokens(20):
        router.record_token(t, "click", 1 if hash(t) % 3 == 0 else 0)
    r = client.get(f"{PREFIX}/stats", headers=BEARER)
    assert r.status == 200
    expected = json.loads(json.dumps(jsonable(router.analysis().to_dict())))
    assert r.json() == expected
    assert r.json()["units"] == 20


def test_stats_json_has_no_nan(client: Client) -> None:
    client.tokens(1)  # one unit: std and intervals are NaN
    r = client.get(f"{PREFIX}/stats", headers=BEARER)
    assert b"NaN" not in r.body and b"Infinity" not in r.body
    assert r.json()["metrics"]["click"]["summary"][1]["std"] is None


def test_get_config(router: ModelRouter, client: Client) -> None:
    body = client.get(f"{PREFIX}/config", headers=BEARER).json()
    assert body["weights"] == {"control": 0.5, "treatment": 0.5}
    assert body["mode"] == "ab" and body["epoch"] == 0 and body["paused"] == []
    assert body["config"]["secret"] == "***" and body["config"]["admin_token"] == "***"
    assert ADMIN not in json.dumps(body)


def _post_config(client: Client, body: object) -> tuple[int, dict[str, object]]:
    r = client.post(f"{PREFIX}/config", headers=BEARER, json=body)
    return r.status, r.json()


def test_change_weights_mode_pause_resume() -> None:
    router = make_router(metrics={"click": "binary"}, weights={"control": 0.8, "treatment": 0.2},
                         reward="click")
    client = Client(router)
    status, body = _post_config(client, {"weights": {"control": 0.3, "treatment": 0.7}})
    assert status == 200 and body["weights"] == {"control": 0.3, "treatment": 0.7}
    assert body["epoch"] == 1 and router.experiment.allocation.epoch == 1
    status, body = _post_config(client, {"pause": "treatment"})
    assert body["weights"] == {"control": 1.0, "treatment": 0.0}
    assert body["paused"] == ["treatment"]
    assert all(client.route(f"p{i}").json()["variant"] == "control" for i in range(30))
    status, body = _post_config(client, {"resume": ["treatment"]})
    # back to its configured share (0.2), the control shrinking to make room
    assert body["weights"] == pytest.approx({"control": 0.8, "treatment": 0.2})
    status, body = _post_config(client, {"mode": "bandit"})
    assert status == 200 and body["mode"] == "bandit" and router.experiment.mode == "bandit"


def test_bandit_mode_needs_a_reward(router: ModelRouter, client: Client) -> None:
    before = fingerprint(router)
    status, body = _post_config(client, {"mode": "bandit"})
    assert status == 422 and "reward" in str(body["error"])
    assert fingerprint(router) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"weights": {"control": 0.5, "treatment": 0.6}}, "weights"),
    ({"weights": {"control": 1.0}}, "weights"),
    ({"weights": {"control": 0.5, "treatment": 0.5, "other": 0.0}}, "weights.other"),
    ({"weights": {"control": -0.5, "treatment": 1.5}}, "weights.control"),
    ({"weights": {"control": "1", "treatment": 0}}, "weights.control"),
    ({"weights": [0.5, 0.5]}, "weights"),
    ({"mode": "greedy"}, "mode"),
    ({"mode": ["ab"]}, "mode"),
    ({"pause": "nobody"}, "pause"),
    ({"pause": []}, "pause"),
    ({"pause": ["control", "treatment"]}, "pause"),
    ({"resume": 3}, "resume"),
    ({"weights": {"control": 1, "treatment": 0}, "pause": "control"}, "weights"),
    ({"colour": "red"}, "colour"),
    ({}, "body"),
    ([], "body"),
])
def test_invalid_config_changes_are_422_and_change_nothing(router: ModelRouter,
                                                           client: Client, body: object,
                                                           field: str) -> None:
    before = fingerprint(router)
    status, answer = _post_config(client, body)
    assert status == 422, answer
    assert str(answer["error"]).startswith(field), answer
    assert fingerprint(router) == before


def test_looks_record_an_official_look(client: Client) -> None:
    router = make_router(primary="click", plan={"max_units": 2000})
    client = Client(router)
    for i, t in enumerate(client.tokens(60)):
        router.record_token(t, "click", i % 2)
    r = client.post(f"{PREFIX}/looks", headers=BEARER, json={"metric": "click"})
    assert r.status == 200, r.text
    look = r.json()["look"]
    assert look["number"] == 1 and look["units"] == 60 and look["metric"] == "click"
    # no new data since: refused with the reason, not a 500
    r = client.post(f"{PREFIX}/looks", headers=BEARER, json={})
    assert r.status == 409 and "new" in r.json()["error"]


@pytest.mark.parametrize(("body", "field"), [({"metric": "nope"}, "metric"),
                                             ({"metric": 3}, "metric"),
                                             ({"variant": "x"}, "variant"),
                                             ({"when": "now"}, "when"), ([], "body")])
def test_looks_validation(client: Client, body: object, field: str) -> None:
    r = client.post(f"{PREFIX}/looks", headers=BEARER, json=body)
    assert r.status == 422 and r.json()["error"].startswith(field)


def test_looks_without_a_plan_is_409(client: Client) -> None:
    r = client.post(f"{PREFIX}/looks", headers=BEARER, json={"metric": "click"})
    assert r.status == 409 and "plan" in r.json()["error"]


def test_responses_are_not_cached(client: Client) -> None:
    r = client.get(f"{PREFIX}/config", headers=BEARER)
    assert r.header("cache-control") == "no-store"
    assert r.header("content-type") == "application/json"


def test_overflowing_weights_are_422_not_500(router: ModelRouter, client: Client) -> None:
    # each share is finite, their sum is not: math.fsum raised OverflowError (a 500)
    before = fingerprint(router)
    status, answer = _post_config(client, {"weights": {"control": 1e308, "treatment": 1e308}})
    assert status == 422 and str(answer["error"]).startswith("weights"), answer
    assert fingerprint(router) == before


def test_http_pause_is_the_python_pause() -> None:
    """A pause over HTTP survives a switch to bandit mode, as router.pause_arm() does (the
    HTTP path used to recompute the weights itself and forget the arm in the bandit)."""
    routers = [make_router(metrics={"click": "binary"}, reward="click") for _ in range(2)]
    status, _ = _post_config(Client(routers[0]), {"pause": "treatment"})
    assert status == 200
    routers[1].pause_arm("treatment")
    for r in routers:
        r.experiment.configure(mode="bandit")
        assert dict(r.experiment.allocation.weights) == {"control": 1.0, "treatment": 0.0}
    status, body = _post_config(Client(routers[0]), {"resume": "treatment"})
    assert status == 200 and body["paused"] == [] and body["mode"] == "bandit"


def test_pause_and_resume_of_one_arm_is_422(router: ModelRouter, client: Client) -> None:
    before = fingerprint(router)
    status, answer = _post_config(client, {"pause": "treatment", "resume": ["treatment"]})
    assert status == 422 and str(answer["error"]).startswith("pause"), answer
    assert fingerprint(router) == before


@pytest.mark.parametrize("path", ["/stats", "/dashboard", "/metrics"])
def test_an_unreadable_store_is_503_without_its_message(router: ModelRouter, client: Client,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        path: str) -> None:
    from modelrouter.exceptions import StoreError

    def down() -> None:
        raise StoreError("Redis at redis://h/0?password=hunter2 is unavailable")

    monkeypatch.setattr(router.experiment.store, "snapshot", down)
    r = client.get(PREFIX + path, headers=BEARER)
    assert r.status == 503 and r.header("retry-after") == "5"
    assert "store" in r.json()["error"] and b"hunter2" not in r.body
