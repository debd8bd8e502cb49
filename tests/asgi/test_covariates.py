"""Covariates read from the request at a unit's first exposure (issue 16), through the real
middleware (httpx's ASGI transport in front of ModelRouter and a Starlette app).

Cells covered: memory store; A/B with 2 and 3 variants; bandit mode; user level (request
level refused at construction); fresh and restored from a snapshot file; valid and hostile
input (NaN, inf, 1e300, text, 10 kB headers, non-latin bytes, a raising / lying
``covariate_fn``, lone surrogates as names). The adjusted comparison equals the independent
reference (statsmodels OLS theta with mean imputation + missingness indicator, then scipy's
Welch test on the adjusted outcomes) to 1e-8.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from modelrouter import ModelRouter, RouterConfig
from modelrouter.asgi.covariates import CovariateReader
from modelrouter.exceptions import ConfigError
from tests.conftest import make_app

METRICS = {"y": {"kind": "continuous", "covariates": ["pre", "pre2"]}, "click": "binary"}


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def router(variants: tuple[str, ...] = ("a", "b"), clock: Clock | None = None,
           **config: Any) -> ModelRouter:
    config.setdefault("metrics", METRICS)
    config.setdefault("covariate_headers", {"pre": "x-pre"})
    return ModelRouter(make_app(), {v: (lambda x: x) for v in variants}, RouterConfig(**config),
                       clock=clock or Clock())


def get_all(app: ModelRouter, requests: list[dict[str, str | bytes]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get("/predict", headers=h) for h in requests]
    return asyncio.run(go())


def reference(y: np.ndarray, t: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    """Pooled theta from statsmodels OLS of y on the covariates (missing: mean-imputed, with
    an indicator column), scipy's Welch test of the adjusted outcomes."""
    x = np.atleast_2d(x.T).T
    cols = []
    for j in range(x.shape[1]):
        col = x[:, j]
        miss = np.isnan(col)
        if miss.all():
            continue
        cols.append(np.where(miss, np.nanmean(col), col))
        if miss.any():
            cols.append(miss.astype(float))
    z = np.column_stack(cols)
    theta = sm.OLS(y, sm.add_constant(z)).fit().params[1:]
    adj = y - (z - z.mean(axis=0)) @ theta
    res = stats.ttest_ind(adj[t], adj[~t], equal_var=False)
    return float(adj[t].mean() - adj[~t].mean()), float(res.statistic), float(res.pvalue)


def assert_matches(app: ModelRouter, y: np.ndarray, t: np.ndarray, x: np.ndarray,
                   variant: str = "b") -> None:
    res = app.analysis().compare("y", variant=variant)
    assert res.adjusted
    diff, stat, p = reference(y, t, x)
    assert math.isclose(res.difference, diff, rel_tol=1e-8, abs_tol=1e-12)
    assert math.isclose(res.statistic, stat, rel_tol=1e-8)
    assert math.isclose(res.pvalue, p, rel_tol=1e-8, abs_tol=1e-15)


def test_header_read_at_first_exposure_only_equals_reference() -> None:
    """memory x A/B x 2 variants x user x fresh x valid: the first request's header is the
    unit's covariate (recorded at its first exposure), later requests' headers are ignored;
    the adjusted comparison equals the OLS + Welch reference to 1e-8."""
    clock = Clock()
    app = router(clock=clock)
    rng = np.random.default_rng(5)
    n = 400
    x = rng.normal(10.0, 2.0, n)
    x[::9] = np.nan  # no header on the first request: missing
    reqs: list[dict[str, str | bytes]] = []
    for i in range(n):
        first: dict[str, str | bytes] = {"x-user-id": f"u{i}"}
        if not np.isnan(x[i]):
            first["x-pre"] = repr(float(x[i]))
        reqs += [first, {"x-user-id": f"u{i}", "x-pre": "1e6"}]  # the 2nd: never read
    responses = get_all(app, reqs)
    assert all(r.status_code == 200 for r in responses)
    variants = [r.json()["variant"] for r in responses[::2]]
    t = np.array(variants) == "b"
    y = 0.7 * np.where(np.isnan(x), 10.0, x) + rng.normal(0, 1, n) + 0.3 * t
    for i in range(n):
        app.record_unit(f"u{i}", "y", float(y[i]))
    snap = app.experiment.store.snapshot()
    assert snap.units is not None
    ids = list(snap.units.ids or [])
    order = [ids.index(f"u{i}") for i in range(n)]
    np.testing.assert_array_equal(snap.units.covariates["pre"][order], x)
    seen = ~np.isnan(x)
    assert (snap.units.covariate_at["pre"][order][seen]
            == snap.units.first_seen[order][seen]).all()
    assert not snap.losses
    assert_matches(app, y, t, x)


