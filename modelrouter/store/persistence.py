"""Snapshot files of the in-memory store: versioned, checksummed, atomic, never pickled.

Format (version 2), all integers big-endian::

    offset 0   8 bytes   magic  b"MRSNAP\\r\\n"  (the CR/LF pair catches text-mode mangling)
           8   4 bytes   format version (uint32, currently 2)
          12   8 bytes   header length H (uint64)
          20   H bytes   header: UTF-8 JSON object (see below)
        20+H   P bytes   payload: raw little-endian arrays, back to back
      20+H+P  32 bytes   SHA-256 of every byte before it

The header holds the identity of the experiment (``experiment``, ``variants``, ``metrics`` with
kind and aggregate, ``level``, ``segment_dims``): a file whose identity differs from the router
restoring it is refused as foreign. It also holds the small state (requests per variant,
uncounted requests, segment overflow, segment value tables, epochs, request-level group keys)
and ``arrays``: ``[name, dtype, shape, offset, nbytes]`` per array of the payload, with dtypes
from a fixed whitelist. Unit ids are one UTF-8 blob plus a ``uint32`` length per unit.

Version 2 adds the per-variant latency histogram (arrays ``latency_hist``, ``latency_sum``
and its bucket layout ``latency_layout`` in the header, see store/histogram.py). Version 1
files still load, with an empty histogram: quantile guardrails then see only the requests
recorded after the restore (the means keep every request). A file whose histogram layout
differs from this release's is refused.

Reading parses bytes and numbers only (``np.frombuffer`` with a whitelisted dtype): a snapshot
cannot run code. Every check (checksum, version, identity, shapes) passes before anything in
the store is replaced, and the swap happens under the store's lock: a bad file changes nothing.

Not saved: the pending ring of decisions. Decision ids issued before a restart cannot receive
feedback afterwards (``UnknownDecisionError``); per-unit feedback (``record_unit``) keeps working.

Writing is atomic: temp file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the
directory. A crash at any point leaves the previous snapshot or the new one, never a mix.

This module knows :class:`~modelrouter.store.memory.MemoryStore`'s private layout; the round
trip test compares every column, so a layout change that this module misses fails a test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelrouter.exceptions import StoreError
from modelrouter.store.histogram import LAYOUT, N_SLOTS
from modelrouter.store.memory import EpochInfo, MemoryStore

__all__ = ["FORMAT_VERSION", "MAGIC", "SnapshotInfo", "read_info", "restore_store", "save_store"]

MAGIC = b"MRSNAP\r\n"
FORMAT_VERSION = 2
_READS = (1, 2)  # versions this release restores (1: no latency histogram)
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

    def to_dict(self) -> dict[str, Any]:
        """As plain data."""
        return {"path": self.path, "version": self.version, "experiment": self.experiment,
                "variants": list(self.variants), "level": self.level, "units": self.units,
                "created_at": self.created_at, "size": self.size}


def _identity(store: MemoryStore, experiment: str) -> dict[str, Any]:
    return {"experiment": experiment, "variants": list(store.variants), "level": store.level,
            "metrics": {n: [m.kind, m.aggregate] for n, m in store.metrics.items()},
            "segment_dims": list(store.segment_dims)}


def _dump(store: MemoryStore) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Copy the store's state under its lock (arrays as numpy copies)."""
    s = store
    with s._lock:
        state = {
            "requests": list(s._requests), "uncounted": s._uncounted, "overflow": s._overflow,
            "segment_tables": [sorted(t, key=t.__getitem__) for t in s._seg_codes],
            "epochs": [[e.epoch, e.mode, list(e.weights), e.started_at] for e in s._epochs],
            "group_keys": [[v, e, list(seg)] for v, e, seg in s._group_keys],
            "saved_at": s.clock(),
            "looks": [k.to_dict() for k in getattr(s, "_looks", ())],
            "latency_layout": LAYOUT,
        }
        arrays: dict[str, np.ndarray] = {
            "latency_hist": np.array(s._hist, dtype="<i8").reshape(-1, N_SLOTS),
            "latency_sum": np.array(s._hist_sum, dtype="<f8")}
        if s.unit_level:
            ids = [u.encode("utf-8", "surrogatepass") for u in s._rows]
            arrays["unit_len"] = np.array([len(b) for b in ids], dtype="<u4")
            arrays["unit_ids"] = np.frombuffer(b"".join(ids), dtype="|u1")
            arrays["rows"] = np.fromiter(s._rows.values(), dtype="<i8", count=len(s._rows))
            for name in ("variant", "epoch", "propensity", "first_seen", "exposures"):
                arrays[name] = np.array(getattr(s, "_" + name))
            for d, col in enumerate(s._segs):
                arrays[f"seg{d}"] = np.array(col)
            for i, m in enumerate(s.metric_names):
                arrays[f"x:{m}"] = np.array(s._x[i])
                arrays[f"y:{m}"] = np.array(s._y[i])
        width = 1 + 5 * len(s.metric_names)
        arrays["group_sums"] = np.array(s._group_sums, dtype="<f8").reshape(-1, width)
    return state, arrays


