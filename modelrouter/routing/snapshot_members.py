"""The snapshot half of :class:`~modelrouter.routing.experiment.Experiment`: ``save`` and
``restore`` of the in-memory statistics with the routing state and the parts above the store.

Kept apart so the experiment module stays within its size; the methods run on the
experiment's own fields (store, routing state, bandit, extras), exactly as its other calls.

Thread safety: as :class:`~modelrouter.routing.experiment.Experiment` (the routing state
serialises a restore with its control-plane changes).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from modelrouter.config import RouterConfig
from modelrouter.exceptions import StoreError
from modelrouter.routing.state import RoutingState
from modelrouter.store.extras import SnapshotExtras
from modelrouter.store.memory import MemoryStore
from modelrouter.store.protocol import Store

if TYPE_CHECKING:
    from modelrouter.routing.bandit import BanditRouter
    from modelrouter.store.persistence import SnapshotInfo

__all__ = ["SnapshotMembers"]


class SnapshotMembers:
    """``save`` / ``restore`` (a mixin of Experiment)."""

    config: RouterConfig
    control: str
    store: Store
    state: RoutingState
    bandit: BanditRouter | None
    extras: SnapshotExtras

    def _memory_store(self, verb: str) -> MemoryStore:
        if not isinstance(self.store, MemoryStore):
            raise StoreError(f"{verb} works on the in-memory store; this experiment uses "
                             f"{type(self.store).__name__} (Redis persists itself: RDB or AOF)")
        return self.store

    def save(self, path: str | os.PathLike[str]) -> SnapshotInfo:
        """Snapshot the in-memory statistics to ``path`` (atomic; see store/persistence.py)."""
        from modelrouter.store.persistence import save_store  # numpy: loaded when used

        store = self._memory_store("save()")
        dumped, bandit, routing = self.state.save(store.dump)  # as of the dump
        return save_store(store, path, experiment=self.config.experiment,
                          salt=self.config.salt or "", control=self.control, bandit=bandit,
                          dumped=dumped, routing=routing, extras=self.extras.save())

    def restore(self, path: str | os.PathLike[str]) -> SnapshotInfo:
        """Replace the statistics with a snapshot's (all or nothing; StoreError if refused).

        Routing continues in the last restored epoch if the current weights and mode equal
        its own, else in a new epoch after it. A snapshot of another experiment, salt,
        control, variants (or their order), level, metrics or segment dimensions is refused
        before anything changes. With a bandit, the file's training counters, weights and
        active arms come back, and a file whose bandit identity (reward metric and kind,
        costs, missing-reward rule, policy) differs is refused; a file without a bandit state
        leaves the bandit fresh, and into a router without one it is ignored
        (``SnapshotInfo.bandit`` says which). The parts above the store come back last
        (``extras``, store/extras.py)."""
        from modelrouter.store.persistence import restore_store  # numpy: loaded when used

        store = self._memory_store("restore()")
        identity = None if self.bandit is None else self.bandit.identity()
        info = self.state.restore(
            lambda: restore_store(store, path, experiment=self.config.experiment,
                                  salt=self.config.salt or "", control=self.control,
                                  bandit=identity),
            lambda info: info.bandit_state, lambda info: info.routing_state)
        self.extras.restore(info.extras)  # then the parts above the store (the shadows)
        return info
