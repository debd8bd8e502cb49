"""sequential_test: the decision at the latest recorded look (moved from test_sequential.py)."""

from __future__ import annotations

import pytest

from modelrouter.stats import SequentialTestResult, sequential_test
from modelrouter.stats.monitoring import sequential_test as direct


def test_sequential_test_decisions() -> None:
    r = sequential_test([1.0, 3.5], [0.2, 0.4])
    assert r.decision == "reject" and r.rejected_at == 2 and r.look == 2
    assert r.boundary == pytest.approx(3.357, abs=1e-3)  # rpact asOF, one-sided 0.025, look 2
    assert "Decision: reject" in r.explain()
    assert sequential_test([1.0, 1.5], [0.2, 0.4]).decision == "continue"
    assert sequential_test([1.0, 1.5, 1.9], [0.2, 0.4, 1.0]).decision == "final"
    assert sequential_test([-2.5], [1.0], sided=1).decision == "final"


def test_reexported_from_stats() -> None:
    assert direct is sequential_test
    assert isinstance(direct([0.5], [0.5]), SequentialTestResult)


def test_statistics_must_match_looks() -> None:
    with pytest.raises(ValueError, match="statistics must be 2 finite z values"):
        sequential_test([1.0], [0.5, 1.0])
