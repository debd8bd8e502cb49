"""GET {prefix}/metrics, parsed by prometheus_client's own parser (the reference)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelrouter import ModelRouter
from modelrouter.web.prometheus import LATENCY_BUCKETS_S, label_value, render
from tests.web.conftest import BEARER, PREFIX, Client, make_router


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


def test_bucket_boundaries_are_inclusive_and_counts_exact() -> None:
    """Values exactly on an ``le`` boundary count in it (Prometheus' ``<=``); every cumulative
    count equals a direct count of the values sent, per variant, errors included."""
    router = make_router(metrics_public=True)
    store = router.experiment.store
    sent: dict[str, list[tuple[float, float]]] = {"control": [], "treatment": []}
    edges_ms = [b * 1000.0 for b in LATENCY_BUCKETS_S]
    values = [0.0, 0.004, 0.5, *edges_ms, *(e * (1 + 1e-12) for e in edges_ms), 3.0, 7.0,
              20_000.0, 200_000.0, *(float(x) for x in range(1, 400, 7))]
    for i, ms in enumerate(values):
        decision, seq = router.experiment.route(f"u{i}", ())
        error = float(i % 5 == 0)
        store.record_auto(seq, ms, error)
        sent[decision.variant].append((ms, error))
    fams = families(Client(router).get(f"{PREFIX}/metrics").text)
    hist = fams["modelrouter_request_duration_seconds"]
    for v, pairs in sent.items():
        ms = [m for m, _ in pairs]
        got = {s.labels["le"]: s.value for s in hist.samples  # type: ignore[attr-defined]
               if s.name.endswith("_bucket") and s.labels["variant"] == v}
        for le in LATENCY_BUCKETS_S:
            assert got[repr(le)] == sum(m / 1000.0 <= le for m in ms), (v, le)
        assert got["+Inf"] == len(ms)
        total = next(s.value for s in hist.samples  # type: ignore[attr-defined]
                     if s.name.endswith("_sum") and s.labels["variant"] == v)
        assert total == pytest.approx(sum(ms) / 1000.0)
        errors = {s.labels["variant"]: s.value
                  for s in fams["modelrouter_errors"].samples}  # type: ignore[attr-defined]
        assert errors[v] == sum(e for _, e in pairs)


def test_render_is_valid_for_a_crash_and_a_fresh_router() -> None:
    router = make_router()
    client = Client(router)
    text = render(router.experiment)
    assert families(text)["modelrouter_units"].samples[0].value == 0  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        client.route("boom", "/crash")
    fams = families(client.get(f"{PREFIX}/metrics", headers=BEARER).text)
    assert sum(s.value for s in fams["modelrouter_errors"].samples) == 1  # type: ignore[attr-defined]


def test_label_values_are_escaped() -> None:
    line = f'm{{x="{label_value(chr(92) + chr(34) + chr(10) + "end")}"}} 1\n'
    fam = next(iter(text_string_to_metric_families(line)))
    assert fam.samples[0].labels["x"] == '\\"\nend'


def test_metrics_auth() -> None:
    client = Client(make_router())
    assert client.get(f"{PREFIX}/metrics").status == 401
    public = Client(make_router(metrics_public=True))
    assert public.get(f"{PREFIX}/metrics").status == 200
