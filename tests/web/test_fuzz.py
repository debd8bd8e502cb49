"""Property: arbitrary JSON bodies and headers to every endpoint never give a 500, and change
no statistic unless the request was valid (answered 2xx)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.web.conftest import ADMIN, PREFIX, Client, fingerprint, make_router

ROUTER = make_router(primary="click", plan={"max_units": 1000})
CLIENT = Client(ROUTER)
TOKENS = CLIENT.tokens(8, prefix="fuzz-")

ENDPOINTS = [("POST", "/feedback"), ("GET", "/stats"), ("GET", "/config"),
             ("POST", "/config"), ("POST", "/looks"), ("GET", "/dashboard"),
             ("POST", "/dashboard"), ("GET", "/metrics"), ("GET", "/feedback"),
             ("PUT", "/config"), ("GET", "/nothing")]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=20), st.sampled_from(TOKENS),
                    st.sampled_from(["click", "revenue", "latency_ms", "control", "treatment",
                                     "ab", "bandit"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["token", "metric", "value", "items", "mode", "weights",
                                     "pause", "resume", "variant", "control", "treatment"])
                    | st.text(max_size=8), inner, max_size=5)), max_leaves=12)
near_valid = st.one_of(
    st.fixed_dictionaries({"token": st.sampled_from(TOKENS) | scalars,
                           "metric": st.sampled_from(["click", "revenue", "nope"]) | scalars,
                           "value": st.sampled_from([0, 1, 2.5, -1, True]) | scalars}),
    st.fixed_dictionaries({}, optional={
        "mode": st.sampled_from(["ab", "bandit"]) | scalars,
        "weights": st.fixed_dictionaries({"control": scalars | st.floats(0, 1),
                                          "treatment": scalars | st.floats(0, 1)}),
        "pause": st.sampled_from(["control", "treatment"]) | scalars,
        "resume": st.sampled_from(["control", "treatment"]) | scalars,
        "metric": st.sampled_from(["click", "revenue"]) | scalars}))
near_valid = near_valid | st.lists(near_valid, max_size=3) | st.builds(
    lambda items: {"items": items}, st.lists(near_valid, max_size=3))
bodies = st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                   near_valid.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=200),
                   st.just(b'{"token": "x", "metric": "revenue", "value": NaN}'))
header_names = st.sampled_from(["authorization", "cookie", "content-type", "content-length",
                                "x-user-id", "x-other"])
header_values = st.one_of(st.sampled_from([f"Bearer {ADMIN}", "Bearer nope", "Basic x",
                                           f"modelrouter_admin={ADMIN}", "-1", "99999999",
                                           "application/json", ""]),
                          st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                  max_size=30))
headers = st.tuples(st.booleans(), st.lists(st.tuples(header_names, header_values), max_size=3)
                   ).map(lambda t: [("authorization", f"Bearer {ADMIN}")] * t[0] + t[1])


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies, hdrs=headers)
def test_no_500_and_no_change_unless_valid(endpoint: tuple[str, str], body: bytes,
                                           hdrs: list[tuple[str, str]]) -> None:
    method, path = endpoint
    before = fingerprint(ROUTER)
    raw: Any = [(k.encode(), v.encode()) for k, v in hdrs]
    r = CLIENT.asgi.run(method, PREFIX + path, headers=raw, body=body)
    assert r.status < 500, (r.status, r.body[:300])
    assert r.status != 0  # an answer was sent
    event(f"{method} {path} -> {r.status}")
    if r.status >= 300:
        assert fingerprint(ROUTER) == before, (endpoint, body[:200], r.body[:200])
        if r.header("content-type") == "application/json":
            assert "error" in r.json()
