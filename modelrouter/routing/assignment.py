"""Deterministic assignment of units to variants.

The hash (a written spec; the README repeats it with test vectors)::

    bucket(salt, unit) = uint64_be(BLAKE2b(utf8(salt) || 0x00 || utf8(unit), digest_size=8)) / 2**64

``bucket`` lies in ``[0, 1)``, depends only on the UTF-8 bytes of salt and unit id (never on the
process, the platform, ``PYTHONHASHSEED`` or the release), and is uniform for any id set.

Buckets map to variants through :class:`Allocation`. Each non-control variant owns a *lane*
anchored at a fixed point (treatment ``j`` of ``K-1`` starts at ``(j-1)/(K-1)``) and fills it
from there by its weight; the control owns what is left. So ramping one variant from 10% to 20%
keeps the first 10% where they were and moves only the units it must (from the control). When a
weight outgrows its lane (``w_j > 1/(K-1)``) the layout falls back to contiguous ranges.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence

from modelrouter.config.extensions import install
from modelrouter.exceptions import ConfigError

__all__ = ["Allocation", "bucket"]

_TWO_64 = float(2**64)


def bucket(salt: str, unit: str) -> float:
    """The unit's position in ``[0, 1)`` for this salt (see the module docstring for the spec)."""
    digest = hashlib.blake2b(salt.encode("utf-8") + b"\x00" + unit.encode("utf-8"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


class Bucketer:
    """:func:`bucket` with the salt's hash state computed once (about 30% faster per call).

    ``_prefix`` (``utf8(salt) || 0x00``) is what the compiled twin hashes the id after
    (routing/assignment_c.pyx: BLAKE2b on the stack, no hashlib object per call)."""

    __slots__ = ("_base", "_prefix")

    def __init__(self, salt: str) -> None:
        self._prefix = salt.encode("utf-8") + b"\x00"
        self._base = hashlib.blake2b(self._prefix, digest_size=8)

    def __call__(self, unit: str) -> float:
        h = self._base.copy()
        h.update(unit.encode("utf-8"))
        return int.from_bytes(h.digest(), "big") / _TWO_64


class Allocation:
    """Immutable map from a point ``u`` in ``[0, 1)`` to a variant index, by weights.

    ``weights`` are in variant order and sum to 1; ``propensities[i]`` is the probability that a
    uniform ``u`` lands on variant ``i``, i.e. its weight. Instances are replaced, never mutated,
    so the request path can read one without a lock.
    """

    __slots__ = ("_bounds", "_owners", "control", "epoch", "propensities", "variants")

    def __init__(self, variants: Sequence[str], weights: Mapping[str, float],
                 control: str | None = None, epoch: int = 0) -> None:
        if len(variants) < 2:
            raise ConfigError(f"variants ({list(variants)!r}) must name at least two variants")
        control = variants[0] if control is None else control
        if control not in variants:
            raise ConfigError(f"control ({control!r}) is not a variant; variants are "
                              f"{list(variants)!r}")
        self.variants: tuple[str, ...] = tuple(variants)
        self.control = control
        self.epoch = epoch
        self.propensities: tuple[float, ...] = tuple(float(weights[v]) for v in variants)
        c = self.variants.index(control)
        others = [i for i in range(len(variants)) if i != c]
        lane = 1.0 / len(others)
        spans: list[tuple[float, float, int]] = []
        if all(self.propensities[i] <= lane + 1e-12 for i in others):
            for j, i in enumerate(others):
                start = j * lane
                spans.append((start, start + self.propensities[i], i))
        else:  # contiguous: treatments first, control last
            start = 0.0
            for i in others:
                spans.append((start, start + self.propensities[i], i))
                start += self.propensities[i]
        bounds: list[float] = []
        owners: list[int] = []
        pos = 0.0
        for start, end, i in spans:
            if start > pos:
                bounds.append(start)
                owners.append(c)
            if end > start:
                bounds.append(end)
                owners.append(i)
            pos = end
        bounds.append(float("inf"))  # the rest, up to 1, is the control's
        owners.append(c)
        self._bounds = tuple(bounds)
        self._owners = tuple(owners)

    def choose(self, u: float) -> int:
        """Index of the variant owning point ``u`` in ``[0, 1)``; O(log K)."""
        return self._owners[bisect_right(self._bounds, u)]

    def layout(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """``(bounds, owners)``: :meth:`choose` is ``owners[bisect_right(bounds, u)]`` (the
        compiled store, store/hot_c.pyx, reads it once per allocation)."""
        return self._bounds, self._owners

    @property
    def weights(self) -> dict[str, float]:
        """The weights as a dict keyed by variant."""
        return dict(zip(self.variants, self.propensities))

    def __repr__(self) -> str:
        w = ", ".join(f"{v}={p:.4g}" for v, p in zip(self.variants, self.propensities))
        return f"Allocation({w}, control={self.control!r}, epoch={self.epoch})"


# the compiled twin of Bucketer.__call__ (routing/assignment_c.pyx), when it was built
install(Bucketer, "__call__", "modelrouter.routing.assignment_c")
