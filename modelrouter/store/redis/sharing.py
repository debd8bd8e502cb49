"""The Redis store's members for what workers share beyond statistics (control.py): the
routing control plane, the feedback seen set and feedback forwarded between workers.

A mixin of :class:`~modelrouter.store.redis.store.RedisStore`, kept apart so that module
stays about the buffer and the statistics. After each flush the store's flusher calls
:meth:`SharedMembers.poll`: values other workers forwarded to this one are applied to its
decision tracker (or recorded in full for request-level decisions), then the
watchers run (the routing state's sync: adopt a newer shared state, refresh the bandit).

Thread safety: as the store's (see store.py): ``_lock`` around the tracker, the flusher's lock
around the watcher list.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import StoreError, UnknownDecisionError
from modelrouter.store.redis.buffer import DeltaBuffer
from modelrouter.store.redis.control import SharedControl
from modelrouter.store.redis.flusher import Flusher
from modelrouter.store.redis.tracking import DecisionSync, Forward

__all__ = ["SharedMembers"]

log = logging.getLogger("modelrouter.store.redis")


class SharedMembers:
    """Control-plane and cross-worker feedback members of the Redis store."""

    control: SharedControl
    _flusher: Flusher
    _lock: threading.Lock
    _buf: DeltaBuffer
    _sync: DecisionSync | None
    _watchers: list[Callable[[], object]]
    _owner: str | None
    _forwards: list[Forward]
    forwarded: list[int]

    if TYPE_CHECKING:
        def record_seq(self, seq: int, metric: int, value: float, *,
                       window: bool = True) -> None: ...

    # -- control plane and cross-worker feedback (control.py) ---------------------------
    def publish_control(self, record: Mapping[str, Any], expected: int) -> bool:
        """Compare-and-set the shared routing state. While Redis cannot answer, the same
        change is retried for a few seconds (idempotent: a retry of a change whose reply was
        lost finds it installed and reports it so); then StoreError, nothing changed in this
        worker, and the change may be in force in Redis, which every worker, this one
        included, adopts at its next sync (tests/store/test_redis_reply_lost.py)."""
        return self.control.publish(record, expected)

    def read_control(self) -> dict[str, Any] | None:
        """The shared routing state in force (see control.py)."""
        return self.control.read()

    def watch(self, callback: Callable[[], object], owner: str) -> None:
        """Call ``callback`` after each flush; pop values forwarded to ``owner`` first."""
        with self._flusher.lock:
            self._owner = owner  # a forked child registers again with its own prefix
            if callback not in self._watchers:
                self._watchers.append(callback)

    def claim(self, key: str, ttl: float) -> bool | None:
        """Claim a feedback key in Redis (``SET NX PX``): counted once by all workers."""
        return self.control.claim(key, ttl)

    def unclaim(self, key: str) -> None:
        """Release a claim (the feedback was not recorded)."""
        self.control.unclaim(key)

    def forward(self, owner: str, seq: int, metric: int, value: float, full: bool) -> None:
        """Buffer a value for another worker's decision; pushed to its inbox by the flush."""
        with self._lock:
            self._forwards.append((owner, seq, metric, value, full))
            self.forwarded[0] += 1

    def publish_shadows(self, owner: str, state: str) -> None:
        """Replace this worker's shadow statistics in Redis (control.py)."""
        self.control.publish_shadows(owner, state)

    def read_shadows(self) -> dict[str, str]:
        """Every worker's shadow statistics (control.py)."""
        return self.control.read_shadows()

    def push_labels(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Hand labels to the workers that made the decisions (control.py)."""
        self.control.push_labels(items)

    def take_labels(self, owner: str) -> list[tuple[str, str]]:
        """Pop the labels handed to this worker (control.py)."""
        return self.control.take_labels(owner)

    def poll(self) -> None:
        """Release the feedback claims whose replies were lost (control.py), apply the values
        forwarded to this worker (one it cannot apply is counted; an inbox that cannot be read
        is logged and tried again next time), then run the watchers (errors logged), whatever
        the inbox did; the flusher calls it after each flush (tests call it to be
        deterministic).

        One poll takes and applies the inbox at a time (the flusher's ``polling`` lock): a poll
        forced while the background one holds values it popped waits for them to be applied,
        so its return means what was in the inbox is in this worker's buffer
        (tests/store/test_redis_poll_close.py). The watchers run outside that lock: each
        guards its own state (the routing state's lock, the shadow sync's)."""
        with self._flusher.polling:
            self._take_inbox()
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:  # a watcher must not stop the flusher
                log.exception("modelrouter: a routing-state watcher failed")

    def _take_inbox(self) -> None:
        """The body of :meth:`poll` before the watchers (its ``polling`` lock held)."""
        try:
            self.control.release_doubtful()
        except StoreError as exc:  # kept for the next poll; the inbox is independent
            log.warning("modelrouter: unanswered feedback claims not released yet: %s", exc)
        owner = self._owner
        inbox: list[tuple[int, int, float, bool]] = []
        refused, lost = self.control.refused["inbox"], 0  # (only polls refuse inbox entries)
        if owner is not None:
            try:
                inbox = self.control.take_inbox(owner)
            except StoreError as exc:  # kept in Redis (or its receipt) for the next poll
                log.warning("modelrouter: forwarded values not taken yet: %s", exc)
        for seq, metric, value, full in inbox:
            self.forwarded[1] += 1
            try:
                if full:
                    self.record_seq(seq, metric, value, window=False)
                elif self._sync is not None:  # the unit's value was recorded by the sender
                    with self._lock:
                        self._sync.tracker.apply(seq, metric, value)
            except UnknownDecisionError:
                self.forwarded[2] += 1  # evicted from the pending ring meanwhile
                lost += 1
            except (ValueError, TypeError, IndexError, OverflowError) as exc:
                self.control.refuse("inbox")  # take_inbox checked it: not expected
                log.error("modelrouter: a value forwarded to this worker was refused (%s); "
                          "counted in forwarded_refused", exc)
        refused = self.control.refused["inbox"] - refused
        if lost or refused:  # flushed into the shared counters: every analysis notes them
            with self._lock:
                self._buf.forwards_lost[0] += lost
                self._buf.forwards_lost[1] += refused
