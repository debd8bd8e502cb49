"""Property: after A/B -> bandit -> A/B switches, every analysis entry point answers or raises
``AnalysisError``, and every answer renders (strict JSON, text); ``GET /stats`` never 500.

The machinery (values from denormals to 1e300, the documented record-time bounds, the entry
points, rendering) is tests/analysis/test_fuzz.py's; here the experiments switch modes: three
phases of 15 to 50 requests each (A/B, bandit, A/B), user or request level, 2 or 3 variants, a
reward of each kind, units that sometimes return (user level: then compare refuses the mixed
estimate with an AnalysisError, and ``phases()`` still answers). Memory store. The default run
is derandomized (``FAST_EXAMPLES`` examples); ``-m slow`` runs ``SLOW_EXAMPLES`` random ones.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter import ModelRouter, RouterConfig
from tests.analysis.test_fuzz import (
    ADMIN,
    GUARDRAILS,
    METRICS,
    PLATFORMS,
    REGIMES,
    SETTINGS,
    ask,
    entry_points,
    events,
    record,
)

FAST_EXAMPLES = 8  # ~0.4 s each: three phases through the real router
SLOW_EXAMPLES = 500

Request = tuple[int, int, list[tuple[str, Any]]]  # (platform, unit number, events)


async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached
    raise AssertionError("the fuzz only calls the HTTP surface")


@dataclass
class SwitchScenario:
    level: str
    variants: int
    reward: str
    regime: str
    phases: list[list[Request]]


def requests(regime: str) -> st.SearchStrategy[list[Request]]:
    return st.lists(st.tuples(st.integers(0, len(PLATFORMS) - 1), st.integers(0, 1000),
                              events(regime)), min_size=15, max_size=50)


switch_scenarios = st.sampled_from(sorted(REGIMES)).flatmap(lambda regime: st.builds(
    SwitchScenario,
    level=st.sampled_from(["user", "request"]),
    variants=st.sampled_from([2, 3]),
    reward=st.sampled_from(["conv", "revenue", "rate"]),
    regime=st.just(regime),
    phases=st.lists(requests(regime), min_size=3, max_size=3),
))


@contextlib.contextmanager
def switched(sc: SwitchScenario) -> Iterator[ModelRouter]:
    """The router after ``sc``'s A/B -> bandit -> A/B phases (also used by test_to_dict and
    test_report_text)."""
    names = ["control", "treatment", "other"][:sc.variants]
    config = RouterConfig(metrics=METRICS, level=sc.level, reward=sc.reward, mode="ab",
                          refresh_every=7, refresh_seconds=None, holdout=0.2,
                          missing_reward="omit", guardrails=GUARDRAILS, admin_token=ADMIN,
                          segments={"platform": "x-platform"}, min_segment_units=2,
                          primary="revenue", plan={"max_units": 60, "looks": 3})
    router = ModelRouter(app, {n: n for n in names}, config, rng=random.Random(0))
    exp = router.experiment
    assert exp.bandit is not None
    try:
        for mode, reqs in zip(("ab", "bandit", "ab"), sc.phases):
            exp.configure(mode=mode)
            for platform, unit, evs in reqs:
                d = exp.assign(f"u{unit}" if sc.level == "user" else None,
                               (PLATFORMS[platform],))
                for metric, value in evs:
                    record(router, d, metric, value)
                exp.bandit.wait_idle()
        yield router
    finally:
        exp.bandit.close()


def check_switch(sc: SwitchScenario) -> None:
    names = ["control", "treatment", "other"][:sc.variants]
    with switched(sc) as router:
        analysis = router.analysis()
        calls = entry_points(analysis)
        for metric in ("conv", "revenue", "rate", "latency_ms"):
            calls[f"phases {metric}"] = lambda m=metric: analysis.phases(m, names[1])
        ask(router, calls)


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(switch_scenarios)
def test_switched_entry_points_answer_or_raise_analysis_error(sc: SwitchScenario) -> None:
    check_switch(sc)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(switch_scenarios)
def test_switched_entry_points_answer_or_raise_analysis_error_slow(sc: SwitchScenario
                                                                   ) -> None:
    check_switch(sc)
