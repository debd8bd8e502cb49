"""Named parts of a snapshot that live above the store: saved in the same file, restored after.

The memory store's snapshot (store/persistence.py) holds the statistics and the routing state.
Some state a restart must keep lives in the layers above the store (the shadows' statistics,
owned by the router): each such owner registers a part, a pair of functions ``save() ->
JSON-safe data`` and ``restore(data)``. :meth:`SnapshotExtras.save` collects every part into
the file's ``extras`` section; :meth:`SnapshotExtras.restore` hands each part its data after
the statistics were restored. A part that the file lacks stays as it is (a file written before
the part existed, or by a router without it); a part the router lacks is ignored; a part whose
data is refused (StoreError, ValueError) is logged and left fresh, since the statistics are
already restored by then and must not be undone for it.

Thread safety: parts are registered at construction; the functions lock what they read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from modelrouter.exceptions import StoreError

__all__ = ["SnapshotExtras"]

log = logging.getLogger("modelrouter.store.persistence")


class SnapshotExtras:
    """The registered parts (see the module docstring)."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[Callable[[], Any], Callable[[Any], object]]] = {}

    def __repr__(self) -> str:
        return f"SnapshotExtras(parts={sorted(self._parts)!r})"

    def register(self, name: str, save: Callable[[], Any],
                 restore: Callable[[Any], object]) -> None:
        """Add part ``name`` (replacing one of the same name)."""
        self._parts[name] = (save, restore)

    def save(self) -> dict[str, Any] | None:
        """Every part's data, None without parts (the file then has no ``extras``)."""
        return {name: save() for name, (save, _) in self._parts.items()} or None

    def restore(self, extras: Mapping[str, Any] | None) -> tuple[str, ...]:
        """Hand each registered part its data from a file's ``extras``; the parts restored."""
        done = []
        for name, (_, restore) in self._parts.items():
            if extras is None or name not in extras:
                continue
            try:
                restore(extras[name])
            except (StoreError, ValueError, TypeError, KeyError) as exc:
                log.warning("modelrouter: the snapshot's %r part was not restored: %s", name,
                            exc)
                continue
            done.append(name)
        return tuple(done)
