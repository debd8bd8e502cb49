"""p-value adjustments against statsmodels.stats.multitest.multipletests."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from modelrouter.stats import adjust_pvalues

SM_NAME = {"bonferroni": "bonferroni", "holm": "holm", "bh": "fdr_bh"}


@pytest.mark.parametrize("method", ["bonferroni", "holm", "bh"])
@pytest.mark.parametrize("seed", range(10))
def test_matches_statsmodels_with_ties(method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 30))
    p = rng.beta(0.5, 2.0, size=m)
    if m > 2:  # ties, including ties at the boundary between steps
        p = np.round(p, 2)
        p[rng.integers(0, m, 2)] = p[0]
    ours = adjust_pvalues(p, method)  # type: ignore[arg-type]
    ref = multipletests(p, method=SM_NAME[method])[1]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)


def test_edge_cases() -> None:
    assert adjust_pvalues([]).size == 0
    np.testing.assert_array_equal(adjust_pvalues([0.0, 1.0, 1.0], "bh"), [0.0, 1.0, 1.0])
    assert adjust_pvalues([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])


@pytest.mark.parametrize(("p", "method", "match"), [
    ([0.1], "sidak", r"method \('sidak'\) must be one of 'bonferroni', 'holm', 'bh'"),
    ([0.1, 1.2], "holm", r"pvalues must lie in \[0, 1\], got \[0.1, 1.2\]"),
    ([float("nan")], "bh", r"pvalues must lie in \[0, 1\]"),
])
def test_bad_input(p: list[float], method: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        adjust_pvalues(p, method)  # type: ignore[arg-type]
