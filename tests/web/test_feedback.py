"""POST {prefix}/feedback: tokens on routed responses, statuses, idempotency, batches,
attribution in another process."""

from __future__ import annotations

import json

import pytest

from modelrouter import ModelRouter
from modelrouter.exceptions import ConfigError
from modelrouter.routing.tokens import Signer, TokenPayload
from tests.web.conftest import PREFIX, SECRET, Client, FakeClock, fingerprint, make_router

URL = f"{PREFIX}/feedback"


def clicks(router: ModelRouter) -> tuple[float, float]:
    """(units converted, click values recorded) straight from the store columns."""
    units = router.experiment.store.snapshot().units
    assert units is not None
    return float(units.x["click"].sum()), float(units.y["click"].sum())


def test_routed_responses_carry_a_token_for_their_decision(router: ModelRouter,
                                                           client: Client) -> None:
    r = client.route("alice")
    token = r.header("x-modelrouter-token")
    assert token is not None
    payload = Signer(SECRET).verify(token)
    assert payload.unit_id == "alice"
    assert payload.decision_id == r.json()["decision_id"]
    assert payload.variant == r.json()["variant"]
    assert payload.experiment == router.config.experiment
    assert payload.propensity == pytest.approx(0.5)


def test_no_token_and_no_endpoints_without_configuration() -> None:
    router = make_router(secret=None, admin_token=None)
    client = Client(router)
    assert client.route("alice").header("x-modelrouter-token") is None
    r = client.post(URL, json={"token": "x", "metric": "click", "value": 1})
    assert r.status == 404 and b"Not Found" in r.body  # the app's own 404: nothing mounted
    with pytest.raises(ConfigError, match="secret"):
        router.record_token("x", "click", 1)


def test_uncounted_requests_get_no_token(client: Client) -> None:
    assert client.get("/predict").header("x-modelrouter-token") is None


def test_endpoint_requests_are_not_experiment_traffic(router: ModelRouter,
                                                      client: Client) -> None:
    client.tokens(3)
    before = fingerprint(router)
    for path in ("/feedback", "/stats", "/config", "/metrics", "/dashboard", "/nope"):
        client.get(PREFIX + path, headers={"x-user-id": "mallory"})
    assert fingerprint(router) == before


def test_feedback_is_recorded_once(router: ModelRouter, client: Client) -> None:
    token = client.tokens(1)[0]
    r = client.post(URL, json={"token": token, "metric": "click", "value": 1})
    assert r.status == 200
    assert r.json() == {"decision_id": Signer(SECRET).verify(token).decision_id,
                        "metric": "click", "recorded": True, "duplicate": False}
    assert clicks(router) == (1.0, 1.0)
    again = client.post(URL, json={"token": token, "metric": "click", "value": 1})
    assert again.status == 200 and again.json()["duplicate"] is True
    assert again.json()["recorded"] is False
    assert clicks(router) == (1.0, 1.0)
    # another metric of the same decision is new feedback
    r = client.post(URL, json={"token": token, "metric": "revenue", "value": 12.5})
    assert r.json()["recorded"] is True
    units = router.experiment.store.snapshot().units
    assert units is not None and float(units.x["revenue"].sum()) == 12.5


def test_batch_forms(router: ModelRouter, client: Client) -> None:
    tokens = client.tokens(4)
    r = client.post(URL, json=[{"token": t, "metric": "click", "value": 1} for t in tokens[:2]])
    assert r.status == 200 and r.json()["recorded"] == 2
    items = [{"token": t, "metric": "click", "value": True} for t in tokens[1:]]
    r = client.post(URL, json={"items": items})
    body = r.json()
    assert r.status == 200 and body["recorded"] == 2 and body["duplicates"] == 1
    assert [x["duplicate"] for x in body["results"]] == [True, False, False]
    assert clicks(router) == (4.0, 4.0)


