"""What a ``fork`` must not copy as is (gunicorn ``--preload``, multiprocessing).

A fork while another thread holds a lock leaves the child's copy locked for ever: the thread
that would release it stayed in the parent. For each lock :func:`track`\\ ed here, the fork
waits until no thread holds it (``before``: this module takes it), and parent and child
release it afterwards. Tracked: the routing state's lock (control-plane changes), the store's
lock (every exposure and record, and the background threads that read the store: the bandit's
refresh, the Redis flusher's drain), the feedback replay guard's and counts', the shadow
label queue's, the shadow log's (its pairs and labels), the Redis control's lists of claims
and pops to retry. Their critical sections are short, so the wait is too. Locks held across
long work are not waited for but replaced in the child by a :func:`renew` hook, with the state
they guard: the guardrail and rollout monitors' (a check runs an analysis; background.py), the
recorded looks' (modelrouter/experiment.py), the bandit's and the shadow runner's threads.

**Order.** The locks are taken in increasing ``rank`` (:data:`CONTROL`, then :data:`STORE`,
then :data:`LEAF`), the order the code nests them in (a control-plane change holds the routing
lock and calls the store; nothing waits for a routing lock inside the store's): taking them in
another order could wait for ever on a thread that holds a store lock and waits for a routing
lock the fork already holds. A thread that forks while it holds a tracked lock itself waits
for ever (the locks are not reentrant); nothing in this package forks.

**In the child**, each lock is first reset when it can be (``after_fork``: the compiled store
lock forgets the parent's waiters, threads the child does not have; a release that handed the
lock to one of them would leave it held), then released; then the :func:`renew` hooks run, in
the order they were registered, with every lock free: they may take them (the Redis store's
reset drains its local store under the store's lock).

Thread safety: the registries are :class:`weakref.WeakKeyDictionary` objects of owners (a lock
is forgotten with its owner), read as lists; the locks taken for a fork are remembered, so a
lock tracked while the fork waited is not released without having been taken.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

__all__ = ["CONTROL", "LEAF", "STORE", "Lock", "renew", "track"]

CONTROL = 0  #: the routing state's lock: taken first
STORE = 1  #: a store's lock: taken inside CONTROL
LEAF = 2  #: a lock nothing else is taken inside (a queue's)


class Lock(Protocol):
    """``threading.Lock``'s interface, as far as a fork needs it."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


_LOCKS: weakref.WeakKeyDictionary[object, tuple[int, Lock]] = weakref.WeakKeyDictionary()
_HOOKS: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_taken: list[Lock] = []  # the locks the running fork holds, in the order taken


def track(owner: object, lock: Lock, rank: int = CONTROL) -> None:
    """Hold ``lock`` across every fork while ``owner`` is alive, taken in ``rank`` order (one
    lock per owner: a second call replaces the first)."""
    _LOCKS[owner] = (rank, lock)


def renew(owner: T, hook: Callable[[T], None]) -> None:
    """Call ``hook(owner)`` in every forked child while ``owner`` is alive, after the tracked
    locks are released (one hook per owner: a second call replaces the first)."""
    _HOOKS[owner] = hook


def _before_fork() -> None:
    for _rank, lock in sorted(list(_LOCKS.values()), key=lambda pair: pair[0]):
        lock.acquire()
        _taken.append(lock)


def _after_fork_in_parent() -> None:
    while _taken:
        _taken.pop().release()


def _after_fork_in_child() -> None:
    while _taken:
        lock = _taken.pop()
        reset = getattr(lock, "after_fork", None)
        if reset is not None:
            reset()
        lock.release()
    for owner, hook in list(_HOOKS.items()):
        hook(owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
