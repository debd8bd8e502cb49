"""``AnalysisData``: the one frozen value every analysis question is computed from.

Why it exists. Every question about an experiment (compare, segments, guardrails, SRM,
sequential, verdict, ...) needs the same few things: one snapshot of the store, the config,
the control, the rollback events and the bandit's status. They used to be read off the
:class:`~modelrouter.analysis.Analysis` facade, whose private helpers (``_spec``,
``_segment_codes``, ...) the modules called and whose methods they called back, so the
modules of this package imported each other in one cycle. Now:

- **one frozen snapshot**: the data are taken once and cannot change, so every answer computed
  from one ``AnalysisData`` is consistent with every other even while traffic continues;
- **public helpers**: what several modules need (the metric's spec, variant indices, segment
  filters, per-variant moments, the notes every comparison carries, the weights of each
  epoch) is a method here, not a private helper of the facade;
- **one-way imports**: this module imports no other analysis module; each analysis module
  takes an ``AnalysisData`` and imports only the analysis modules below it, and the facade
  (``analysis.py``) sits on top and only delegates.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from modelrouter.config import MetricSpec, RouterConfig
from modelrouter.exceptions import AnalysisError, UnknownMetricError
from modelrouter.stats.moments import Moments, grouped_moments
from modelrouter.store.protocol import loss_notes
from modelrouter.store.types import Snapshot

if TYPE_CHECKING:  # annotations only: the analysis needs neither package to run
    from modelrouter.bandit.status import BanditStatus
    from modelrouter.routing.promotion import Stages
    from modelrouter.routing.state import RollbackEvent

__all__ = ["AnalysisData", "ExperimentSource", "SnapshotSource"]


class SnapshotSource(Protocol):
    """A store, as far as the analysis reads it: it can take a consistent snapshot."""

    def snapshot(self) -> Snapshot:
        """A consistent copy of the store's statistics."""
        ...


class ExperimentSource(Protocol):
    """The public members of :class:`~modelrouter.routing.experiment.Experiment` that
    :meth:`AnalysisData.from_experiment` reads.

    A protocol rather than the class: the analysis depends on these five members only (mypy
    checks every caller's Experiment against them), and no import of routing's experiment
    module can close an import cycle through the analysis, whatever that module imports.
    """

    @property
    def store(self) -> SnapshotSource:
        """The experiment's store."""
        ...

    @property
    def config(self) -> RouterConfig:
        """The experiment's configuration."""
        ...

    @property
    def control(self) -> str:
        """The control variant."""
        ...

    @property
    def rollback_events(self) -> tuple[RollbackEvent, ...]:
        """Rollbacks and resumes so far, oldest first."""
        ...

    def bandit_status(self) -> BanditStatus | None:
        """The bandit's state now; None without a bandit."""
        ...


def _present_rows(codes: np.ndarray) -> list[tuple[int, ...]]:
    """The distinct rows of a (units, dims) array of non-negative codes, in lexicographic
    order: ``np.unique(codes, axis=0)``, computed on one mixed-radix key per row (a bincount
    of small integers, not a sort of a million rows: ~10x faster)."""
    if codes.shape[0] == 0:
        return []
    high = codes.max(axis=0).astype(np.int64) + 1
    if codes.min() < 0 or float(np.prod(high.astype(np.float64))) > max(4 * codes.shape[0], 2**20):
        return [tuple(int(c) for c in row) for row in np.unique(codes, axis=0)]
    key = np.zeros(codes.shape[0], dtype=np.int64)
    for d in range(codes.shape[1]):  # the first column is the most significant digit
        key = key * high[d] + codes[:, d]
    present = np.flatnonzero(np.bincount(key, minlength=int(np.prod(high))))
    rows = np.stack(np.unravel_index(present, tuple(int(h) for h in high)), axis=1)
    return [tuple(int(c) for c in row) for row in rows]


