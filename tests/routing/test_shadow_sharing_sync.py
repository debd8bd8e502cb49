"""ShadowSharing.sync runs one call at a time (routing/shadow_sharing.py).

Found under load: ``test_two_workers_replay_and_labels_from_anywhere`` (Redis, bandit) failed
3 times in ~50 runs with two busy loops beside it, its accuracy table missing 78 of 240 labels.
The store's background thread had taken labels handed to its worker (``take_labels`` pops
them) and not attached them yet when the test's forced sync ran: that one found nothing to
take, published the state without them, and the background sync, having just seen a
publication, did not publish again for ``publish_every``. A shutdown's forced sync (``close``)
had the same race. The forced sync now waits for the background one.

A forked child (gunicorn --preload, multiprocessing) also gets an empty label queue (the
parent's labels were pushed twice) and a queue lock no thread of the parent still holds.

Matrix cells: a shared store (a fake of its label calls: the race is in this class, not in
Redis); one worker process with its background thread, and a forked child; fresh.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest

from modelrouter.routing.shadow_sharing import ShadowSharing
from modelrouter.store.shadows import ShadowLog
from tests.forking import in_child


class _HeldLabels:
    """The label calls of a shared store. The first ``take_labels`` pops one label and then
    holds it until ``release`` is set, as a background thread that has popped labels and not
    attached them yet; later calls find nothing left."""

    def __init__(self) -> None:
        self.taken, self.release = threading.Event(), threading.Event()
        self.published: list[dict[str, Any]] = []
        self._first = True

    def push_labels(self, items: Any) -> None:
        pass

    def take_labels(self, owner: str) -> list[tuple[str, str]]:
        if not self._first:
            return []
        self._first = False
        self.taken.set()
        assert self.release.wait(10)
        return [("w2-d1", "1")]

    def publish_shadows(self, owner: str, state: str) -> None:
        self.published.append(json.loads(state))


def _sharing(store: _HeldLabels) -> ShadowSharing:
    return ShadowSharing(ShadowLog(("c",), "label"), store, lambda: "w1-")  # type: ignore[arg-type]


def test_a_forced_sync_publishes_the_labels_a_background_sync_has_taken() -> None:
    store = _HeldLabels()
    sharing = _sharing(store)
    background = threading.Thread(target=sharing.sync)
    background.start()
    assert store.taken.wait(10)
    forced = threading.Thread(target=lambda: sharing.sync(force=True))
    forced.start()
    forced.join(0.2)
    assert forced.is_alive()  # waiting for the background sync, not publishing without it
    store.release.set()
    background.join(10)
    forced.join(10)
    assert not background.is_alive() and not forced.is_alive()
    # the last publication includes the label (for a decision this log does not know:
    # counted "unknown", which is what a publication carries for it)
    assert store.published and store.published[-1]["labels"] == {"unknown": 1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_during_a_background_sync_can_sync() -> None:
    """A sync in the parent's background thread at the fork holds the parent's lock; the
    child (where that thread does not exist) gets a fresh one instead of waiting for ever."""
    store = _HeldLabels()
    sharing = _sharing(store)
    background = threading.Thread(target=sharing.sync)
    background.start()
    assert store.taken.wait(10)

    def child() -> None:  # its sync must return (a lock held for ever would hang here)
        done = threading.Event()
        threading.Thread(target=lambda: (sharing.sync(force=True), done.set()),
                         daemon=True).start()
        assert done.wait(5)

    try:
        in_child(child)
    finally:
        store.release.set()
        background.join(10)


class _Pushes(_HeldLabels):
    """A store that keeps what is pushed to it (nothing held)."""

    def __init__(self) -> None:
        super().__init__()
        self._first = False
        self.pushed: list[tuple[str, str, str]] = []

    def push_labels(self, items: Any) -> None:
        self.pushed.extend(items)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_labels_queued_in_the_parent_are_not_pushed_by_a_forked_child() -> None:
    """A label for another worker's decision queued before the fork is the parent's to push:
    pushed by the child as well, the owner would attach it twice. The child starts with an
    empty queue and queues its own labels; the parent pushes the one it queued."""
    store = _Pushes()
    sharing = _sharing(store)
    assert sharing.label("w2-d1", 1)  # another worker's decision: queued

    def child() -> None:
        sharing.sync(force=True)
        assert store.pushed == []
        assert sharing.label("w2-d2", 0)
        sharing.sync(force=True)
        assert [d for _, d, _ in store.pushed] == ["w2-d2"]

    in_child(child)
    sharing.sync(force=True)
    assert store.pushed == [("w2-", "w2-d1", "1")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_fork_waits_for_a_label_being_queued() -> None:
    """The outgoing queue's lock is held across a fork only between whole operations: a fork
    while another thread holds it waits until it is given (before: the child's copy stayed
    held and its first label hung)."""
    store = _Pushes()
    sharing = _sharing(store)
    held = threading.Event()

    def hold() -> None:
        with sharing._lock:
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)

    def child() -> None:
        done = threading.Event()
        threading.Thread(target=lambda: (sharing.label("w2-d3", 1), done.set()),
                         daemon=True).start()
        assert done.wait(5)

    in_child(child)  # the fork waits for the holder
    holder.join(10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_publishes_its_own_pairs_not_the_parents() -> None:
    """The parent's log holds a pair at the fork and publishes it under its own entry. Before:
    the child's copy of the log published it again under the child's entry, so the merged
    statistics counted the parent's pair once per process. The child publishes only what it
    shadowed itself."""
    store = _Pushes()
    sharing = _sharing(store)
    sharing.log.open("w1-d1", 1)
    sharing.log.done("w1-d1", "c", 1, 1.0, 1, 2.0)
    sharing.sync(force=True)
    assert store.published[-1]["stats"]["c"]["submitted"] == 1

    def child() -> None:
        before = len(store.published)
        sharing.sync(force=True)  # nothing of its own yet: nothing published
        assert len(store.published) == before
        sharing.log.open("w9-d1", 0)
        sharing.log.done("w9-d1", "c", 0, 1.0, 1, 2.0)
        sharing.sync(force=True)
        assert store.published[-1]["stats"]["c"]["submitted"] == 1

    in_child(child)
    assert sharing.log.snapshot().stats["c"].submitted == 1  # the parent keeps its own
