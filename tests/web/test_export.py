"""The export (issue 14 part 2): ``GET {prefix}/export`` streamed, the rows of store/export.py,
``Analysis.to_frame()``, Parquet, and the round trip: exported rows re-analysed with scipy and
statsmodels give ``compare()``'s numbers to 1e-9.

Cells: store memory and redis (two workers); mode ab and bandit;
variants 2 and 3; level user and request; life fresh and restored; input: hostile unit ids
(commas, quotes, non-ASCII, a leading "=") and missing values.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from modelrouter import ModelRouter, RouterConfig
from modelrouter.asgi.types import Message
from modelrouter.store.export import CHUNK_ROWS, csv_chunks, export_columns, write_parquet
from tests.conftest import make_app
from tests.web.conftest import ADMIN, BEARER, PREFIX, Client

pd = pytest.importorskip("pandas")
sm_prop = pytest.importorskip("statsmodels.stats.proportion")

METRICS = {"click": "binary", "revenue": "continuous",
           "spend": {"kind": "continuous", "aggregate": "mean"}}
HOSTILE = ['a,b', 'quote"d', "ünï-çødé", "=1+1", "semi;colon", "tab-less 'x'"]


def _router(level: str = "user", variants: tuple[str, ...] = ("control", "treatment"),
            **config: Any) -> ModelRouter:
    return ModelRouter(make_app(), {v: (lambda x: x) for v in variants},
                       RouterConfig(experiment="exp14", metrics=METRICS, level=level,
                                    admin_token=ADMIN, segments={"platform": None}, **config))


def _fill(router: ModelRouter, n: int, seed: int = 3) -> None:
    """``n`` units with clicks, revenue (heavy-ish tail) and per-event spend; treatment lifts."""
    rng = random.Random(seed)
    exp = router.experiment
    for i in range(n):
        unit = HOSTILE[i] if i < len(HOSTILE) else f"user-{i}"
        platform = ("ios", "android", "web")[i % 3]
        d = exp.assign(unit, (platform,))
        lift = 0.0 if d.variant == "control" else 0.08
        if rng.random() < 0.7:
            exp.record(d, "click", int(rng.random() < 0.3 + lift))
        if rng.random() < 0.5:
            exp.record(d, "revenue", round(rng.expovariate(0.1) * (1 + lift), 2))
        for _ in range(rng.randrange(3)):
            exp.record(d, "spend", rng.random() * 10)


def _csv(router: ModelRouter) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(
        b"".join(csv_chunks(router.experiment.store.snapshot())).decode("utf-8"))))


# -- the endpoint -------------------------------------------------------------------------
def _raw(router: ModelRouter, path: str, headers: dict[str, str], query: str = ""
         ) -> list[Message]:
    """Every ASGI message the router sends for ``GET path?query``."""
    sent: list[Message] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode(), "client": ("127.0.0.1", 1),
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(router(scope, receive, send))
    return sent


def test_export_endpoint_streams_chunks_equal_to_the_rows() -> None:
    router = _router()
    _fill(router, 2 * CHUNK_ROWS + 17)
    messages = _raw(router, f"{PREFIX}/export", BEARER, "format=csv")
    start, bodies = messages[0], messages[1:]
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-type"].startswith(b"text/csv")
    assert b"content-length" not in dict(start["headers"])  # streamed, not sent whole
    assert len(bodies) >= 4 and all(m["more_body"] for m in bodies[:-1])
    assert bodies[-1]["more_body"] is False
    body = b"".join(m["body"] for m in bodies)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 2 * CHUNK_ROWS + 17
    assert rows == _csv(router)
    assert [r["unit"] for r in rows[:len(HOSTILE)]] == HOSTILE  # quoted and read back as sent


@pytest.mark.parametrize(("headers", "query", "status"), [
    ({}, "", 401), ({"authorization": "Bearer wrong-token-0123456789"}, "", 403),
    (BEARER, "format=parquet", 422), (BEARER, "format=csv&format=csv", 422)])
def test_export_endpoint_refusals(headers: dict[str, str], query: str, status: int) -> None:
    router = _router()
    _fill(router, 10)
    r = Client(router).get(f"{PREFIX}/export" + (f"?{query}" if query else ""), headers=headers)
    assert r.status == status and "error" in r.json()


def test_export_endpoint_off_without_admin_token_and_post_is_405() -> None:
    router = ModelRouter(make_app(), {"a": 1, "b": 2},
                         RouterConfig(metrics=METRICS, secret="s" * 32))
    assert Client(router).get(f"{PREFIX}/export", headers=BEARER).status == 404
    assert Client(_router()).post(f"{PREFIX}/export", headers=BEARER).status == 405


def test_stats_text_is_the_report() -> None:
    router = _router(primary="click")
    _fill(router, 300)
    r = Client(router).get(f"{PREFIX}/stats?format=text", headers=BEARER)
    assert r.status == 200 and r.header("content-type").startswith("text/plain")
    report = router.analysis().report()
    # the header names the process; everything else is the same text
    assert r.body.decode().splitlines()[1:] == report.splitlines()[1:]
    assert "verdict: " in r.body.decode()
    assert Client(router).get(f"{PREFIX}/stats?format=xml", headers=BEARER).status == 422
    assert Client(router).get(f"{PREFIX}/stats?format=text").status == 401


# -- the rows -----------------------------------------------------------------------------
def test_rows_hold_exact_values_and_empty_cells_for_missing(tmp_path: Path) -> None:
    router = _router()
    _fill(router, 400)
    snap = router.experiment.store.snapshot()
    rows = _csv(router)
    units = snap.units
    assert units is not None and units.ids is not None
    assert [r["unit"] for r in rows] == list(units.ids)
    assert all(r["variant"] in ("control", "treatment") for r in rows)
    for i in (0, 7, 399):  # every float read back is the stored float, bit for bit
        assert float(rows[i]["revenue.sum"]) == units.x["revenue"][i]
        assert float(rows[i]["spend.sum"]) == units.x["spend"][i]
        assert int(rows[i]["spend.count"]) == units.y["spend"][i]
        assert float(rows[i]["first_exposure_s"]) == units.first_seen[i]
        assert float(rows[i]["propensity"]) == units.propensity[i]
        iso = pd.Timestamp(rows[i]["first_exposure"])
        assert abs(iso.timestamp() - units.first_seen[i]) < 1e-6
    assert "nan" not in b"".join(csv_chunks(snap)).decode().lower().split(",")
    # a producer without ids, a NaN float: empty cells, never "nan"
    import dataclasses

    bare = dataclasses.replace(snap, units=dataclasses.replace(
        units, ids=None, propensity=np.where(np.arange(units.variant.size) == 0, np.nan,
                                              units.propensity)))
    first = next(csv.DictReader(io.StringIO(b"".join(csv_chunks(bare)).decode())))
    assert first["unit"] == "" and first["propensity"] == ""


def test_request_level_exports_group_sums() -> None:
    router = _router(level="request")
    _fill(router, 600)
    rows = _csv(router)
    snap = router.experiment.store.snapshot()
    assert {tuple(k[:2]) for k in snap.groups} == {
        (("control", "treatment").index(r["variant"]), int(r["epoch"])) for r in rows}
    assert sum(int(r["n"]) for r in rows) == 600
    assert "unit" not in rows[0] and "revenue.sum_sq" in rows[0]
    # Welch from the exported group sums = compare() (request level: a request is the unit)
    res = router.analysis().compare("revenue")
    moments = {}
    for v in ("control", "treatment"):
        mine = [r for r in rows if r["variant"] == v]
        n = sum(int(r["n"]) for r in mine)
        s = math.fsum(float(r["revenue.sum"]) for r in mine)
        ss = math.fsum(float(r["revenue.sum_sq"]) for r in mine)
        moments[v] = (s / n, math.sqrt((ss - s * s / n) / (n - 1)), n)
    ref = stats.ttest_ind_from_stats(*moments["treatment"], *moments["control"],
                                     equal_var=False)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-9)


# -- the round trip -----------------------------------------------------------------------
@pytest.mark.parametrize("variants", [("control", "treatment"), ("control", "b", "c")])
def test_round_trip_scipy_statsmodels_equal_compare(variants: tuple[str, ...]) -> None:
    """Exported rows (CSV text, parsed back) re-analysed independently: Welch's t-test
    (scipy.stats.ttest_ind, equal_var=False) on per-unit revenue sums and the pooled
    two-proportion z-test (statsmodels proportions_ztest) on the conversion flags give
    compare()'s statistic, p-value and difference to 1e-9."""
    router = _router(variants=variants)
    _fill(router, 3000, seed=11)
    df = pd.read_csv(io.StringIO(b"".join(csv_chunks(router.experiment.store.snapshot()))
                                 .decode()), keep_default_na=False,
                     dtype={"unit": str, "segment:platform": str})
    analysis = router.analysis()
    for treatment in variants[1:]:
        c, t = df[df.variant == "control"], df[df.variant == treatment]
        welch = stats.ttest_ind(t["revenue.sum"], c["revenue.sum"], equal_var=False)
        res = analysis.compare("revenue", treatment)
        assert res.statistic == pytest.approx(welch.statistic, rel=1e-9)
        assert res.pvalue == pytest.approx(welch.pvalue, rel=1e-9)
        assert res.difference == pytest.approx(
            t["revenue.sum"].mean() - c["revenue.sum"].mean(), rel=1e-9)
        z, p = sm_prop.proportions_ztest([t["click.any"].sum(), c["click.any"].sum()],
                                         [len(t), len(c)])
        res = analysis.compare("click", treatment)
        assert res.statistic == pytest.approx(z, rel=1e-9)
        assert res.pvalue == pytest.approx(p, rel=1e-9)
    assert analysis.to_frame()["revenue.sum"].tolist() == df["revenue.sum"].tolist()


