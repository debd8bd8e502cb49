"""Snapshot files of the in-memory store: versioned, checksummed, atomic, never pickled.

Format (version 4), all integers big-endian::

    offset 0   8 bytes   magic  b"MRSNAP\\r\\n"  (the CR/LF pair catches text-mode mangling)
           8   4 bytes   format version (uint32, currently 4)
          12   8 bytes   header length H (uint64)
          20   H bytes   header: UTF-8 JSON object (see below)
        20+H   P bytes   payload: raw little-endian arrays, back to back
      20+H+P  32 bytes   SHA-256 of every byte before it

The header holds the identity of the experiment, everything that decides which variant a unit
is assigned or what a stored number means: ``experiment``, ``variants`` (names, in order: a
unit's variant is stored as its index), ``control`` (it anchors the assignment lanes),
``level``, ``salt_sha256`` (SHA-256 of ``modelrouter salt\0`` + the salt: the salt itself is
not written), ``metrics`` (kind and aggregate) and ``segment_dims``. A router restoring a file
compares them in that order and refuses the first that differs with a :class:`StoreError`
naming it, before anything changes: with another salt or control, returning users would be
served one variant and analysed under another. Not identity: weights and mode (the file's
epochs record them), the primary metric, guardrails, plan and thresholds, which judge the data
and may change between runs.

Files written before version 3 have no ``salt_sha256`` and no ``control``: they are still
restored (an upgrade must not strand its own snapshot), with the other fields checked, a
warning logged and ``SnapshotInfo.unchecked == ("salt", "control")``. The first save after the
upgrade writes version 3.

The header also holds the small state (requests per variant,
uncounted requests, segment overflow, segment value tables, epochs, request-level group keys)
and ``arrays``: ``[name, dtype, shape, offset, nbytes]`` per array of the payload, with dtypes
from a fixed whitelist. Unit ids are one UTF-8 blob plus a ``uint32`` length per unit.

Version 4 adds the bandit's state, two optional header sections written when the router has a
bandit (a ``reward``): ``training`` (the decision tracker's training counters, exact, and
its updates not yet taken by a refresh; store/state.py) and ``bandit``: ``identity`` (reward
metric, reward kind, reward costs, missing-reward rule and bandit policy: what the counters
and weights mean), ``weights`` (the allocator's weights in force: probabilities, P(best),
active mask, allocator epoch, policy, min_share) and ``active`` (the arms the operator has not
paused). A restore into a router with a bandit compares ``identity`` key by key (after the
experiment identity) and refuses the first that differs, naming it; then the counters go
back into the tracker and the posterior, and routing continues by the saved weights
(routing/state.py). A file without these sections (an A/B router's, or one written before
version 4) leaves the bandit fresh: ``SnapshotInfo.bandit`` says so. A file with them
restored into a router without a bandit: the sections are ignored (the statistics still
mean the same), ``SnapshotInfo.bandit`` says so.

Version 3 adds ``salt_sha256`` and ``control`` to the identity (above). Version 2 added the
per-variant latency histogram (arrays ``latency_hist``, ``latency_sum``
and its bucket layout ``latency_layout`` in the header, see store/histogram.py). Version 1
files still load, with an empty histogram: quantile guardrails then see only the requests
recorded after the restore (the means keep every request). A file whose histogram layout
differs from this release's is refused.

Reading parses bytes and numbers only (``np.frombuffer`` with a whitelisted dtype): a snapshot
cannot run code. Every check (checksum, version, identity, then the state's own checks in
:meth:`MemoryStore.load <modelrouter.store.memory.MemoryStore.load>`) passes before anything in
the store is replaced, and the swap happens under the store's lock: a bad file changes nothing.

Not saved: the pending ring of decisions. Decision ids issued before a restart cannot receive
feedback afterwards (``UnknownDecisionError``); per-unit feedback (``record_unit``) keeps working.

Writing is atomic: temp file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the
directory. A crash at any point leaves the previous snapshot or the new one, never a mix.

A writer killed half way (``kill -9``, power loss) leaves its temp file behind. Temp files are
named ``.<snapshot name>.<host>-<pid>-<random>.tmp`` (``host``: 8 hex digits of the SHA-256 of
the host name), and every save and restore first removes the stale ones of the same snapshot:
those whose writer ran on this host and is no longer alive, and any untouched for
:data:`STALE_TEMP_SECONDS` (a writer on another host sharing the directory, a reused pid, a
temp file of an older release). A temp file of a live writer (another thread's save, another
process) is left alone.

This module knows the file framing only: the state itself comes from
:meth:`MemoryStore.dump <modelrouter.store.memory.MemoryStore.dump>` and goes back through
:meth:`MemoryStore.load <modelrouter.store.memory.MemoryStore.load>` (store/state.py). The round
trip test compares every column.

Thread safety: no state of its own; the store's lock is taken by ``dump`` and ``load``. Two
saves to the same path at once each write their own temp file; the last ``os.replace`` wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from modelrouter.exceptions import StoreError
from modelrouter.store.memory import MemoryStore

__all__ = ["BANDIT_IDENTITY", "FORMAT_VERSION", "IDENTITY", "MAGIC", "STALE_TEMP_SECONDS",
           "SnapshotInfo", "read_info", "remove_stale_temp_files", "restore_store",
           "salt_digest", "save_store"]

log = logging.getLogger("modelrouter.store.persistence")

MAGIC = b"MRSNAP\r\n"
FORMAT_VERSION = 4
_READS = (1, 2, 3, 4)  # versions this release restores (1: no latency histogram, < 3: no
# salt, < 4: no bandit state)
IDENTITY = ("experiment", "variants", "control", "level", "salt_sha256", "metrics",
            "segment_dims")
"""The header fields a restore compares, in this order (see the module docstring)."""
_SINCE_3 = ("salt_sha256", "control")  # identity fields files before version 3 lack
STALE_TEMP_SECONDS = 3600.0
"""A temp file untouched for this long is abandoned, whoever wrote it."""
_PREFIX = struct.Struct(">8sIQ")
_DIGEST = 32
_DTYPES = {"|i1": "b", "<u2": "H", "<i4": "i", "<u4": "I", "<i8": "q", "<f8": "d", "|u1": "B"}
_MAX_HEADER = 64 << 20


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot file says about itself (its header, without the arrays)."""

    path: str
    version: int
    experiment: str
    variants: tuple[str, ...]
    level: str
    units: int
    created_at: float
    size: int
    unchecked: tuple[str, ...] = ()  # identity fields the file lacks (written before v3)
    bandit: str = ""  # what happened to the bandit's state ("" without a bandit on either side)
    bandit_state: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    """On a restore that keeps the bandit's state: the file's ``bandit`` section (checked)."""

    def to_dict(self) -> dict[str, Any]:
        """As plain data."""
        return {"path": self.path, "version": self.version, "experiment": self.experiment,
                "variants": list(self.variants), "level": self.level, "units": self.units,
                "created_at": self.created_at, "size": self.size,
                "unchecked": list(self.unchecked), "bandit": self.bandit}