@dataclass(frozen=True, eq=False)
class AnalysisData:
    """One snapshot of an experiment and what every analysis question needs with it.

    ``variants`` defaults to the snapshot's. Equality is identity: two snapshots are never
    compared element by element.
    """

    snapshot: Snapshot
    config: RouterConfig
    control: str
    variants: tuple[str, ...] = ()
    rollback_events: tuple[RollbackEvent, ...] = ()
    bandit_status: BanditStatus | None = None
    stages: Stages | None = None  # the shadow candidates' stages (routing/promotion.py)

    def __post_init__(self) -> None:
        if not self.variants:
            object.__setattr__(self, "variants", self.snapshot.variants)

    @classmethod
    def from_experiment(cls, experiment: ExperimentSource) -> AnalysisData:
        """Snapshot an experiment's store, with its config, control, rollbacks and bandit."""
        snapshot = experiment.store.snapshot()
        return cls(snapshot, experiment.config, experiment.control, snapshot.variants,
                   tuple(experiment.rollback_events), experiment.bandit_status())

    # -- metrics and variants -------------------------------------------------------------
    def spec(self, metric: str) -> MetricSpec:
        """The declared metric's spec; :class:`UnknownMetricError` naming the declared ones."""
        try:
            return self.snapshot.metrics[metric]
        except KeyError:
            raise UnknownMetricError(f"metric {metric!r} is not declared; declared metrics are "
                                     f"{sorted(self.snapshot.metrics)}") from None

    def variant_index(self, variant: str) -> int:
        """The variant's position (its code in the store); AnalysisError for an unknown one."""
        try:
            return self.variants.index(variant)
        except ValueError:
            raise AnalysisError(f"variant ({variant!r}) is not one of "
                                f"{list(self.variants)!r}") from None

    @functools.cached_property
    def treatments(self) -> tuple[str, ...]:
        """The non-control variants ever served: a shadow candidate held at weight 0 in every
        epoch that no request reached (routing/promotion.py) is no treatment yet, so no
        verdict, comparison, guardrail or Bonferroni share is made for it. Computed once per
        snapshot (the units' scan is the last resort: 2 ms at 1M units)."""
        snap = self.snapshot
        served = np.asarray(snap.requests, dtype=np.int64) > 0
        for e in snap.epochs:
            served |= np.asarray(e.weights, dtype=np.float64)[:served.size] > 0
        if snap.units is not None and not served.all():
            served |= np.bincount(snap.units.variant, minlength=served.size)[:served.size] > 0
        return tuple(v for i, v in enumerate(self.variants)
                     if v != self.control and (i >= served.size or served[i]))

    def treatment(self, variant: str | None, what: str = "compare") -> str:
        """The treatment to compare: ``variant``, or the only non-control variant; validated.

        ``what`` names the question in the error (``compare() needs variant= ...``).
        """
        if variant is None:
            others = list(self.treatments)
            if len(others) != 1:
                raise AnalysisError(f"{what}() needs variant= with {len(self.variants)} "
                                    f"variants; choose one of {others!r}")
            return others[0]
        if self.variant_index(variant) == self.variant_index(self.control):
            raise AnalysisError(f"variant ({variant!r}) is the control; compare another variant")
        return variant

    # -- segments -------------------------------------------------------------------------
    def segment_codes(self, segment: Mapping[str, str]) -> list[tuple[int, int]]:
        """``(dimension index, value code)`` per filter; code -1 for a value never seen (so
        it matches no unit). The one resolver of segment filters: unit masks, request-level
        groups, bandit decisions and per-segment SRM all use it."""
        pairs = []
        for dim, value in segment.items():
            if dim not in self.snapshot.segment_dims:
                raise AnalysisError(f"segment dimension ({dim!r}) is not declared; declared "
                                    f"dimensions are {list(self.snapshot.segment_dims)!r}")
            values = self.snapshot.segment_values[dim]
            pairs.append((self.snapshot.segment_dims.index(dim),
                          values.index(value) if value in values else -1))
        return pairs

    def unit_mask(self, segment: Mapping[str, str] | None) -> np.ndarray | None:
        """Boolean mask of units in a segment (``{"platform": "mobile"}``), None for all."""
        if not segment:
            return None
        units = self.snapshot.units
        if units is None:
            raise AnalysisError("segment filters on request-level experiments use groups")
        mask = np.ones(units.variant.size, dtype=bool)
        for d, code in self.segment_codes(segment):
            mask &= units.segments[:, d] == code
        return mask

    def present_segments(self, by: Sequence[str]) -> list[dict[str, str]]:
        """The segment value combinations of ``by`` that have at least one unit, in code
        order (what segment analyses and per-segment guardrails iterate over)."""
        snap = self.snapshot
        dims = snap.segment_dims
        for d in by:
            if d not in dims:
                raise AnalysisError(f"segment dimension ({d!r}) is not declared; declared "
                                    f"dimensions are {list(dims)!r}")
        cols = [dims.index(d) for d in by]
        if snap.units is not None:
            combos = _present_rows(snap.units.segments[:, cols])
        else:
            combos = sorted({tuple(seg[c] for c in cols) for (_v, _e, seg) in snap.groups})
        return [{d: snap.segment_values[d][c] for d, c in zip(by, combo)} for combo in combos]

    # -- statistics -----------------------------------------------------------------------
    def moments(self, metric: str, segment: Mapping[str, str] | None = None) -> list[Moments]:
        """Per-variant moments of the metric's per-unit (x, y) pairs (request-level: of the
        (variant, epoch, segment) groups' counters), optionally within a segment."""
        spec = self.spec(metric)
        k = len(self.variants)
        units = self.snapshot.units
        if units is not None:
            mask = self.unit_mask(segment)
            codes, x, y = units.variant, units.x[metric], units.y[metric]
            if mask is not None:
                codes, x, y = codes[mask], x[mask], y[mask]
            if spec.aggregate == "any":
                x = (x > 0).astype(np.float64)
            return grouped_moments(codes, k, x, y)
        out = [Moments() for _ in range(k)]
        seg_filter = self.segment_codes(segment) if segment else None
        for (variant, _epoch, seg), (_n, per_metric) in self.snapshot.groups.items():
            if seg_filter is None or all(seg[d] == c for d, c in seg_filter):
                out[variant] = out[variant].merge(per_metric[metric])
        return out

    def epoch_weights(self, epochs: Sequence[int], what: str = "decisions") -> np.ndarray:
        """The routing weights in force in each of ``epochs``: shape (epochs, variants); the
        propensities of adaptive estimates and the expectation of sample-ratio checks.
        When an epoch number was recorded twice the last record wins; an epoch without a
        record is an AnalysisError (``what`` names what it has: decisions, units)."""
        weights = {e.epoch: e.weights for e in self.snapshot.epochs}
        try:
            return np.array([weights[e] for e in epochs], dtype=np.float64)
        except KeyError as exc:
            raise AnalysisError(f"epoch {exc.args[0]} has {what} but no recorded "
                                "weights") from None

    @property
    def adaptive(self) -> bool:
        """Whether the snapshot holds bandit decisions (then compare and SRM work per
        decision; see analysis/adaptive.py)."""
        snap = self.snapshot
        return bool(snap.decisions) and any(e.mode == "bandit" for e in snap.epochs)

    def epoch_modes(self) -> dict[int, str]:
        """The mode of every recorded epoch (the last record of an epoch number wins)."""
        return {e.epoch: e.mode for e in self.snapshot.epochs}

    @property
    def switched(self) -> bool:
        """Whether the snapshot holds both bandit decisions and A/B observations (units
        first exposed in an A/B epoch, or requests of A/B epochs): the experiment switched
        modes with data on both sides, and compare works per phase (analysis/phases.py)."""
        if not self.adaptive:
            return False
        ab = {e for e, mode in self.epoch_modes().items() if mode == "ab"}
        units = self.snapshot.units
        if units is not None:
            return bool(ab) and bool(np.isin(units.epoch, list(ab)).any())
        return any(n > 0 and key[1] in ab for key, (n, _m) in self.snapshot.groups.items())

    def notes(self) -> tuple[str, ...]:
        """What every comparison of this snapshot should say alongside its numbers: weight
        changes, uncounted requests, and what a remote store could not merge."""
        notes = []
        if len({e.weights for e in self.snapshot.epochs}) > 1:
            notes.append(f"weights changed over {len(self.snapshot.epochs)} epochs; units are "
                         "analysed in the variant of their first exposure")
        if self.snapshot.uncounted_requests:
            notes.append(f"{self.snapshot.uncounted_requests:,} requests without a unit id "
                         "were served but not counted")
        notes.extend(loss_notes(self.snapshot.losses))
        return tuple(notes)
