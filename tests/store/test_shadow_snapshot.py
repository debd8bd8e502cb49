"""Shadows survive a restart from a snapshot (memory store; the 'restored' cell of issue 15).

The shadows' statistics ride in the snapshot file's ``extras`` section (store/extras.py): a
router restored from it reports the same paired analysis as the one that saved it. A part that
is malformed or of another kind is logged and left fresh, never undoing the statistics' restore.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.exceptions import StoreError
from modelrouter.store.persistence import read_info
from tests.store.test_redis_shadows import Threshold, _wait, serve, unrouted_app


def _router(kind: str = "label") -> ModelRouter:
    config = RouterConfig(experiment="snap", salt="s", shadow_kind=kind)  # type: ignore[arg-type]
    return ModelRouter(unrouted_app, {"control": Threshold(0.5), "treatment": Threshold(0.6)},
                       config, shadows={"cand": Threshold(0.55)})


def _serve_and_label(router: ModelRouter, n: int, seed: int) -> None:
    xs = np.random.default_rng(seed).uniform(0, 1, n)
    ids = [serve(router, f"u{seed}-{i}", float(x)) for i, x in enumerate(xs)]
    _wait(lambda: router.shadows.pending == 0)  # type: ignore[union-attr]
    for did, x in zip(ids, xs, strict=True):
        assert router.record_label(did, int(x > 0.52))


def test_restored_router_reports_the_saved_shadow_analysis(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    a = _router()
    _serve_and_label(a, 300, 1)
    before = a.analysis().shadow("cand")
    a.experiment.save(path)
    b = _router()
    b.experiment.restore(path)
    after = b.analysis().shadow("cand")
    assert after.n_pairs == before.n_pairs == 300
    assert after.to_dict() == before.to_dict()
    # and it keeps counting on top of the restored statistics
    _serve_and_label(b, 50, 2)
    assert b.analysis().shadow("cand").n_pairs == 350
    assert b.analysis().shadow_data.labels["attached"] == 350  # type: ignore[union-attr]


def test_malformed_or_foreign_shadow_part_is_left_fresh(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "snap.bin"
    a = _router()
    _serve_and_label(a, 40, 3)
    a.experiment.save(path)
    b = _router("score")  # a kind the file's statistics were not made with
    with caplog.at_level(logging.WARNING, logger="modelrouter.store.persistence"):
        info = b.experiment.restore(path)
    assert info.units == read_info(path).units > 0  # the statistics are restored
    assert "'shadows' part was not restored" in caplog.text and "kind" in caplog.text
    assert b.analysis().shadow("cand").n_pairs == 0
    # shadows are arms held at weight 0 (routing/promotion.py): a router without the shadow
    # has other variants, and its restore is refused before anything changes
    plain = ModelRouter(unrouted_app, {"control": Threshold(0.5), "treatment": Threshold(0.6)},
                        RouterConfig(experiment="snap", salt="s"))
    with pytest.raises(StoreError, match="variants"):
        plain.experiment.restore(path)
    # a tampered part (a negative count) is refused by its decoder
    c = _router()
    c.experiment.extras.restore({"shadows": {"format": 1, "labels": {"attached": -1},
                                             "stats": {}}})
    assert c.analysis().shadow("cand").n_pairs == 0
    assert c.experiment.extras.restore({"shadows": json.loads(json.dumps(
        {"format": 1, "labels": {}, "stats": {}}))}) == ("shadows",)