def test_covariate_fn_called_once_per_unit_and_overrides_headers() -> None:
    """memory x A/B x 3 variants x user x fresh: covariate_fn runs on first exposures only
    (the request path of a returning unit pays nothing) and wins over the header; each
    treatment's comparison equals the reference on its two arms."""
    calls: list[str] = []

    def fn(scope: Mapping[str, Any]) -> Mapping[str, object]:
        user = dict(scope["headers"])[b"x-user-id"].decode()
        calls.append(user)
        k = int(user[1:])
        return {"pre2": float(k % 7), **({"pre": float(k)} if k % 2 else {})}

    app = router(("a", "b", "c"), covariate_fn=fn)
    n = 300
    reqs = [{"x-user-id": f"u{i}", "x-pre": "-1"} for i in range(n) for _ in range(3)]
    variants = [r.json()["variant"] for r in get_all(app, reqs)][::3]
    assert sorted(calls) == sorted(f"u{i}" for i in range(n))  # once each, 900 requests
    k = np.arange(n, dtype=float)
    pre = np.where(k % 2 == 1, k, -1.0)  # fn's value where it gives one, else the header's
    x = np.column_stack([pre, k % 7])
    rng = np.random.default_rng(8)
    y = 0.05 * pre + 0.4 * (k % 7) + rng.normal(0, 1, n)
    for i in range(n):
        app.record_unit(f"u{i}", "y", float(y[i]))
    v = np.array(variants)
    for treat in ("b", "c"):
        pick = (v == "a") | (v == treat)
        assert_matches(app, y[pick], v[pick] == treat, x[pick], variant=treat)


def test_hostile_values_are_dropped_counted_and_never_fail_the_request() -> None:
    """memory x A/B x user x hostile: NaN, inf, 1e300, 1e-300, text, 10 kB headers,
    non-latin bytes, numbers from covariate_fn that are bools, strings, NaN, undeclared or
    lone-surrogate names, a raising fn and one returning a list: every request answers 200,
    each dropped value is counted by reason in Snapshot.losses and said in the notes."""
    mode = {"fn": "ok"}

    def fn(scope: Mapping[str, Any]) -> Any:
        if mode["fn"] == "raise":
            raise RuntimeError("feature store down")
        if mode["fn"] == "list":
            return [("pre2", 1.0)]
        if mode["fn"] == "hostile":
            return {"pre2": float("nan"), "\ud800": 1.0, "nope": 2.0, 3: 4.0}
        if mode["fn"] == "text":
            return {"pre2": "3"}
        return {"pre2": True}  # a bool is a number (1.0), as record_covariate takes it

    app = router(covariate_fn=fn)
    bad_headers = [b"nan", b"inf", b"-inf", b"1e300", b"1e-300", b"abc", b"1" * 10_000,
                   b"\xff\xfe", b"0x10"]
    reqs: list[dict[str, str | bytes]] = [{"x-user-id": f"h{i}", "x-pre": raw}
                                          for i, raw in enumerate(bad_headers)]
    assert all(r.status_code == 200 for r in get_all(app, reqs))  # fn: ok, one value each
    for j, m in enumerate(("raise", "list", "hostile", "text")):
        mode["fn"] = m
        assert get_all(app, [{"x-user-id": f"f{j}", "x-pre": "2.5"}])[0].status_code == 200
    snap = app.experiment.store.snapshot()
    assert snap.losses == {"covariate_dropped:invalid_value": 5 + 1 + 1,  # nan inf -inf
                           # 1e300 1e-300; fn's NaN; fn's "3"
                           "covariate_dropped:not_a_number": 4,  # abc, 10 kB, bytes, 0x10
                           "covariate_dropped:reader_error": 2,
                           "covariate_dropped:undeclared": 3}
    assert snap.units is not None
    ids = list(snap.units.ids or [])
    pre, pre2 = snap.units.covariates["pre"], snap.units.covariates["pre2"]
    assert np.isnan(pre[[ids.index(f"h{i}") for i in range(len(bad_headers))]]).all()
    assert (pre2[[ids.index(f"h{i}") for i in range(len(bad_headers))]] == 1.0).all()
    assert [pre[ids.index(f"f{j}")] for j in range(4)] == [2.5] * 4  # the header still read
    for i in range(len(ids)):
        app.record_unit(ids[i], "y", float(i % 5))
    notes = " ".join(app.analysis().compare("y").notes)
    assert "16 covariate values read from requests" in notes
    assert "not a number" in notes and "covariate_fn raised" in notes


