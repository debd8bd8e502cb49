"""Shadow statistics as plain data, and their merge: how workers add their shadows up.

Every worker evaluates the shadows of the requests it serves, so with several workers each
holds a part of every shadow's statistics. All of them are additive: counts add, the paired
2x2 tables add, the running moments merge exactly (Chan, Golub & LeVeque 1983, in
:class:`~modelrouter.stats.paired_accumulator.PairedMoments`) and the reservoirs merge into
a uniform sample of the union (hypergeometric split,
:meth:`~modelrouter.stats.paired_accumulator.PairReservoir.merge`). A worker publishes
:func:`log_state` of its own log (JSON-safe: Redis, snapshot files), a reader merges every
worker's with :func:`merge_snapshots`.

The always-valid watches (:mod:`modelrouter.stats.paired_sequential`) are not additive: their
running maximum of the likelihood ratio and their intersected intervals follow one worker's
stream. Merged, a watch is the test of the union evaluated now: counts and moments add, and the
p-value and interval are those of the merged counts at this read, which is valid because
Ville's inequality holds at every time of the union's stream (any read time is one of them);
only the running minimum over earlier times is given up (a merge with an empty side keeps the
other's history whole, so one worker alone loses nothing).

The fields of :class:`~modelrouter.store.shadow_stats.ShadowStats` are converted by their type
(ints, counters, the accumulators, the watches), so a field added there is carried without a
change here, and a field of a type this module does not know fails loudly in the tests rather
than being dropped. Decoding refuses malformed data with :class:`~modelrouter.exceptions.StoreError`
(a published state is read from a shared store: never trusted blindly).

Thread safety: pure functions of their arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelrouter.exceptions import AnalysisError, StoreError
from modelrouter.stats.always_valid import mixing_variance
from modelrouter.stats.paired_accumulator import PairedCounts, PairedMoments, PairReservoir
from modelrouter.stats.paired_sequential import (
    DifferenceWatch,
    DiscordantWatch,
    discordant_interval,
    discordant_log_lr,
)
from modelrouter.store.shadow_stats import ShadowStats
from modelrouter.store.shadows import ShadowSnapshot

__all__ = ["FORMAT", "log_state", "merge_snapshots", "merge_stats", "snapshot_from_state",
           "stats_from_dict", "stats_to_dict"]

FORMAT = 1  # version of the state's shape; a reader refuses another one

_FIXED = ("name", "kind", "capacity")  # identity fields: equal in every worker's copy


def _encode(value: Any) -> Any:
    if isinstance(value, Counter):
        return {str(k): int(v) for k, v in value.items()}
    if isinstance(value, (PairedCounts, PairedMoments)):
        return value.to_dict()
    if isinstance(value, PairReservoir):
        return {"capacity": value.capacity, "seen": value.seen,
                "served": list(value.served), "shadow": list(value.shadow)}
    if isinstance(value, (DiscordantWatch, DifferenceWatch)):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, int):
        return value
    raise TypeError(f"shadow state: no encoding for {type(value).__name__}")


def _decode(like: Any, data: Any, seed: int) -> Any:
    """``data`` decoded to the type of ``like`` (the field's default in a fresh object)."""
    if isinstance(like, Counter):
        if not isinstance(data, Mapping):
            raise ValueError("a counter must be an object")
        return Counter({str(k): _count(v) for k, v in data.items()})
    if isinstance(like, PairedCounts):
        return PairedCounts.from_dict(dict(data))
    if isinstance(like, PairedMoments):
        m = PairedMoments.from_dict(dict(data))
        if m.n < 0 or not all(math.isfinite(x) for x in (m.mean_served, m.mean_shadow,
                                                           m.mean_d, m.m2_d)):
            raise ValueError("moments must be finite with n >= 0")
        return m
    if isinstance(like, PairReservoir):
        served = [float(x) for x in data["served"]]
        shadow = [float(x) for x in data["shadow"]]
        cap, seen = _count(data["capacity"]), _count(data["seen"])
        if len(served) != len(shadow) or len(served) > min(cap, seen):
            raise ValueError("a reservoir holds at most min(capacity, seen) pairs")
        return PairReservoir(cap, seen, np.random.default_rng(seed), served, shadow)
    if isinstance(like, (DiscordantWatch, DifferenceWatch)):
        try:
            return type(like)(**dict(data))
        except AnalysisError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(like, int) and not isinstance(like, bool):
        return _count(data)
    return data


def _merge_discordant(a: DiscordantWatch, b: DiscordantWatch) -> DiscordantWatch:
    """The union's binary watch now (see the module docstring)."""
    if b.served_only + b.shadow_only == 0:
        return dataclasses.replace(a)
    if a.served_only + a.shadow_only == 0:
        return dataclasses.replace(b)
    served, shadow = a.served_only + b.served_only, a.shadow_only + b.shadow_only
    ci = discordant_interval(served, shadow, a.confidence_level, a.prior)
    return dataclasses.replace(
        a, served_only=served, shadow_only=shadow,
        max_log_lr=max(0.0, discordant_log_lr(served, shadow, 0.5, a.prior)),
        low=ci.low, high=ci.high, looks=1, next_look=max(a.next_look, b.next_look))


def _merge_difference(a: DifferenceWatch, b: DifferenceWatch) -> DifferenceWatch:
    """The union's mSPRT now: one look at the merged mean and variance (module docstring)."""
    if b.n == 0:
        return dataclasses.replace(a, differences=list(a.differences),
                                   variances=list(a.variances))
    if a.n == 0:
        return _merge_difference(b, a)
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * b.n / n
    m2 = a.m2 + b.m2 + delta * delta * a.n * b.n / n
    tau2 = a.tau2 if a.n >= b.n and a.tau2 is not None else b.tau2 or a.tau2
    variance = m2 / (n - 1) / n if n >= 2 else math.nan
    if tau2 is None and n >= a.min_pairs and variance > 0.0 and math.isfinite(variance):
        tau2 = mixing_variance(horizon_variance=variance * n / a.horizon, alpha=a.alpha)
    return dataclasses.replace(a, n=n, mean=mean, m2=m2, tau2=tau2, differences=[],
                               variances=[], next_look=max(a.next_look, b.next_look),
                               looked_at=0)


def _count(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise ValueError(f"a count must be a non-negative integer, got {x!r}")
    return x


def stats_to_dict(stats: ShadowStats) -> dict[str, Any]:
    """Every field of ``stats`` as JSON-safe data."""
    return {f.name: _encode(getattr(stats, f.name)) for f in dataclasses.fields(stats)}


def stats_from_dict(data: Mapping[str, Any], seed: int = 0) -> ShadowStats:
    """The inverse of :func:`stats_to_dict` (StoreError when malformed); ``seed`` seeds the
    reservoirs' generators (merges draw from them)."""
    try:
        fresh = ShadowStats(str(data["name"]), data["kind"], _count(data["capacity"]))
        values = {f.name: _decode(getattr(fresh, f.name), data[f.name], seed + i)
                  for i, f in enumerate(dataclasses.fields(fresh)) if f.name not in _FIXED}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreError(f"malformed shadow statistics: {exc!r}"[:300]) from None
    return dataclasses.replace(fresh, **values)


def merge_stats(a: ShadowStats, b: ShadowStats) -> ShadowStats:
    """A new :class:`ShadowStats` holding both (same shadow: name, kind and capacity)."""
    for name in _FIXED:
        if getattr(a, name) != getattr(b, name):
            raise StoreError(f"cannot merge shadow statistics with different {name}: "
                             f"{getattr(a, name)!r} and {getattr(b, name)!r}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(a):
        if f.name in _FIXED:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, Counter):
            values[f.name] = x + y
        elif isinstance(x, DiscordantWatch):
            values[f.name] = _merge_discordant(x, y)
        elif isinstance(x, DifferenceWatch):
            values[f.name] = _merge_difference(x, y)
        elif isinstance(x, (PairedCounts, PairedMoments, PairReservoir)):
            values[f.name] = x.merge(y)
        elif isinstance(x, int) and not isinstance(x, bool):
            values[f.name] = x + y
        else:
            raise TypeError(f"shadow state: no merge for field {f.name!r}")
    return dataclasses.replace(a, **values)


def log_state(snapshot: ShadowSnapshot) -> dict[str, Any]:
    """One worker's shadows (a :meth:`ShadowLog.snapshot`) as JSON-safe data."""
    return {"format": FORMAT, "labels": dict(snapshot.labels),
            "stats": {n: stats_to_dict(s) for n, s in snapshot.stats.items()}}


def snapshot_from_state(state: Mapping[str, Any]) -> ShadowSnapshot:
    """The inverse of :func:`log_state` (a snapshot file's ``shadows`` part; StoreError when
    malformed)."""
    return merge_snapshots(ShadowSnapshot({}, {}), [state], keep_new=True)


def merge_snapshots(local: ShadowSnapshot, states: Iterable[Mapping[str, Any]], *,
                    keep_new: bool = False) -> ShadowSnapshot:
    """``local`` plus every other worker's published :func:`log_state`. A state of another
    format or with a malformed shadow raises StoreError; a shadow this worker does not have
    (another deployment's) is left out unless ``keep_new``, a shadow it has but another
    worker not yet is its own."""
    stats = dict(local.stats)
    labels = Counter(local.labels)
    for k, state in enumerate(states):
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise StoreError("published shadow statistics of another format: "
                             f"{str(state)[:80]!r}")
        try:
            labels.update({str(r): _count(c) for r, c in dict(state["labels"]).items()})
            items = dict(state["stats"]).items()
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"malformed shadow statistics: {exc!r}"[:300]) from None
        for name, data in items:
            if name in stats:
                stats[name] = merge_stats(stats[name], stats_from_dict(data, seed=1000 * k))
            elif keep_new:
                stats[str(name)] = stats_from_dict(data, seed=1000 * k)
    return ShadowSnapshot(stats, dict(labels))
