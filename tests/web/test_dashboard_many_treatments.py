"""The dashboard with several treatments: the verdict lists every treatment (the recommended
one marked) and the sequential section shows each treatment's test at the split alpha."""

from __future__ import annotations

from modelrouter import ModelRouter, RouterConfig
from modelrouter.web.dashboard import render_dashboard
from tests.conftest import make_app
from tests.web.conftest import ADMIN, PREFIX, SECRET, Client


def test_verdict_and_sequential_sections_cover_every_treatment() -> None:
    router = ModelRouter(make_app(), {"control": lambda x: x, "b": lambda x: x,
                                      "c": lambda x: x, "d": lambda x: x},
                         RouterConfig(metrics={"click": "binary"}, primary="click",
                                      plan={"max_units": 2000}, secret=SECRET,
                                      admin_token=ADMIN))
    client = Client(router)
    for i, t in enumerate(client.tokens(120)):
        router.record_token(t, "click", i % 3 == 0)
    analysis = router.analysis()
    v = analysis.verdict()
    assert set(v.per_variant) == {"b", "c", "d"} and v.comparisons == 3
    html = render_dashboard(router, analysis, PREFIX, sections=("verdict", "sequential"))
    verdict = html[html.index('id="verdict"'):html.index('id="sequential"')]
    assert "verdicts" in verdict  # the per-treatment table
    for t in ("b", "c", "d"):
        assert f"<td>{t}</td>" in verdict, t
    sequential = html[html.index('id="sequential"'):]
    assert "not available" not in sequential
    for t in ("b", "c", "d"):
        assert f"{t} vs control" in sequential, t
    assert sequential.count("alpha=0.01667 instead of the plan") == 3
