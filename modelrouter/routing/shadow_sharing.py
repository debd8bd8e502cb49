"""Shadows across workers: one statistics for every worker's shadow calls, labels from anywhere.

With a shared store (Redis) each worker runs the shadows of the requests it serves, into its
own :class:`~modelrouter.store.shadows.ShadowLog`. :class:`ShadowSharing` joins them:

- **Publishing.** After the store's flushes (its background thread, :meth:`sync`), a worker
  whose log changed replaces its entry in the store with its whole state
  (:func:`~modelrouter.store.shadow_state.log_state`), at most every ``publish_every``
  seconds; :meth:`close` publishes once more at shutdown. A worker publishes its own totals,
  never deltas, so a repeated or lost write cannot count a pair twice or lose it for good.
- **Reading.** :meth:`snapshot` (``router.analysis().shadow(name)``) merges this worker's live
  log with every other worker's published state: counts and 2x2 tables add, moments merge
  exactly, reservoirs merge into a uniform sample of the union (store/shadow_state.py). What
  another worker measured since its last publication (at most ``publish_every`` seconds plus
  a flush interval) is not in it yet.
- **Labels from anywhere.** ``router.record_label`` for a decision made by another worker
  (its decision-id prefix) is handed to that worker (buffered here, pushed by :meth:`sync`,
  popped by the owner after its flushes and attached there, where the outputs of that
  decision are); the sender counts it ``"forwarded"``, the owner ``"attached"`` or
  ``"unknown"``. A label must be JSON data (a string, a finite number or a bool) to travel.

Without a shared store none of this exists: the router reads its log directly.

Thread safety: the outgoing labels are a list under a lock; :meth:`sync` runs on the store's
one background thread, and one call at a time: a forced one (shutdown, a test settling its
workers) waits for a background one that has taken labels but not attached them yet, so what
it publishes includes them; the log locks itself. A fork (store/forksafe.py) waits for the
queue's lock; the child gets a fresh sync lock, an empty queue and an empty log
(:meth:`_after_fork`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from modelrouter.exceptions import AnalysisError, StoreError
from modelrouter.store.forksafe import LEAF, renew, track
from modelrouter.store.protocol import Store
from modelrouter.store.shadow_state import log_state, merge_snapshots
from modelrouter.store.shadows import ShadowLog, ShadowSnapshot

__all__ = ["MAX_OUTBOX", "ShadowSharing"]

log = logging.getLogger("modelrouter.shadows")

MAX_OUTBOX = 100_000  # labels waiting for the next flush; beyond it a label is refused

class ShadowSharing:
    """One worker's side of the shared shadow statistics (see the module docstring)."""

    def __init__(self, log: ShadowLog, store: Store, owner: Callable[[], str], *,
                 publish_every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.store = store
        self._owner = owner  # this worker's decision-id prefix (renewed in a forked child)
        self.publish_every = publish_every
        self._clock = clock
        self._lock = threading.Lock()
        self._syncing = threading.Lock()  # one sync at a time (see the module docstring)
        self._outbox: list[tuple[str, str, str]] = []
        self._published = -1  # the log's change count at the last publication
        self._last = -math.inf
        track(self, self._lock, LEAF)  # held for a list swap or append: a fork waits for it
        renew(self, ShadowSharing._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a sync running in the parent's background thread at the fork
        holds the parent's ``_syncing`` for ever here (no thread of the child gives it), so a
        fresh one. The labels queued in the parent and the pairs its log holds are the
        parent's to push and publish (by both, the owner would attach the labels twice and
        the merged statistics count the pairs twice): the child starts with neither."""
        self._syncing = threading.Lock()
        self._outbox = []
        self.log.reset()
        self._published = self.log.changes  # nothing of its own to publish yet

    def __repr__(self) -> str:
        return (f"ShadowSharing(owner={self._owner()!r}, outbox={len(self._outbox)}, "
                f"publish_every={self.publish_every})")

    # -- labels ---------------------------------------------------------------------------
    def label(self, decision_id: str, y_true: Any) -> bool:
        """Attach ``y_true`` here (this worker's decision) or hand it to the worker whose
        decision it is (True: forwarded; it is attached there after its next flush).
        AnalysisError for a label the log refuses or that is not JSON data."""
        owner = self._owner()
        if decision_id.startswith(owner):
            return self.log.label(decision_id, y_true)
        self.log.check_label(y_true)
        if isinstance(y_true, float) and not math.isfinite(y_true) or not isinstance(
                y_true, (str, int, float)):
            raise AnalysisError(f"label ({str(y_true)[:60]!r}) for another worker's decision "
                                "must be a string, a finite number or a bool")
        with self._lock:
            if len(self._outbox) >= MAX_OUTBOX:
                raise AnalysisError(f"{MAX_OUTBOX} labels are waiting to be handed to other "
                                    "workers (the store is not flushing): try again later")
            self._outbox.append((decision_id[:len(owner)], decision_id, json.dumps(y_true)))
        self.log.count_label("forwarded")
        return True

    # -- background ----------------------------------------------------------------------
    def sync(self, force: bool = False) -> None:
        """Push outgoing labels, attach the ones handed to this worker, publish this
        worker's state if it changed (and ``publish_every`` passed, unless ``force``). Runs
        on the store's background thread after each flush, one call at a time; StoreError
        propagates (labels not pushed stay queued)."""
        with self._syncing:
            self._sync(force)

    def _sync(self, force: bool) -> None:
        with self._lock:
            out, self._outbox = self._outbox, []
        try:
            self.store.push_labels(out)
        except BaseException:
            with self._lock:
                self._outbox[:0] = out
            raise
        owner = self._owner()
        for decision_id, raw in self.store.take_labels(owner):
            try:
                self.log.label(decision_id, json.loads(raw))
            except (ValueError, AnalysisError):
                self.log.count_label("malformed")
        now = self._clock()
        changes = self.log.changes
        if changes != self._published and (force or now - self._last >= self.publish_every):
            self.store.publish_shadows(owner, json.dumps(log_state(self.log.snapshot())))
            self._published, self._last = changes, now

    def close(self) -> None:
        """Publish what is left (at shutdown, after the shadow runner stopped); a store that
        cannot be reached is logged, not raised (shutdown goes on)."""
        try:
            self.sync(force=True)
        except StoreError:
            log.exception("modelrouter: the shadow statistics could not be published")

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> ShadowSnapshot:
        """This worker's live statistics merged with every other worker's published ones."""
        owner = self._owner()
        states = []
        for who, raw in self.store.read_shadows().items():
            if who == owner:
                continue  # this worker's own: the live log is newer
            try:
                states.append(json.loads(raw))
            except ValueError:
                raise StoreError(f"worker {who!r} published shadow statistics that are not "
                                 "JSON") from None
        return merge_snapshots(self.log.snapshot(), states)