def test_refused_at_construction() -> None:
    """user x request level: a request-level experiment, an undeclared name, a callable
    without declared covariates and a non-callable are ConfigErrors naming the field."""
    with pytest.raises(ConfigError, match="covariate_headers: covariates are per unit"):
        RouterConfig(metrics=METRICS, level="request", covariate_headers={"pre": "x-pre"})
    with pytest.raises(ConfigError, match="covariate_fn: covariates are per unit"):
        RouterConfig(metrics=METRICS, level="request", covariate_fn=lambda s: {})
    with pytest.raises(ConfigError, match=r"covariate_headers \('clicks'\) must be a "
                                          r"covariate declared.*\['pre', 'pre2'\]"):
        RouterConfig(metrics=METRICS, covariate_headers={"clicks": "x-clicks"})
    with pytest.raises(ConfigError, match="covariate_fn .* no metric declares covariates"):
        RouterConfig(metrics={"y": "continuous"}, covariate_fn=lambda s: {})
    with pytest.raises(ConfigError, match=r"covariate_fn \(3\) must be a callable"):
        RouterConfig(metrics=METRICS, covariate_fn=3)
    with pytest.raises(ConfigError, match="covariate_headers.pre"):
        RouterConfig(metrics=METRICS, covariate_headers={"pre": "  "})
    assert RouterConfig(metrics=METRICS, covariate_headers={"pre": " X-Pre "}
                        ).covariate_headers == {"pre": "x-pre"}
    data = RouterConfig(metrics=METRICS, covariate_headers={"pre": "x-pre"}).as_dict()
    assert data["covariate_headers"] == {"pre": "x-pre"}  # the TOML [router] table's shape
    assert RouterConfig.from_dict(data).covariate_headers == {"pre": "x-pre"}


def test_without_readers_the_request_path_is_unchanged() -> None:
    """memory x A/B: no covariate field set, no reader (the middleware's request path is the
    one without covariates); headers named like covariates are ignored."""
    app = router(covariate_headers={})
    assert app._covariates is None  # noqa: SLF001 - the request path's own switch
    get_all(app, [{"x-user-id": "u1", "x-pre": "3"}])
    snap = app.experiment.store.snapshot()
    assert snap.units is not None and np.isnan(snap.units.covariates["pre"]).all()
    assert isinstance(router()._covariates, CovariateReader)  # noqa: SLF001


