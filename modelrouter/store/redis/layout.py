"""What the Redis modules share: the key layout of one experiment and reply decoding.

:class:`Layout` is the plain, immutable description of an experiment's keys and shape
(prefix, variants, metrics, level, segment dimensions) that the batch and snapshot code need;
the store builds it once from its public attributes, so those modules never see the store.
Bottom of the Redis package's import graph (``store -> batch, snapshot -> layout``).

The keys of one experiment, each shared by every worker and merged by addition or
first-writer-wins:

==========================  ===============================================================
``mr:{exp}:meta``           variants, metrics, level, segment dimensions (checked on connect)
``mr:{exp}:first``          unit -> JSON ``[variant, epoch, propensity, first_seen, [segs]]``
                            set if absent (batch.py): the first worker to flush a unit wins
``mr:{exp}:exposures``      unit -> exposures (totals the batch script adds to: batch.py)
``mr:{exp}:x:<metric>``     unit -> sum of values ("any" metrics clip >0)
``mr:{exp}:y:<metric>``     unit -> number of values
``mr:{exp}:cov:<name>``     unit -> JSON ``[value, recorded_at]`` of a covariate (set if
                            absent: the first value recorded wins; store/redis/covariates.py)
``mr:{exp}:requests``       variant -> routed requests
``mr:{exp}:counters``       uncounted, segment_overflow, dropped_exposures, dropped_values,
                            unattributed, forwarded_lost, forwarded_refused,
                            refused_batches, refused_requests/_exposures/_values
``mr:{exp}:refused``        reason -> batches Redis refused for it (see batch.py)
``mr:{exp}:epochs``         epoch -> JSON ``[mode, weights, started_at]`` (set if absent)
``mr:{exp}:groups``         request level: ``JSON [variant, epoch, [segs]] #k`` -> k-th sum
``mr:{exp}:events``         ``variant:metric:{n,sum,sumsq}`` per event (bandit counters)
``mr:{exp}:latency``        ``variant#slot`` -> requests, ``variant#sum`` -> latency_ms sum
                            (the latency histogram, store/histogram.py)
``mr:{exp}:fwd:<owner>``    values forwarded to a worker (control.py; ``inbox:<owner>``: the
                            list older versions use)
``mr:{exp}:lbl:<owner>``    shadow labels handed to a worker (control.py; ``labels:<owner>``:
                            the list older versions use; ``pushed:<id>:<owner>``: a push's
                            marker)
==========================  ===============================================================


Thread safety: immutable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelrouter.config.metrics import covariate_names
from modelrouter.store.histogram import LAYOUT

if TYPE_CHECKING:
    from modelrouter.config import MetricSpec

__all__ = ["FORMAT", "INBOX", "LABELS", "LEGACY_INBOX", "LEGACY_LABELS", "Layout", "text"]

FORMAT = "1"  # version of the key layout, checked in the meta hash
INBOX = "fwd:"  # + owner: a hash of values forwarded to that worker (control.py)
LEGACY_INBOX = "inbox:"  # + owner: the list older versions push to and read (control.py)
LABELS = "lbl:"  # + owner: a hash of labels handed to that worker (control.py)
LEGACY_LABELS = "labels:"  # + owner: the list older versions push labels to and read


@dataclass(frozen=True)
class Layout:
    """The keys ``<prefix><name>`` of one experiment and the shape of its statistics."""

    prefix: str  # "mr:{<experiment>}:" (one hash slot in a cluster)
    experiment: str
    variants: tuple[str, ...]
    metrics: dict[str, MetricSpec]
    level: str
    segment_dims: tuple[str, ...]
    segment_cap: int

    @classmethod
    def of(cls, experiment: str, variants: tuple[str, ...], metrics: dict[str, MetricSpec],
           level: str, segment_dims: tuple[str, ...], segment_cap: int) -> Layout:
        """The layout of ``experiment``'s keys."""
        return cls(f"mr:{{{experiment}}}:", experiment, variants, metrics, level, segment_dims,
                   segment_cap)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Metric names in index order."""
        return tuple(self.metrics)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """The declared covariates (``MetricSpec.covariates``), one hash each."""
        return covariate_names(self.metrics)

    @property
    def covariate_keys(self) -> list[str]:
        """The covariates' hash names (``cov:<name>``), for a snapshot's read."""
        return [f"cov:{c}" for c in self.covariate_names]

    @property
    def unit_level(self) -> bool:
        """Whether units are users or sessions (not requests)."""
        return self.level != "request"

    def meta(self) -> dict[str, str]:
        """The identity fields of the ``meta`` hash (two deployments merge only if equal)."""
        return {"format": FORMAT, "latency_layout": LAYOUT,
                "variants": json.dumps(list(self.variants)),
                "level": self.level, "segment_dims": json.dumps(list(self.segment_dims)),
                "metrics": json.dumps({n: [m.kind, m.aggregate]
                                       for n, m in self.metrics.items()}, sort_keys=True)}


def text(value: bytes | str | int | float) -> str:
    """A Redis reply value as text (bytes decoded as UTF-8, lone surrogates kept)."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)
