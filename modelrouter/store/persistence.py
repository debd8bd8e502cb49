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
naming it, before anything changes (store/identity.py: with another salt or control,
returning users would be served one variant and analysed under another). Not identity:
weights and mode (the file's epochs record them), the primary metric, guardrails, plan and
thresholds, which judge the data and may change between runs.

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
experiment identity, store/identity.py) and refuses the first that differs, naming it;
then the counters go back into the tracker and the posterior, and routing continues by the
saved weights (routing/state.py). A file without these sections (an A/B router's, or one
written before version 4) leaves the bandit fresh: ``SnapshotInfo.bandit`` says so. A file
with them restored into a router without a bandit: the sections are ignored (the statistics
still mean the same), ``SnapshotInfo.bandit`` says so.

Covariates (issue 16) need no new version: at unit level each declared covariate adds two
optional float64 arrays, ``cov:<name>`` (values) and ``cov_at:<name>`` (recorded-at times),
NaN where none was recorded (store/covariates.py). A file without them (written before
covariates existed, or before the covariate was declared) restores with none recorded.
Covariates waiting for a unit's first exposure are not saved.

The losses a memory store counted (``Snapshot.losses``: finished requests whose decision had
left the pending ring, covariate values dropped from requests) need no new version either: an
optional header section ``losses`` (name -> count, store/losses.py), so a restored store's
analysis still says what its data lacks. A file without it restores with none.

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

A writer killed half way (``kill -9``, power loss) leaves its temp file behind; every save and
restore first removes the stale ones of the same snapshot (dead writer on this host, or
untouched for :data:`STALE_TEMP_SECONDS`), see store/tempfiles.py.

This module knows the file framing only (the identity checks are store/identity.py's, the
temp file naming and cleanup store/tempfiles.py's): the state itself comes from
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
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from modelrouter.exceptions import StoreError
from modelrouter.store.identity import (
    BANDIT_IDENTITY,
    IDENTITY,
    check_bandit_section,
    check_identity,
    experiment_identity,
    salt_digest,
)
from modelrouter.store.memory import MemoryStore
from modelrouter.store.tempfiles import (
    STALE_TEMP_SECONDS,
    make_temp_file,
    remove_stale_temp_files,
)

__all__ = ["BANDIT_IDENTITY", "FORMAT_VERSION", "IDENTITY", "MAGIC", "STALE_TEMP_SECONDS",
           "SnapshotInfo", "read_info", "remove_stale_temp_files", "restore_store",
           "salt_digest", "save_store"]

log = logging.getLogger("modelrouter.store.persistence")

MAGIC = b"MRSNAP\r\n"
FORMAT_VERSION = 4
_READS = (1, 2, 3, 4)  # versions this release restores (1: no latency histogram, < 3: no
# salt, < 4: no bandit state)
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
    routing_state: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    """On a restore: the file's ``routing`` section (a rollback hold and its events)."""
    extras: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    """On a restore: the file's ``extras`` section (parts above the store, store/extras.py)."""

    def to_dict(self) -> dict[str, Any]:
        """As plain data."""
        return {"path": self.path, "version": self.version, "experiment": self.experiment,
                "variants": list(self.variants), "level": self.level, "units": self.units,
                "created_at": self.created_at, "size": self.size,
                "unchecked": list(self.unchecked), "bandit": self.bandit}


def save_store(store: MemoryStore, path: str | os.PathLike[str], *, experiment: str, salt: str,
               control: str, bandit: Mapping[str, Any] | None = None,
               dumped: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None,
               routing: Mapping[str, Any] | None = None,
               extras: Mapping[str, Any] | None = None,
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
    header: dict[str, Any] = {**experiment_identity(store, experiment, salt, control), **state,
                              "arrays": []}
    if bandit is not None:
        header["bandit"] = dict(bandit)
    if routing is not None:  # the rollback hold and its events (JSON-safe; restored as is)
        header["routing"] = dict(routing)
    if extras is not None:  # parts above the store (store/extras.py), JSON-safe
        header["extras"] = dict(extras)
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
        fd, tmp = make_temp_file(target, directory)
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
    unchecked = check_identity(header, experiment_identity(store, experiment, salt, control),
                               name)
    section, note = check_bandit_section(header, bandit, name, len(store.variants))
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
                        tuple(u.replace("_sha256", "") for u in unchecked), note, section,
                        header.get("routing") if isinstance(header.get("routing"), dict)
                        else None,
                        header.get("extras") if isinstance(header.get("extras"), dict)
                        else None)