def test_restored_units_are_not_read_again(tmp_path: Path) -> None:
    """memory x A/B x user x restored from a snapshot: units exposed before the save keep
    their covariate and are not read again after the restore (their next request is not a
    first exposure); new units are read; the comparison equals the reference."""
    calls: list[str] = []

    def fn(scope: Mapping[str, Any]) -> Mapping[str, object]:
        calls.append(dict(scope["headers"])[b"x-user-id"].decode())
        return {}

    clock = Clock()
    first = router(clock=clock, covariate_fn=fn)
    n = 200
    x = np.arange(n, dtype=float) % 11
    v1 = [r.json()["variant"] for r in get_all(
        first, [{"x-user-id": f"u{i}", "x-pre": repr(float(x[i]))} for i in range(n // 2)])]
    path = tmp_path / "snap.npz"
    first.save(str(path))
    clock.t += 10.0
    second = router(clock=clock, covariate_fn=fn)
    second.restore(str(path))
    calls.clear()
    reqs = [{"x-user-id": f"u{i}", "x-pre": "99"} for i in range(n)]  # old units: "99" unused
    v2 = [r.json()["variant"] for r in get_all(second, reqs)]
    assert calls == [f"u{i}" for i in range(n // 2, n)]
    assert v2[:n // 2] == v1
    t = np.array(v2) == "b"
    x2 = np.where(np.arange(n) < n // 2, x, 99.0)
    rng = np.random.default_rng(3)
    y = 0.5 * x2 + rng.normal(0, 1, n) + 0.2 * t
    for i in range(n):
        second.record_unit(f"u{i}", "y", float(y[i]))
    assert_matches(second, y, t, x2)


def test_bandit_mode_reads_first_exposures() -> None:
    """memory x bandit mode x 2 variants x user: decisions come from the bandit; the reader
    still reads a unit once, at its first exposure, recorded at that exposure's time."""
    calls: list[str] = []

    def fn(scope: Mapping[str, Any]) -> Mapping[str, object]:
        calls.append("x")
        return {}

    clock = Clock()
    app = router(clock=clock, reward="click", mode="bandit", covariate_fn=fn)
    for i in range(60):
        clock.t += 1.0
        get_all(app, [{"x-user-id": f"u{i}", "x-pre": str(i)}] * 2)
    assert len(calls) == 60
    snap = app.experiment.store.snapshot()
    assert snap.units is not None
    assert (snap.units.covariate_at["pre"] == snap.units.first_seen).all()
    ids = list(snap.units.ids or [])
    assert [snap.units.covariates["pre"][ids.index(f"u{i}")] for i in range(60)] == [
        float(i) for i in range(60)]


def test_after_a_switch_to_bandit_and_at_session_level() -> None:
    """memory x switched at run time (A/B -> bandit) x session level: units first exposed
    after the switch are read once, at that exposure; units exposed before keep their value
    (their headers after the switch are not read)."""
    clock = Clock()
    app = router(clock=clock, reward="click", level="session", unit_header="x-session")
    get_all(app, [{"x-session": f"s{i}", "x-pre": str(i)} for i in range(20)])
    app.configure(mode="bandit")
    clock.t += 5.0
    get_all(app, [{"x-session": f"s{i}", "x-pre": str(100 + i)} for i in range(40)])
    snap = app.experiment.store.snapshot()
    assert snap.units is not None
    ids = list(snap.units.ids or [])
    rows = [ids.index(f"s{i}") for i in range(40)]
    assert list(snap.units.covariates["pre"][rows]) == [float(i) for i in range(20)] + [
        float(100 + i) for i in range(20, 40)]
    assert (snap.units.covariate_at["pre"][rows] == snap.units.first_seen[rows]).all()
    assert (snap.units.first_seen[rows[20:]] == 1005.0).all()


def test_a_store_refusal_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """memory x hostile: a store that refuses the value (here: raises) never fails the
    request; the value is counted as ``refused``."""
    app = router()
    store = app.experiment.store

    def refuse(unit: str, index: int, value: float, now: float) -> None:
        raise ConfigError("refused for the test")

    monkeypatch.setattr(store, "record_covariate", refuse)
    assert get_all(app, [{"x-user-id": "u1", "x-pre": "3"}])[0].status_code == 200
    assert store.snapshot().losses == {"covariate_dropped:refused": 1}
