"""What a snapshot must agree on with the router restoring it: the identity checks.

A snapshot header records the identity of the experiment, everything that decides which
variant a unit is assigned or what a stored number means (:data:`IDENTITY`): ``experiment``,
``variants`` (names, in order: a unit's variant is stored as its index), ``control`` (it
anchors the assignment lanes), ``level``, ``salt_sha256`` (:func:`salt_digest`: the salt
itself is not written), ``metrics`` (kind and aggregate) and ``segment_dims``.
:func:`check_identity` compares them in that order and refuses the first that differs with a
:class:`StoreError` naming it: with another salt or control, returning users would be served
one variant and analysed under another. Files written before format version 3 lack
``salt_sha256`` and ``control`` (:data:`IDENTITY_SINCE_3`): the other fields are checked and
the missing ones returned, for the caller to report.

With a bandit on both sides, :func:`check_bandit_section` then compares the file's bandit
identity (:data:`BANDIT_IDENTITY`: reward metric, reward kind, reward costs, missing-reward
rule, policy; what the counters and weights mean) key by key, refuses the first that differs,
and validates the saved weights and active arms; with a bandit on one side only, nothing of
the bandit is restored and the returned note says why.

Kept apart from the file framing (store/persistence.py): these are questions about the
experiment, asked of a header already read and verified, before anything in the store changes.

Thread safety: pure functions of their arguments; :func:`experiment_identity` reads only the
store's immutable configuration (variants, level, metrics, segment dimensions), no lock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import StoreError

if TYPE_CHECKING:
    from modelrouter.store.memory import MemoryStore

__all__ = ["BANDIT_IDENTITY", "IDENTITY", "IDENTITY_SINCE_3", "check_bandit_section",
           "check_identity", "experiment_identity", "salt_digest"]

IDENTITY = ("experiment", "variants", "control", "level", "salt_sha256", "metrics",
            "segment_dims")
"""The header fields a restore compares, in this order (see the module docstring)."""
IDENTITY_SINCE_3 = ("salt_sha256", "control")
"""The identity fields files before format version 3 lack."""
BANDIT_IDENTITY = ("reward", "kind", "costs", "missing_reward", "policy")
"""The bandit identity fields a restore compares, in this order."""


def salt_digest(salt: str) -> str:
    """What a snapshot records of the assignment salt: a SHA-256 hex digest (domain-separated),
    enough to tell two salts apart without writing the salt into the file."""
    return hashlib.sha256(b"modelrouter salt\0" + salt.encode("utf-8", "surrogatepass")
                          ).hexdigest()


def experiment_identity(store: MemoryStore, experiment: str, salt: str, control: str
                        ) -> dict[str, Any]:
    """The :data:`IDENTITY` fields of this router and store, as a header records them."""
    return {"experiment": experiment, "variants": list(store.variants), "control": control,
            "level": store.level, "salt_sha256": salt_digest(salt),
            "metrics": {n: [m.kind, m.aggregate] for n, m in store.metrics.items()},
            "segment_dims": list(store.segment_dims)}


def check_identity(header: Mapping[str, Any], mine: Mapping[str, Any], name: str
                   ) -> tuple[str, ...]:
    """Compare a verified header (``_version`` set) with :func:`experiment_identity`'s
    ``mine``; StoreError naming the first field that differs. Returns the fields not checked
    because the file predates them (:data:`IDENTITY_SINCE_3`)."""
    unchecked = tuple(k for k in IDENTITY_SINCE_3
                      if header["_version"] < 3 and k not in header)
    for key, value in mine.items():
        if key in unchecked:
            continue
        theirs = header.get(key)
        if theirs != value:
            if key == "salt_sha256":
                raise StoreError(f"snapshot {name!r} belongs to another experiment: its salt "
                                 f"differs from this router's (SHA-256 {str(theirs)[:12]}... "
                                 f"in the file, {value[:12]}... here)")
            raise StoreError(f"snapshot {name!r} belongs to another experiment: {key} is "
                             f"{theirs!r} in the file, {value!r} here")
    return unchecked


def check_bandit_section(header: Mapping[str, Any], mine: Mapping[str, Any] | None, name: str,
                         k: int) -> tuple[dict[str, Any] | None, str]:
    """The file's bandit section checked against this router's bandit identity ``mine``:
    ``(section, note)``, section None when nothing of the bandit is restored; StoreError when
    the identities differ or the section is malformed."""
    theirs = header.get("bandit")
    if theirs is None:
        if mine is None:
            return None, ""
        why = ("written before format version 4" if header["_version"] < 4
               else "saved by a router without a bandit")
        return None, f"no bandit state in the file ({why}): the bandit starts fresh"
    if mine is None:
        reward = theirs.get("identity", {}).get("reward") if isinstance(theirs, dict) else None
        return None, (f"the file's bandit state (reward {reward!r}) was ignored: this router "
                      "has no bandit")
    try:
        identity = theirs["identity"]
        for key in BANDIT_IDENTITY:
            if identity.get(key) != mine.get(key):
                raise StoreError(f"snapshot {name!r} belongs to another experiment: the "
                                 f"bandit's {key} is {identity.get(key)!r} in the file, "
                                 f"{mine.get(key)!r} here")
        if "training" not in header:
            raise KeyError("training")
        section = {"identity": dict(identity), "weights": _weights(theirs["weights"], k),
                   "active": _mask(theirs["active"], k)}
    except StoreError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreError(f"snapshot {name!r} has a malformed bandit section: {exc!r}") from None
    return section, "restored: training counters, weights and active arms"


def _mask(value: Any, k: int) -> list[bool]:
    if (not isinstance(value, list) or len(value) != k or not all(isinstance(v, bool)
                                                                  for v in value)
            or not any(value)):
        raise ValueError(f"active mask {value!r}: {k} booleans, at least one true")
    return list(value)


def _weights(w: Any, k: int) -> dict[str, Any]:
    """The saved weights checked: k finite probabilities >= 0 summing to 1, k P(best), the
    allocator's active mask, epoch >= 0."""
    probs = [float(p) for p in w["probabilities"]]
    p_best = [float(p) for p in w["p_best"]]
    if (len(probs) != k or len(p_best) != k or not all(math.isfinite(p) and p >= 0
                                                       for p in probs + p_best)
            or abs(math.fsum(probs) - 1.0) > 1e-9):
        raise ValueError(f"weights {probs!r}: {k} finite probabilities >= 0 summing to 1")
    epoch = w["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"weights epoch {epoch!r}")
    return {"probabilities": probs, "p_best": p_best, "active": _mask(w["active"], k),
            "epoch": epoch, "created_at": float(w["created_at"]), "policy": str(w["policy"]),
            "min_share": float(w["min_share"])}