def test_a_batch_with_one_bad_item_records_nothing(router: ModelRouter, client: Client) -> None:
    tokens = client.tokens(3)
    before = fingerprint(router)
    items = [{"token": t, "metric": "click", "value": 1} for t in tokens]
    items[2]["value"] = 7
    r = client.post(URL, json={"items": items})
    assert r.status == 422 and r.json()["error"].startswith("items[2].value:")
    items[2]["value"] = 1
    items[1]["token"] = tokens[1][:-3] + "abc"
    r = client.post(URL, json=items)
    assert r.status == 403 and r.json()["error"].startswith("items[1].token:")
    assert fingerprint(router) == before


def _bad_token(token: str) -> str:
    return token[:10] + ("B" if token[10] != "B" else "C") + token[11:]


@pytest.mark.parametrize(("body", "status", "field"), [
    (lambda t: {"token": _bad_token(t), "metric": "click", "value": 1}, 403, "token"),
    (lambda t: {"token": Signer("another-secret-0123456789").sign(
        Signer(SECRET).verify(t)), "metric": "click", "value": 1}, 403, "token"),
    (lambda t: {"token": 17, "metric": "click", "value": 1}, 403, "token"),
    (lambda t: {"token": t, "metric": "clicks", "value": 1}, 422, "metric"),
    (lambda t: {"token": t, "metric": ["click"], "value": 1}, 422, "metric"),
    (lambda t: {"token": t, "metric": "latency_ms", "value": 1}, 422, "metric"),
    (lambda t: {"token": t, "metric": "click", "value": 2}, 422, "value"),
    (lambda t: {"token": t, "metric": "click", "value": "1"}, 422, "value"),
    (lambda t: {"token": t, "metric": "revenue", "value": None}, 422, "value"),
    (lambda t: {"token": t, "metric": "revenue", "value": [1]}, 422, "value"),
    (lambda t: {"token": t, "metric": "click"}, 422, "value"),
    (lambda t: {"metric": "click", "value": 1}, 422, "token"),
    (lambda t: {"token": t, "metric": "click", "value": 1, "unit": "x"}, 422, "unit"),
    (lambda t: [], 422, "items"),
    (lambda t: {"items": {}}, 422, "items"),
    (lambda t: "click", 422, "body"),
])
def test_bad_feedback_statuses(router: ModelRouter, client: Client, body: object, status: int,
                               field: str) -> None:
    token = client.tokens(1)[0]
    before = fingerprint(router)
    r = client.post(URL, json=body(token))  # type: ignore[operator]
    assert r.status == status, r.text
    assert r.json()["error"].startswith(field), r.json()
    assert fingerprint(router) == before


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"token": "T", "metric": "revenue", "value": NaN}', "value"),
    (b'{"token": "T", "metric": "revenue", "value": Infinity}', "value"),
    (b'{"token": "T", "metric": "revenue", "value": -1e999}', "value"),
    (b'{"token": "T", "metric": "revenue", "value": 1' + b"0" * 400 + b"}", "value"),
    (b'{"token": "T", "metric": "revenue", "value": 1', "body"),
    (b"\xff\xfe{}", "body"),
    (b"", "body"),
    (b"[" * 100_000, "body"),  # too large
    (b"[" * 60_000, "body"),  # small enough, but nested past the parser's recursion limit
    (b'{"token": "T", "metric": "revenue", "value": "' + b"x" * 70_000 + b'"}', "body"),
])
def test_bad_bodies_are_422_naming_the_field(router: ModelRouter, client: Client, raw: bytes,
                                             field: str) -> None:
    token = client.tokens(1)[0]
    before = fingerprint(router)
    r = client.post(URL, body=raw.replace(b'"T"', json.dumps(token).encode()))
    assert r.status == 422, r.text
    assert r.json()["error"].startswith(field), r.json()
    assert fingerprint(router) == before