def salt_digest(salt: str) -> str:
    """What a snapshot records of the assignment salt: a SHA-256 hex digest (domain-separated),
    enough to tell two salts apart without writing the salt into the file."""
    return hashlib.sha256(b"modelrouter salt\0" + salt.encode("utf-8", "surrogatepass")
                          ).hexdigest()


def _identity(store: MemoryStore, experiment: str, salt: str, control: str) -> dict[str, Any]:
    out = {"experiment": experiment, "variants": list(store.variants), "control": control,
           "level": store.level, "salt_sha256": salt_digest(salt),
           "metrics": {n: [m.kind, m.aggregate] for n, m in store.metrics.items()},
           "segment_dims": list(store.segment_dims)}
    return out


def save_store(store: MemoryStore, path: str | os.PathLike[str], *, experiment: str, salt: str,
               control: str, bandit: Mapping[str, Any] | None = None,
               dumped: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None,
               _write: Callable[[BinaryIO, bytes], None] | None = None) -> SnapshotInfo:
    """Write the store's state to ``path`` atomically; return what was written.

    ``experiment``, ``salt`` and ``control`` complete the identity the file records (see the
    module docstring); stale temp files of earlier, interrupted saves are removed first.
    ``bandit``: the router's bandit section (identity, weights, active arms; JSON-safe), read
    together with ``dumped`` (a :meth:`MemoryStore.dump` taken at the same moment; taken here
    without it).
    ``_write`` (tests only) replaces the function writing the bytes to the temp file, to
    simulate a crash half-way through.
    """
    if control not in store.variants:
        raise StoreError(f"control ({control!r}) is not one of the store's variants "
                         f"{list(store.variants)!r}")
    state, arrays = store.dump() if dumped is None else dumped
    header: dict[str, Any] = {**_identity(store, experiment, salt, control), **state,
                              "arrays": []}
    if bandit is not None:
        header["bandit"] = dict(bandit)
    chunks: list[bytes] = []
    offset = 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a
        dtype = a.dtype.str
        if dtype not in _DTYPES:
            raise StoreError(f"cannot save array {name!r} of dtype {dtype!r}")
        raw = a.tobytes()
        header["arrays"].append([name, dtype, list(a.shape), offset, len(raw)])
        chunks.append(raw)
        offset += len(raw)
    # allow_nan: a look's boundary may be infinite (JSON "Infinity", read back by json.loads)
    head = json.dumps(header, separators=(",", ":")).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head))
    digest = hashlib.sha256(prefix)
    digest.update(head)
    for c in chunks:
        digest.update(c)
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    remove_stale_temp_files(target)  # first: a full disk may need their space
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_host_tag()}-{os.getpid()}-",
                                   suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StoreError(f"cannot write snapshot {str(target)!r}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write = _write or (lambda f, b: f.write(b))
            for part in (prefix, head, *chunks, digest.digest()):
                write(fh, part)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write snapshot {str(target)!r}: {exc}") from exc
        raise
    _fsync_dir(directory)
    size = len(prefix) + len(head) + offset + _DIGEST
    n = int(arrays["rows"].size) if "rows" in arrays else 0
    return SnapshotInfo(str(target), FORMAT_VERSION, experiment, store.variants, store.level, n,
                        float(state["saved_at"]), size,
                        bandit="saved" if bandit is not None else "")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


_TEMP = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.tmp")
_OLD_TEMP = re.compile(r"\.[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's name, before version 3


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (a zombie is not)."""
    if pid <= 0 or os.name != "posix":  # Windows: os.kill would terminate it; age decides
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, as another user
        return True
    try:  # Linux: a killed writer not yet reaped by its parent is a zombie ("Z")
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[str]:
    """Remove the temp files that interrupted saves of the snapshot ``path`` left behind;
    return their names. Stale: written on this host by a process that is no longer alive, or
    untouched for :data:`STALE_TEMP_SECONDS`. Errors (a read-only directory) are ignored."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}"
    host, now = _host_tag(), time.time()
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        match = _TEMP.fullmatch(name, len(prefix))
        if match is None and _OLD_TEMP.fullmatch(name, len(prefix)) is None:
            continue
        full = directory / name
        try:
            stale = now - full.stat().st_mtime > STALE_TEMP_SECONDS
            if not stale and match is not None and match["host"] == host:
                pid = int(match["pid"])
                stale = pid != os.getpid() and not _alive(pid)
            if stale:
                full.unlink()
                removed.append(name)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        log.warning("modelrouter: removed %d stale temp file(s) of snapshot %r: %s",
                    len(removed), str(target), ", ".join(removed))
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], memoryview, int]:
    """Read and verify a file; return (header, payload view, file size)."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise StoreError(f"snapshot {name!r} does not exist") from None
    except OSError as exc:
        raise StoreError(f"cannot read snapshot {name!r}: {exc}") from exc
    if len(data) < _PREFIX.size + _DIGEST or not data.startswith(MAGIC):
        raise StoreError(f"{name!r} is not a modelrouter snapshot (bad magic or too short)")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version not in _READS:
        raise StoreError(f"snapshot {name!r} has format version {version}; this modelrouter "
                         f"reads versions {', '.join(map(str, _READS))}")
    if hashlib.sha256(memoryview(data)[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise StoreError(f"snapshot {name!r} is corrupted or truncated (SHA-256 mismatch)")
    if head_len > min(_MAX_HEADER, len(data) - _PREFIX.size - _DIGEST):
        raise StoreError(f"snapshot {name!r} has an impossible header length {head_len}")
    start = _PREFIX.size
    try:
        header = json.loads(data[start:start + head_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"snapshot {name!r} has an unreadable header: {exc}") from None
    if not isinstance(header, dict):
        raise StoreError(f"snapshot {name!r} has a malformed header")
    payload = memoryview(data)[start + head_len:len(data) - _DIGEST]
    header["_version"] = version
    return header, payload, len(data)


def read_info(path: str | os.PathLike[str]) -> SnapshotInfo:
    """Verify a snapshot file and describe it (without loading it into a store)."""
    header, _payload, size = _read(path)
    try:
        n = next((int(shape[0]) for name, _d, shape, _o, _b in header["arrays"]
                  if name == "rows"), 0)
        return SnapshotInfo(str(path), int(header["_version"]), str(header["experiment"]),
                            tuple(header["variants"]), str(header["level"]), n,
                            float(header["saved_at"]), size)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"snapshot {str(path)!r} has a malformed header: {exc!r}") from None


def _arrays(header: dict[str, Any], payload: memoryview, name: str) -> dict[str, np.ndarray]:
    out = {}
    for entry in header["arrays"]:
        key, dtype, shape, offset, nbytes = entry
        if dtype not in _DTYPES or not isinstance(offset, int) or not isinstance(nbytes, int):
            raise StoreError(f"snapshot {name!r}: array {key!r} has a bad dtype or extent")
        if offset < 0 or offset + nbytes > len(payload):
            raise StoreError(f"snapshot {name!r}: array {key!r} runs past the payload")
        a = np.frombuffer(payload[offset:offset + nbytes], dtype=np.dtype(dtype))
        out[key] = a.reshape([int(d) for d in shape])
    return out


def restore_store(store: MemoryStore, path: str | os.PathLike[str], *, experiment: str,
                  salt: str, control: str, bandit: Mapping[str, Any] | None = None
                  ) -> SnapshotInfo:
    """Replace the store's statistics with a snapshot's; all or nothing.

    Raises :class:`StoreError` for a missing, corrupted, truncated or foreign file (another
    experiment, variants or their order, control, level, salt, metrics or segment
    dimensions, then the bandit's identity: the first that differs is named), leaving the
    store unchanged. Stale temp files of interrupted saves are removed first.

    ``bandit``: this router's bandit identity (reward, kind, costs, missing_reward, policy),
    None without a bandit. The file's bandit state is restored (training counters into the
    store's tracker, the checked section in ``SnapshotInfo.bandit_state`` for the router) only
    when both sides have one and they agree; otherwise ``SnapshotInfo.bandit`` says why not.
    """
    name = str(path)
    remove_stale_temp_files(path)
    header, payload, size = _read(path)
    mine = _identity(store, experiment, salt, control)
    unchecked = tuple(k for k in _SINCE_3 if header["_version"] < 3 and k not in header)
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
    section, note = _bandit_section(header, bandit, name, len(store.variants))
    if unchecked:
        log.warning("modelrouter: snapshot %r (format version %d) does not record the %s; "
                    "restored without checking them against this router", name,
                    header["_version"], " and ".join(u.replace("_sha256", "") for u in unchecked))
    try:
        arrays = _arrays(header, payload, name)
        if header["_version"] >= 2 and "latency_hist" not in arrays:
            raise KeyError("latency_hist")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise StoreError(f"snapshot {name!r} is malformed: {exc!r}") from None
    if section is None:  # no bandit state to restore: the tracker starts fresh
        header = {k: v for k, v in header.items() if k != "training"}
    try:
        store.load(header, arrays)  # validates everything, then swaps under the store's lock
    except StoreError as exc:
        raise StoreError(f"snapshot {name!r}: {exc}") from None
    n = int(arrays["rows"].shape[0]) if "rows" in arrays else 0
    return SnapshotInfo(name, int(header["_version"]), experiment, store.variants, store.level, n,
                        float(header["saved_at"]), size,
                        tuple(u.replace("_sha256", "") for u in unchecked), note, section)


BANDIT_IDENTITY = ("reward", "kind", "costs", "missing_reward", "policy")
"""The bandit identity fields a restore compares, in this order."""


def _bandit_section(header: Mapping[str, Any], mine: Mapping[str, Any] | None, name: str,
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
