"""Temp files of snapshot writers: how they are named, and removing those of dead writers.

A snapshot is written to a temp file in the same directory, then renamed over the target
(store/persistence.py). A writer killed half way (``kill -9``, power loss) leaves its temp
file behind, possibly large. So temp files are named ``.<snapshot name>.<host>-<pid>-<random>.tmp``
(``host``: :func:`host_tag`, 8 hex digits of the SHA-256 of the host name) by
:func:`make_temp_file`, and every save and restore first calls
:func:`remove_stale_temp_files`, which removes the stale ones of the same snapshot: those whose
writer ran on this host and is no longer alive, and any untouched for
:data:`STALE_TEMP_SECONDS` (a writer on another host sharing the directory, a reused pid, a
temp file of an older release, named by ``tempfile.mkstemp`` alone). A temp file of a live
writer (another thread's save, another process) is left alone.

Kept apart from the file framing because it is a question of processes and hosts (pid
liveness, zombies, clocks), not of bytes. Messages go to the snapshot logger,
``modelrouter.store.persistence``, with the rest of the snapshot's.

Thread safety: no state of its own and no lock. Two processes cleaning the same directory at
once at worst both try to remove a file: the loser's ``OSError`` is ignored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["STALE_TEMP_SECONDS", "host_tag", "is_alive", "make_temp_file",
           "remove_stale_temp_files"]

log = logging.getLogger("modelrouter.store.persistence")

STALE_TEMP_SECONDS = 3600.0
"""A temp file untouched for this long is abandoned, whoever wrote it."""
_TEMP = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.tmp")
_OLD_TEMP = re.compile(r"\.[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's name, before version 3


def host_tag() -> str:
    """This host's tag in temp file names: 8 hex digits of the SHA-256 of its name."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def make_temp_file(target: Path, directory: Path) -> tuple[int, str]:
    """Create (``tempfile.mkstemp``) this writer's temp file for the snapshot ``target`` in
    ``directory``; return ``(fd, path)``. OSError propagates."""
    return tempfile.mkstemp(prefix=f".{target.name}.{host_tag()}-{os.getpid()}-",
                            suffix=".tmp", dir=directory)


def is_alive(pid: int) -> bool:
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
    host, now = host_tag(), time.time()
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
                stale = pid != os.getpid() and not is_alive(pid)
            if stale:
                full.unlink()
                removed.append(name)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        log.warning("modelrouter: removed %d stale temp file(s) of snapshot %r: %s",
                    len(removed), str(target), ", ".join(removed))
    return removed