def save_store(store: MemoryStore, path: str | os.PathLike[str], *, experiment: str,
               _write: Callable[[Any, bytes], None] | None = None) -> SnapshotInfo:
    """Write the store's state to ``path`` atomically; return what was written.

    ``_write`` (tests only) replaces the function writing the bytes to the temp file, to
    simulate a crash half-way through.
    """
    state, arrays = _dump(store)
    header: dict[str, Any] = {**_identity(store, experiment), **state, "arrays": []}
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
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
                        float(state["saved_at"]), size)


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


def restore_store(store: MemoryStore, path: str | os.PathLike[str], *,
                  experiment: str) -> SnapshotInfo:
    """Replace the store's statistics with a snapshot's; all or nothing.

    Raises :class:`StoreError` for a missing, corrupted, truncated or foreign file (another
    experiment, variants, metrics, level or segment dimensions), leaving the store unchanged.
    """
    name = str(path)
    header, payload, size = _read(path)
    mine = _identity(store, experiment)
    for key, value in mine.items():
        if header.get(key) != value:
            raise StoreError(f"snapshot {name!r} belongs to another experiment: {key} is "
                             f"{header.get(key)!r} in the file, {value!r} here")
    try:
        new = _build(store, header, _arrays(header, payload, name))
    except StoreError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise StoreError(f"snapshot {name!r} is malformed: {exc!r}") from None
    with store._lock:
        new.update(_empty_ring(store))
        for attr, value in new.items():
            setattr(store, attr, value)
        store._bind_columns()  # hot-path aliases of the replaced columns
        if store._decisions is not None:  # its sums are keyed by the replaced epochs
            store._decisions.reset()
    n = len(new["_rows"]) if store.unit_level else 0
    return SnapshotInfo(name, int(header["_version"]), experiment, store.variants, store.level, n,
                        float(header["saved_at"]), size)


def _col(a: np.ndarray, code: str, n: int, what: str) -> array[Any]:
    if a.shape != (n,):
        raise StoreError(f"snapshot column {what!r} has shape {a.shape}, expected ({n},)")
    return array(code, a.astype(np.dtype(code), copy=False).tobytes())