def test_to_frame_and_parquet_hold_the_same_values(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    router = _router()
    _fill(router, 500)
    frame = router.analysis().to_frame()
    snap = router.experiment.store.snapshot()
    names = [c.name for c in export_columns(snap)]
    assert list(frame.columns) == names
    assert str(frame["first_exposure"].dtype).startswith("datetime64")
    assert frame["unit"].tolist() == list(snap.units.ids)  # type: ignore[union-attr]
    write_parquet(snap, tmp_path / "rows.parquet")
    table = pq.read_table(tmp_path / "rows.parquet")
    assert table.column_names == names
    for name in ("unit", "variant", "revenue.sum", "spend.count", "click.any", "propensity",
                 "first_exposure_s", "segment:platform"):
        assert table.column(name).to_pylist() == frame[name].tolist()
    assert not (tmp_path / "rows.parquet.part").exists()


def test_missing_extras_name_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    router = _router()
    _fill(router, 20)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"modelrouter\[pandas\]"):
        router.analysis().to_frame()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"modelrouter\[parquet\]"):
        write_parquet(router.experiment.store.snapshot(), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_restored_router_exports_the_same_rows(tmp_path: Path) -> None:
    router = _router()
    _fill(router, 300)
    router.save(str(tmp_path / "s.mrsnap"))
    back = _router()
    back.restore(str(tmp_path / "s.mrsnap"))
    assert _csv(back) == _csv(router)


def test_bandit_rows_carry_each_units_propensity_and_epoch() -> None:
    """Cell: mode bandit (user level): a unit's row holds the propensity and epoch of its
    first exposure, as the decision said."""
    router = _router(mode="bandit", reward="click", refresh_every=20, refresh_seconds=None)
    seen = {}
    rng = random.Random(2)
    for i in range(200):
        d = router.experiment.assign(f"u{i}", ("web",))
        seen[f"u{i}"] = (d.variant, d.propensity)
        router.record(d, "click", int(rng.random() < (0.5 if d.variant == "treatment" else 0.2)))
        if i % 20 == 19:
            router.experiment.bandit.wait_idle()  # type: ignore[union-attr]  # refreshes ran
    rows = _csv(router)
    assert len({r["epoch"] for r in rows}) > 1  # the weights moved during the run
    for r in rows:
        assert (r["variant"], float(r["propensity"])) == seen[r["unit"]]


def test_redis_store_export_names_every_workers_units(tmp_path: Path) -> None:
    """Cell: store redis: two experiments (workers) on one Redis; the endpoint of one exports
    the units of both, with their ids and sums."""
    pytest.importorskip("redis")
    from tests.store.conftest import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("redis-server binary not found")
    server = RedisServer(tmp_path)
    server.start()
    try:
        one, two = (_router(store=server.url) for _ in range(2))
        try:
            for i in range(40):
                worker = (one, two)[i % 2]
                d = worker.experiment.assign(f"u{i}", ("ios",))
                worker.record(d, "revenue", float(i))
            one.flush()
            two.flush()
            r = Client(one).get(f"{PREFIX}/export", headers=BEARER)
            assert r.status == 200
            rows = list(csv.DictReader(io.StringIO(r.body.decode())))
            assert {row["unit"]: float(row["revenue.sum"]) for row in rows} == {
                f"u{i}": float(i) for i in range(40)}
        finally:
            one.experiment.close()
            two.experiment.close()
    finally:
        server.stop()
