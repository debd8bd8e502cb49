"""GET {prefix}/metrics, parsed by prometheus_client's own parser (the reference)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelrouter import ModelRouter
from modelrouter.prometheus import LATENCY_BUCKETS_S, RequestMetrics, render
from tests.http.conftest import BEARER, PREFIX, Client, make_router


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exposition_parses_and_matches_the_store(router: ModelRouter, client: Client) -> None:
    for t in client.tokens(30):
        router.record_token(t, "click", 1)
    for i in range(5):
        client.route(f"u{i}", "/fail")  # 503
    r = client.get(f"{PREFIX}/metrics", headers=BEARER)
    assert r.status == 200
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    fams = families(r.text)
    assert fams["modelrouter_requests"].type == "counter"  # type: ignore[attr-defined]
    assert fams["modelrouter_request_duration_seconds"].type == "histogram"  # type: ignore[attr-defined]
    assert fams["modelrouter_weight"].type == "gauge"  # type: ignore[attr-defined]
    snap = router.experiment.store.snapshot()
    req = {s.labels["variant"]: s.value for s in fams["modelrouter_requests"].samples}  # type: ignore[attr-defined]
    assert req == dict(zip(snap.variants, map(float, snap.requests.tolist())))
    assert sum(req.values()) == 35
    errors = {s.labels["variant"]: s.value for s in fams["modelrouter_errors"].samples}  # type: ignore[attr-defined]
    assert sum(errors.values()) == 5
    values = {s.labels["metric"]: s.value
              for s in fams["modelrouter_metric_values"].samples}  # type: ignore[attr-defined]
    assert values["click"] == 30 and values["latency_ms"] == 35
    http = {(s.labels["metric"], s.labels["result"]): s.value
            for s in fams["modelrouter_http_feedback"].samples}  # type: ignore[attr-defined]
    assert http == {("click", "recorded"): 30}
    weights = {s.labels["variant"]: s.value for s in fams["modelrouter_weight"].samples}  # type: ignore[attr-defined]
    assert weights == {"control": 0.5, "treatment": 0.5}


def test_histogram_is_cumulative_with_sum_and_count(router: ModelRouter,
                                                    client: Client) -> None:
    for i in range(12):
        client.route(f"h{i}")
    fams = families(client.get(f"{PREFIX}/metrics", headers=BEARER).text)
    hist = fams["modelrouter_request_duration_seconds"]
    per_variant: dict[str, list[tuple[float, float]]] = {}
    counts, sums = {}, {}
    for s in hist.samples:  # type: ignore[attr-defined]
        v = s.labels["variant"]
        if s.name.endswith("_bucket"):
            per_variant.setdefault(v, []).append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            counts[v] = s.value
        elif s.name.endswith("_sum"):
            sums[v] = s.value
    snap = router.experiment.store.snapshot()
    for v, buckets in per_variant.items():
        les = [le for le, _ in buckets]
        assert les == [*LATENCY_BUCKETS_S, float("inf")]
        values = [c for _, c in buckets]
        assert values == sorted(values)  # cumulative
        assert values[-1] == counts[v] == snap.requests[snap.variants.index(v)]
        assert 0 < sums[v] < 1.0  # seconds, not milliseconds


def test_bucket_boundaries_are_inclusive() -> None:
    m = RequestMetrics(["a", "b"])
    for ms in (0.5, 1.0, 1.0001, 3.0, 20_000.0):
        m.observe(0, ms, False)
    m.observe(1, 7.0, True)
    buckets, sums, errors = m.snapshot()
    # le=0.001 s holds 0.5 ms and exactly 1 ms; 1.0001 ms and 3 ms fall in le=0.0025/0.005
    assert buckets[0][:3] == [2, 1, 1] and buckets[0][-1] == 1 and sum(buckets[0]) == 5
    assert errors == [0, 1] and sums[0] == pytest.approx(20_005.5001)


def test_render_is_valid_for_a_crash_and_a_fresh_router() -> None:
    router = make_router()
    client = Client(router)
    text = render(router.experiment, RequestMetrics(router.experiment.names))
    assert families(text)["modelrouter_units"].samples[0].value == 0  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        client.route("boom", "/crash")
    fams = families(client.get(f"{PREFIX}/metrics", headers=BEARER).text)
    assert sum(s.value for s in fams["modelrouter_errors"].samples) == 1  # type: ignore[attr-defined]


def test_label_values_are_escaped() -> None:
    from modelrouter.prometheus import _label

    line = f'm{{x="{_label(chr(92) + chr(34) + chr(10) + "end")}"}} 1\n'
    fam = next(iter(text_string_to_metric_families(line)))
    assert fam.samples[0].labels["x"] == '\\"\nend'


def test_metrics_auth() -> None:
    client = Client(make_router())
    assert client.get(f"{PREFIX}/metrics").status == 401
    public = Client(make_router(metrics_public=True))
    assert public.get(f"{PREFIX}/metrics").status == 200