def _build(store: MemoryStore, header: dict[str, Any], arrays: dict[str, np.ndarray]
           ) -> dict[str, Any]:
    """The new private state of the store, fully validated; nothing is assigned yet."""
    k, n_metrics = len(store.variants), len(store.metric_names)
    requests = [int(r) for r in header["requests"]]
    if len(requests) != k:
        raise StoreError(f"snapshot has {len(requests)} request counters for {k} variants")
    tables = header["segment_tables"]
    if len(tables) != len(store.segment_dims):
        raise StoreError("snapshot segment tables do not match the segment dimensions")
    seg_codes = [{str(v): i for i, v in enumerate(t)} for t in tables]
    epochs = [EpochInfo(int(e), str(m), tuple(float(w) for w in ws), float(t))
              for e, m, ws, t in header["epochs"]]
    keys = [(int(v), int(e), tuple(int(c) for c in seg)) for v, e, seg in header["group_keys"]]
    sums = arrays["group_sums"]
    if sums.shape != (len(keys), 1 + 5 * n_metrics):
        raise StoreError(f"snapshot group sums have shape {sums.shape}, expected "
                         f"({len(keys)}, {1 + 5 * n_metrics})")
    new: dict[str, Any] = {
        "_requests": requests, "_uncounted": int(header["uncounted"]),
        "_overflow": int(header["overflow"]), "_seg_codes": seg_codes, "_epochs": epochs,
        "_group_keys": keys, "_group_index": {key: i for i, key in enumerate(keys)},
        "_group_sums": [list(map(float, row)) for row in sums],
    }
    new["_hist"], new["_hist_sum"] = _latency(header, arrays, k)
    if hasattr(store, "_looks"):
        from modelrouter.store.looks import Look

        new["_looks"] = [Look.from_dict(k) for k in header.get("looks", [])]
    n = 0
    if store.unit_level:
        lengths = arrays["unit_len"].astype(np.int64)
        blob = arrays["unit_ids"].tobytes()
        if int(lengths.sum()) != len(blob):
            raise StoreError("snapshot unit ids do not match their lengths")
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        ids = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends)]
        rows = arrays["rows"].tolist()
        n = len(ids)
        if len(rows) != n or sorted(rows) != list(range(n)) or len(set(ids)) != n:
            raise StoreError("snapshot unit index is inconsistent (rows or duplicate ids)")
        new["_rows"] = dict(zip(ids, rows))
        # cached hash buckets belong to the old rows' units: recompute them on demand
        new["_ubucket"] = array("d", [float("nan")]) * n
        for attr, code in (("variant", "b"), ("epoch", "i"), ("propensity", "d"),
                           ("first_seen", "d"), ("exposures", "I")):
            new["_" + attr] = _col(arrays[attr], code, n, attr)
        if n and int(arrays["variant"].max()) >= k:
            raise StoreError("snapshot has a variant code out of range")
        new["_segs"] = [_col(arrays[f"seg{d}"], "H", n, f"seg{d}")
                        for d in range(len(store.segment_dims))]
        new["_x"] = [_col(arrays[f"x:{m}"], "d", n, f"x:{m}") for m in store.metric_names]
        new["_y"] = [_col(arrays[f"y:{m}"], "d", n, f"y:{m}") for m in store.metric_names]
    else:
        new["_rows"] = {}
    return new


def _latency(header: dict[str, Any], arrays: dict[str, np.ndarray], k: int
             ) -> tuple[array[Any], list[float]]:
    """The latency histogram (empty for a version 1 file), checked against this layout."""
    if header["_version"] < 2:
        return array("q", bytes(8 * N_SLOTS * k)), [0.0] * k
    if header.get("latency_layout") != LAYOUT:
        raise StoreError(f"snapshot latency histogram has layout "
                         f"{header.get('latency_layout')!r}; this modelrouter uses {LAYOUT!r}")
    hist, sums = arrays["latency_hist"], arrays["latency_sum"]
    if hist.shape != (k, N_SLOTS) or sums.shape != (k,) or int(hist.min(initial=0)) < 0:
        raise StoreError(f"snapshot latency histogram has shape {hist.shape} (sums "
                         f"{sums.shape}), expected ({k}, {N_SLOTS}) of counts >= 0")
    return (array("q", hist.astype("<i8").tobytes()),
            [float(v) for v in sums])


def _empty_ring(store: MemoryStore) -> dict[str, Any]:
    """The pending ring is not saved: mark every slot empty but keep numbering monotonic, so
    decision ids issued before the restore can never land on a restored unit (under the lock).
    """
    ring = min(store._seq, store.max_pending)
    new: dict[str, Any] = {"_ring_seq": array("q", [-1]) * ring,
                           "_ring_time": array("d", [0.0]) * ring,
                           "_ring_row": array("q", [0]) * ring}
    if not store.unit_level:
        n_metrics = len(store.metric_names)
        new["_slot_x"] = [array("d", [0.0]) * ring for _ in range(n_metrics)]
        new["_slot_y"] = [array("d", [0.0]) * ring for _ in range(n_metrics)]
    return new
