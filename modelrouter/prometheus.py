"""Prometheus text exposition (format 0.0.4) of an experiment, without prometheus_client.

:class:`RequestMetrics` counts finished routed requests per variant in a fixed bucket array
(O(log buckets) per request, one short lock), because the store keeps per-unit sums and not the
per-request latency distribution a histogram needs. :func:`render` writes everything else from a
store snapshot and the current allocation at scrape time.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_S", "RequestMetrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds, as Prometheus convention wants; the hot path compares milliseconds
LATENCY_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS_MS = tuple(b * 1000.0 for b in LATENCY_BUCKETS_S)


class RequestMetrics:
    """Per-variant latency histogram and error count of finished routed requests.

    Thread-safe: :meth:`observe` and :meth:`snapshot` hold one lock for a few operations.
    """

    __slots__ = ("_buckets", "_errors", "_lock", "_sum_ms", "variants")

    def __init__(self, variants: Sequence[str]) -> None:
        self.variants = tuple(variants)
        k = len(self.variants)
        self._buckets = [[0] * (len(_BOUNDS_MS) + 1) for _ in range(k)]  # last: above all
        self._sum_ms = [0.0] * k
        self._errors = [0] * k
        self._lock = threading.Lock()

    def observe(self, variant: int, latency_ms: float, error: bool) -> None:
        """Count one finished request of variant index ``variant``."""
        b = bisect_left(_BOUNDS_MS, latency_ms)  # first bucket whose bound is >= the value
        with self._lock:
            self._buckets[variant][b] += 1
            self._sum_ms[variant] += latency_ms
            if error:
                self._errors[variant] += 1

    def snapshot(self) -> tuple[list[list[int]], list[float], list[int]]:
        """Copies of (per-bucket counts, latency sums in ms, error counts) per variant."""
        with self._lock:
            return ([list(b) for b in self._buckets], list(self._sum_ms), list(self._errors))


def _label(value: object) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, object], value: float) -> None:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{inner}}} {_num(value)}" if inner else f"{name} {_num(value)}")


def _events(snapshot: Any) -> dict[str, float]:
    """Recorded values per metric (automatic ones included), from a store snapshot."""
    if snapshot.units is not None:
        return {m: float(np.sum(snapshot.units.y[m])) for m in snapshot.metrics}
    out = dict.fromkeys(snapshot.metrics, 0.0)
    for n, per_metric in snapshot.groups.values():
        for m, moments in per_metric.items():
            out[m] += round(moments.mean_y * n)
    return out


def render(experiment: Any, requests: RequestMetrics | None,
           feedback: Mapping[tuple[str, str], int] | None = None) -> str:
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
    if requests is not None:
        buckets, sums, errors = requests.snapshot()
        w.family("modelrouter_errors_total", "counter",
                 "Finished routed requests answered with a 5xx or an exception, by variant.")
        for v, e in zip(requests.variants, errors):
            w.sample("modelrouter_errors_total", {"experiment": exp, "variant": v}, e)
        name = "modelrouter_request_duration_seconds"
        w.family(name, "histogram", "Latency of finished routed requests, by variant.")
        for v, counts, total in zip(requests.variants, buckets, sums):
            cumulative = 0
            for bound, c in zip((*LATENCY_BUCKETS_S, math.inf), counts):
                cumulative += c
                w.sample(f"{name}_bucket", {"experiment": exp, "variant": v,
                                            "le": _num(bound) if math.isinf(bound)
                                            else repr(bound)}, cumulative)
            w.sample(f"{name}_sum", {"experiment": exp, "variant": v}, total / 1000.0)
            w.sample(f"{name}_count", {"experiment": exp, "variant": v}, cumulative)
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
