"""Fast synthetic snapshots for statistical simulations of the analysis layer.

Building the store's columns with numpy (instead of pushing every unit through
``Experiment.assign``) lets a test run thousands of seeded experiments in seconds while the
analysis code under test is exactly the production code.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelrouter import RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.store.histogram import LatencyHistogram
from modelrouter.store.memory import EpochInfo, Snapshot, UnitColumns


def snapshot(config: RouterConfig, variant: np.ndarray, segments: Mapping[str, np.ndarray],
             x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray] | None = None,
             variants: tuple[str, ...] = ("control", "treatment"),
             weights: tuple[float, ...] = (0.5, 0.5)) -> Analysis:
    """An Analysis of units with the given variant codes, segment codes and metric columns.

    ``segments`` maps each dimension to integer codes; value names are ``f"{dim}{code}"``.
    ``y`` defaults to one value per unit for every metric given in ``x``. With one latency
    per unit, the latency histogram is built from those values (as the store would).
    """
    n = variant.size
    dims = tuple(config.segments)
    seg_cols = [np.asarray(segments[d], dtype=np.int64) for d in dims]
    seg_values = {d: tuple(f"{d}{c}" for c in range(int(col.max()) + 1 if n else 0))
                  for d, col in zip(dims, seg_cols)}
    xs = {m: np.zeros(n) for m in config.metrics}
    ys = {m: np.zeros(n) for m in config.metrics}
    for m, col in x.items():
        xs[m] = np.asarray(col, dtype=float)
        ys[m] = np.ones(n) if y is None or m not in y else np.asarray(y[m], dtype=float)
    units = UnitColumns(variant=variant.astype(np.int64), epoch=np.zeros(n, dtype=np.int64),
                        propensity=np.asarray(weights)[variant], first_seen=np.zeros(n),
                        exposures=np.ones(n, dtype=np.int64),
                        segments=np.column_stack(seg_cols) if seg_cols else
                        np.zeros((n, 0), dtype=np.int64), x=xs, y=ys)
    snap = Snapshot(variants=variants, metrics=dict(config.metrics), level="user",
                    taken_at=0.0, segment_dims=dims, segment_values=seg_values,
                    epochs=(EpochInfo(0, "ab", weights, 0.0),),
                    requests=np.bincount(variant, minlength=len(variants)),
                    uncounted_requests=0, segment_overflow=0, units=units,
                    latency=LatencyHistogram.from_values(variant, xs["latency_ms"],
                                                         len(variants))
                    if "latency_ms" in x and np.all(ys["latency_ms"] == 1) else None)
    return Analysis(snap, config, variants[0])