def test_oversized_streamed_body_without_content_length(router: ModelRouter) -> None:
    import asyncio

    chunks = [b'{"items": [' + b" " * 40_000, b" " * 40_000, b"]}"]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": URL, "headers": [],
             "query_string": b""}
    asyncio.run(router(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 422
    assert json.loads(sent[1]["body"])["error"].startswith("body:")  # type: ignore[arg-type]


def test_expired_token_is_410() -> None:
    clock = FakeClock()
    router = make_router(clock=clock, attribution_window=3600)
    client = Client(router)
    token = client.tokens(1)[0]
    clock.now += 3601
    before = fingerprint(router)
    r = client.post(URL, json={"token": token, "metric": "click", "value": 1})
    assert r.status == 410 and "attribution window" in r.json()["error"]
    assert fingerprint(router) == before
    clock.now -= 2
    assert client.post(URL, json={"token": token, "metric": "click", "value": 1}).status == 200


def test_token_of_another_experiment_is_422(router: ModelRouter, client: Client) -> None:
    token = client.tokens(1)[0]
    payload = Signer(SECRET).verify(token)
    other = Signer(SECRET).sign(TokenPayload(payload.decision_id, "another", payload.variant,
                                             payload.unit_id, payload.propensity,
                                             payload.issued_at))
    r = client.post(URL, json={"token": other, "metric": "click", "value": 1})
    assert r.status == 422 and "another" in r.json()["error"]


def test_feedback_reaches_another_process_by_unit() -> None:
    """Worker A routes and signs; worker B (same secret, its own memory) takes the feedback."""
    a, b = make_router(), make_router()
    ca, cb = Client(a), Client(b)
    token = ca.route("carol").header("x-modelrouter-token")
    cb.route("carol")  # B has seen the unit (with a shared store every worker has)
    r = cb.post(URL, json={"token": token, "metric": "click", "value": 1})
    assert r.status == 200 and r.json()["recorded"] is True
    assert clicks(b) == (1.0, 1.0) and clicks(a) == (0.0, 0.0)
    # a unit B never saw: refused with a clear 404, nothing recorded
    token = ca.route("dave").header("x-modelrouter-token")
    r = cb.post(URL, json={"token": token, "metric": "click", "value": 1})
    assert r.status == 404 and "dave" in r.json()["error"]
    # and the failed attempt did not mark the pair as seen
    cb.route("dave")
    assert cb.post(URL, json={"token": token, "metric": "click", "value": 1}).status == 200


def test_request_level_feedback_by_decision() -> None:
    router = make_router(level="request")
    client = Client(router)
    token = client.get("/predict").header("x-modelrouter-token")
    assert token is not None and Signer(SECRET).verify(token).unit_id is None
    r = client.post(URL, json={"token": token, "metric": "revenue", "value": 3.0})
    assert r.status == 200
    groups = router.experiment.store.snapshot().groups
    assert sum(pm["revenue"].mean_x * n for n, pm in groups.values()) == pytest.approx(3.0)
    # the same token in another process: request level keeps no units there
    other = Client(make_router(level="request"))
    r = other.post(URL, json={"token": token, "metric": "revenue", "value": 3.0})
    assert r.status == 404 and "another process" in r.json()["error"]


def test_record_token_in_process(router: ModelRouter, client: Client) -> None:
    token = client.tokens(1)[0]
    assert router.record_token(token, "click", 1) is True
    assert router.record_token(token, "click", 1) is False
    assert clicks(router) == (1.0, 1.0)


def test_seen_set_is_bounded() -> None:
    router = make_router(max_seen_feedback=2)
    client = Client(router)
    tokens = client.tokens(3)
    for t in tokens:
        assert router.record_token(t, "click", 1) is True
    # the oldest pair was forgotten (bounded memory); the newest are still de-duplicated
    assert router.record_token(tokens[2], "click", 1) is False
    assert router.record_token(tokens[0], "click", 1) is True


def test_wrong_method_and_unknown_path(client: Client) -> None:
    r = client.get(URL)
    assert r.status == 405 and r.header("allow") == "POST"
    assert client.get(f"{PREFIX}/nothing").status == 404
