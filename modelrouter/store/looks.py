"""Recorded looks: the official interim analyses of a group-sequential test.

A group-sequential boundary depends on the information rates of every earlier look, so the
looks are part of the experiment's state (kept by the store, copied into every snapshot and
saved with it), not something an analysis recomputes. A :class:`Look` is plain data: numbers
and names only, so any store can persist it as JSON (:meth:`Look.to_dict` /
:meth:`Look.from_dict`).

Thread safety: a :class:`Look` is immutable; each store guards its list of looks with its own
lock (:func:`check_next_look` runs under it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Look", "check_next_look", "looks_of"]


@dataclass(frozen=True)
class Look:
    """One recorded look at ``metric`` (``variant`` against ``control``).

    ``information_rate`` is ``units / planned_units`` capped at 1; ``statistic`` the z statistic
    (oriented so that positive favours the treatment when the test is one-sided);
    ``difference`` and ``variance`` the estimate and its variance (for the always-valid test);
    ``boundary`` and ``alpha_spent`` the critical |z| at this look given all earlier looks and
    the cumulative alpha spent; ``horizon_variance`` the planned variance of the difference at
    the maximum number of units (it fixes the always-valid mixing variance); ``horizon`` says in
    words how ``planned_units`` was derived. ``planned_units`` and ``horizon_variance`` are
    frozen at look 1 and repeated by later looks; ``note`` records e.g. a capped rate.
    """

    number: int
    taken_at: float
    metric: str
    variant: str
    control: str
    units: int
    planned_units: int
    information_rate: float
    statistic: float
    difference: float
    variance: float
    boundary: float
    alpha_spent: float
    decision: str
    horizon_variance: float
    horizon: str = ""
    note: str = ""

    def __repr__(self) -> str:
        return (f"Look(number={self.number}, metric={self.metric!r}, variant={self.variant!r}, "
                f"information_rate={self.information_rate:.4f}, z={self.statistic:.4f}, "
                f"boundary={self.boundary:.4f}, alpha_spent={self.alpha_spent:.4g}, "
                f"decision={self.decision!r})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe apart from infinite boundaries, which JSON writes as Infinity)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Look:
        """Inverse of :meth:`to_dict` (for snapshot files and shared stores)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"look: unknown field(s) {unknown}")
        return cls(**data)


def looks_of(looks: Sequence[Look], metric: str, variant: str) -> tuple[Look, ...]:
    """The recorded looks of one comparison, in order."""
    return tuple(k for k in looks if k.metric == metric and k.variant == variant)


def check_next_look(looks: Sequence[Look], look: Look) -> None:
    """Raise ValueError unless ``look`` is the next look of its comparison (number and rate)."""
    earlier = looks_of(looks, look.metric, look.variant)
    if look.number != len(earlier) + 1:
        raise ValueError(f"look number ({look.number}) must be {len(earlier) + 1}: "
                         f"{len(earlier)} look(s) of {look.metric!r} for {look.variant!r} "
                         "are recorded")
    if earlier and not look.information_rate > earlier[-1].information_rate:
        raise ValueError(f"look information_rate ({look.information_rate:g}) must exceed the "
                         f"previous look's ({earlier[-1].information_rate:g})")
