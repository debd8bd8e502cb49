"""The members a store has when it is not shared with other processes: :class:`Unshared`.

The :class:`~modelrouter.store.protocol.Store` protocol has members that only mean something
when several processes share one store (the routing control plane, the feedback claim,
values and labels handed to another process, the shadows' published statistics). A store of
one process (the memory store, or a user's own :class:`~modelrouter.store.protocol.BaseStore`
subclass) gets them from this mixin: each is a no-op, a "nothing there" answer, or, where
something would otherwise be lost (a value or label for another process's decision), a
:class:`~modelrouter.exceptions.ConfigError` naming the remedy. The Redis store overrides all
of them (store/redis/sharing.py).

Thread safety: stateless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelrouter.exceptions import ConfigError

__all__ = ["Unshared"]


class Unshared:
    """Shared-store members of a store that is not shared (see the module docstring)."""

    def publish_control(self, record: Mapping[str, Any], expected: int) -> bool:
        """One process: always published (there is nobody to race)."""
        return True

    def read_control(self) -> dict[str, Any] | None:
        """One process: nothing published elsewhere."""
        return None

    def watch(self, callback: Callable[[], object], owner: str) -> None:  # noqa: B027
        """One process: nothing to watch (an optional member, a no-op by design)."""

    def claim(self, key: str, ttl: float) -> bool | None:
        """Not shared: None (the caller's local set de-duplicates)."""
        return None

    def unclaim(self, key: str) -> None:  # noqa: B027 - an optional member: a no-op by design
        """Nothing claimed."""

    def forward(self, owner: str, seq: int, metric: int, value: float, full: bool) -> None:
        """Refused: no other process can be reached through this store."""
        raise ConfigError("this store is not shared: feedback for another process's decision "
                          "cannot be forwarded (use a shared store, store='redis://...')")

    def publish_shadows(self, owner: str, state: str) -> None:  # noqa: B027
        """One process: nobody to publish to (an optional member, a no-op by design)."""

    def read_shadows(self) -> dict[str, str]:
        """One process: no other process's shadows."""
        return {}

    def push_labels(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Refused: no other process can be reached through this store."""
        raise ConfigError("this store is not shared: a label for another process's decision "
                          "cannot be forwarded (use a shared store, store='redis://...')")

    def take_labels(self, owner: str) -> list[tuple[str, str]]:
        """One process: nothing handed over."""
        return []
