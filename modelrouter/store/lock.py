"""One process per memory-store snapshot: an exclusive lock next to the snapshot file.

The memory store holds one process's data. Two workers configured with the same
``snapshot_path`` would each analyse half of the traffic and overwrite each other's snapshot
(measured: after a restart 168 of 300 units came back). So a serving router takes an exclusive,
non-blocking ``flock`` on ``<snapshot_path>.lock`` for as long as it runs; a second process gets
a :class:`~modelrouter.exceptions.StoreError` naming the holder's pid and the remedy (a shared
store), before it serves anything.

``flock`` locks belong to the open file, so the kernel releases them when the holder exits,
even on ``kill -9``: a stale lock file never blocks a restart. Where ``fcntl`` is missing
(Windows) no lock is taken.
"""

from __future__ import annotations

import os
from typing import IO

from modelrouter.exceptions import StoreError

__all__ = ["SnapshotLock"]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class SnapshotLock:
    """The exclusive lock on ``<path>.lock``; :meth:`acquire` and :meth:`release` (idempotent)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = f"{os.fspath(path)}.lock"
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock or raise StoreError naming the process that holds it."""
        if self._file is not None or fcntl is None:
            return
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise StoreError(
                f"snapshot_path {self.path[:-5]!r} is in use by another process (pid "
                f"{holder}): the memory store holds one process's data. With several workers "
                "use a shared store (store='redis://...'), or give each process its own "
                "snapshot_path") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        """Let the lock go (also done by the kernel when the process ends)."""
        f, self._file = self._file, None
        if f is not None:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
