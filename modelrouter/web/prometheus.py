"""Prometheus text exposition (format 0.0.4) of an experiment, without prometheus_client.

:func:`render` writes everything from one store snapshot and the current allocation at scrape
time; nothing is counted on the request path for Prometheus alone. The latency histogram is the
store's own (store/histogram.py, updated in ``record_auto`` under the store's lock): its ``le``
boundaries are exact edges of the store's buckets, so the cumulative counts are exact, and with
a Redis store they cover every worker. Requests, errors and latencies are attributed to the
unit's variant (its first one, as in the analysis; they differ from the serving variant only for
units whose variant changed with the weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from modelrouter.store.histogram import EDGES_MS, PER_DECADE

if TYPE_CHECKING:
    from modelrouter.routing.experiment import Experiment
    from modelrouter.store.types import Snapshot

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_S", "label_value", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# ``le`` boundaries: store bucket edges at 1, ~2.5 and ~5 per decade from 1 ms to 10 s (the
# decades are exact; 2.5 and 5 are the nearest edges, 10**(46/115) = 2.512 and 10**(80/115) =
# 4.963), so each cumulative count is a sum of whole store buckets
_LE_INDEX: tuple[int, ...] = (*(2 * PER_DECADE + d * PER_DECADE + j for d in range(4)
                                for j in (0, 46, 80)), 6 * PER_DECADE)
LATENCY_BUCKETS_S: tuple[float, ...] = tuple(EDGES_MS[i] / 1000.0 for i in _LE_INDEX)


def label_value(value: object) -> str:
    """``value`` as the inside of a quoted label value: backslash, newline and double quote
    escaped as the exposition format requires (variant and metric names are user text)."""
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _num(value: float) -> str:
    """A sample value: integers without a fraction, NaN and infinities as Prometheus spells
    them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class _Writer:
    """Collects the exposition lines: a family's HELP and TYPE, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Start a metric family (its samples follow)."""
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, object], value: float) -> None:
        """One sample line, label values escaped."""
        inner = ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{inner}}} {_num(value)}" if inner else f"{name} {_num(value)}")


def _errors(snapshot: Snapshot) -> list[float]:
    """Requests recorded with ``error = 1`` per variant (5xx or an exception)."""
    k = len(snapshot.variants)
    if snapshot.units is not None:
        counts = np.bincount(snapshot.units.variant, weights=snapshot.units.x["error"],
                             minlength=k)
        return [float(c) for c in counts]
    out = [0.0] * k
    for (variant, _e, _s), (n, per_metric) in snapshot.groups.items():
        out[variant] += round(per_metric["error"].mean_x * n)
    return out


def _events(snapshot: Snapshot) -> dict[str, float]:
    """Recorded values per metric (automatic ones included), from a store snapshot."""
    if snapshot.units is not None:
        return {m: float(np.sum(snapshot.units.y[m])) for m in snapshot.metrics}
    out = dict.fromkeys(snapshot.metrics, 0.0)
    for n, per_metric in snapshot.groups.values():
        for m, moments in per_metric.items():
            out[m] += round(moments.mean_y * n)
    return out


def render(experiment: Experiment, feedback: Mapping[tuple[str, str], int] | None = None) -> str:
    """The exposition text: requests, errors and latency per variant, values recorded per
    metric, HTTP feedback outcomes per (metric, result), current weights and epoch."""
    snap = experiment.store.snapshot()
    alloc = experiment.allocation
    exp = experiment.config.experiment
    w = _Writer()
    w.family("modelrouter_requests_total", "counter",
             "Routed requests counted in the experiment, by variant.")
    for v, n in zip(snap.variants, snap.requests.tolist()):
        w.sample("modelrouter_requests_total", {"experiment": exp, "variant": v}, n)
    w.family("modelrouter_uncounted_requests_total", "counter",
             "Requests served without a unit id and left out of the experiment.")
    w.sample("modelrouter_uncounted_requests_total", {"experiment": exp},
             snap.uncounted_requests)
    w.family("modelrouter_errors_total", "counter",
             "Finished routed requests answered with a 5xx or an exception, by variant.")
    for v, e in zip(snap.variants, _errors(snap)):
        w.sample("modelrouter_errors_total", {"experiment": exp, "variant": v}, e)
    if snap.latency is not None:
        name = "modelrouter_request_duration_seconds"
        w.family(name, "histogram", "Latency of finished routed requests, by variant.")
        for v, counts, total in zip(snap.variants, snap.latency.counts, snap.latency.sum_ms):
            cumulative = np.cumsum(counts).tolist()  # [i]: requests <= EDGES_MS[i]
            for bound, i in zip(LATENCY_BUCKETS_S, _LE_INDEX):
                w.sample(f"{name}_bucket", {"experiment": exp, "variant": v, "le": repr(bound)},
                         cumulative[i])
            w.sample(f"{name}_bucket", {"experiment": exp, "variant": v, "le": "+Inf"},
                     cumulative[-1])
            w.sample(f"{name}_sum", {"experiment": exp, "variant": v}, float(total) / 1000.0)
            w.sample(f"{name}_count", {"experiment": exp, "variant": v}, cumulative[-1])
    w.family("modelrouter_metric_values_total", "counter",
             "Values recorded per metric (feedback, and the automatic latency_ms and error).")
    for m, n in _events(snap).items():
        w.sample("modelrouter_metric_values_total", {"experiment": exp, "metric": m}, n)
    if feedback is not None:
        w.family("modelrouter_http_feedback_total", "counter",
                 "Feedback received over HTTP, by metric and result "
                 "(recorded, duplicate, rejected).")
        for (metric, result), n in sorted(feedback.items()):
            w.sample("modelrouter_http_feedback_total",
                     {"experiment": exp, "metric": metric, "result": result}, n)
    w.family("modelrouter_weight", "gauge", "Current routing weight (allocation share).")
    for v, p in zip(alloc.variants, alloc.propensities):
        w.sample("modelrouter_weight", {"experiment": exp, "variant": v}, p)
    w.family("modelrouter_epoch", "gauge", "Current weights epoch (increments on every change).")
    w.sample("modelrouter_epoch", {"experiment": exp}, alloc.epoch)
    w.family("modelrouter_bandit_mode", "gauge", "1 when weights come from the bandit, 0 for A/B.")
    w.sample("modelrouter_bandit_mode", {"experiment": exp}, int(experiment.mode == "bandit"))
    w.family("modelrouter_units", "gauge", "Units in the experiment (requests at request level).")
    w.sample("modelrouter_units", {"experiment": exp}, snap.n_units)
    return "\n".join(w.lines) + "\n"
