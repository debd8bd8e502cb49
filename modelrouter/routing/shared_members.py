"""The routing state's members for a shared store (Redis): joining, following and refreshing
the shared routing record (see :mod:`modelrouter.routing.shared` for the protocol).

A mixin of :class:`~modelrouter.routing.state.RoutingState`, kept apart so that module stays
about the one writer's local rules: :meth:`SharedMembers.start` joins the shared state at
startup, :meth:`SharedMembers.sync` adopts newer records after each flush of the store and
runs the bandit's shared refresh schedule. Without a shared store both return at once.

Thread safety: as the routing state's: the store read happens outside the lock, adopting and
deciding under it; a change goes through the state's compare-and-set loop (``_change``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from modelrouter.config import Mode
from modelrouter.routing.assignment import Allocation
from modelrouter.routing.events import RollbackEvent
from modelrouter.routing.promotion import Stages
from modelrouter.routing.shared import desired_of, refresh_due
from modelrouter.store.protocol import Store

if TYPE_CHECKING:
    from modelrouter.bandit.allocator import Weights
    from modelrouter.routing.bandit import BanditRouter

__all__ = ["SharedMembers"]

T = TypeVar("T")


class SharedMembers:
    """Start, sync and the shared refresh schedule of the routing state."""

    names: tuple[str, ...]
    shared: bool
    mode: Mode
    allocation: Allocation
    _store: Store
    _lock: threading.Lock
    _clock: Callable[[], float]
    _bandit: BanditRouter | None
    _bandit_weights: Weights | None
    _record: dict[str, Any] | None
    _updates: float
    _skipped: tuple[float, float] | None
    _stored: int
    _ab: dict[str, float]
    _active: list[bool]
    _held: bool
    _events: list[RollbackEvent]
    _stages: Stages

    if TYPE_CHECKING:
        def _change(self, change: Callable[[], T]) -> T: ...
        def _install(self, event: Callable[[Allocation], object] | None = None, *,
                     recompute: bool = True) -> Allocation: ...
        def _scheduled_refresh(self) -> Allocation: ...
        def _derive(self, epoch: int, *, recompute: bool = True) -> Allocation: ...

    def sync(self) -> Allocation:
        """Adopt the shared routing state if another worker published a newer one, then run
        the bandit's shared refresh schedule (the store's watcher calls this after each flush;
        a no-op without a shared store). Returns the allocation in force."""
        if not self.shared:
            return self.allocation
        shared = self._store.read_control()  # I/O outside the lock
        with self._lock:
            self._adopt(shared)
            due = self._refresh_due()
        if due:
            self._change(lambda: self._scheduled_refresh() if self._refresh_due()
                         else self.allocation)
        return self.allocation

    def start(self) -> Allocation:
        """Join the shared routing state at startup (the lifespan calls it): adopt the record
        in force; if there is none and epoch 0 in the store has other weights or mode than
        this worker's configuration (a deploy that changed them under the same experiment
        name), publish this configuration as the next epoch, so no decision is analysed
        under weights it was not drawn with."""
        if not self.shared:
            return self.allocation
        shared = self._store.read_control()
        with self._lock:
            self._adopt(shared)
            start = None if shared is None else shared.get("epoch0")
            stale = (self.allocation.epoch == 0 and start is not None
                     and (start[0] != self.mode or list(start[1]) != list(
                         self.allocation.propensities)))
        if stale:
            self._change(lambda: self._install() if self.allocation.epoch == 0
                         else self.allocation)
        return self.sync()

    def _refresh_due(self) -> bool:
        bandit = self._bandit
        if self.mode != "bandit" or bandit is None or self._held:
            return False
        a = bandit.allocator
        return refresh_due(self._record, self._updates, self._clock(), a.refresh_every,
                           a.refresh_seconds, self._skipped)

    def _adopt(self, shared: Mapping[str, Any] | None) -> None:
        """Take a newer shared record as the desired and effective state (lock held)."""
        if shared is None:
            return
        self._updates = float(shared["updates"])
        self._stored = int(shared["epoch"])  # the compare-and-set base of the next change
        record = shared["record"]
        if record is None or int(record["epoch"]) <= self.allocation.epoch:
            return
        mode, self._ab, self._active, self._held, events = desired_of(record, self.names)
        if mode == "bandit" and self.mode != "bandit" and self._bandit is not None:
            self._bandit.clear_sticky()
        self.mode = mode
        self._events = [RollbackEvent.from_dict(e) for e in events]
        self._stages = Stages.from_data(record.get("stages"), self._stages)
        if record["bandit"] is not None and self._bandit is not None:
            self._bandit_weights = self._bandit.adopt(record["bandit"])
        alloc = self._derive(int(record["epoch"]), recompute=False)
        self._store.begin_epoch(alloc.epoch, self.mode, alloc.propensities)
        self.allocation = alloc
        self._record = record
