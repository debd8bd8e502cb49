"""What a ``fork`` must not copy as is (gunicorn ``--preload``, multiprocessing).

A fork while another thread holds a lock leaves the child's copy locked forever. For each
lock :func:`track`\\ ed here, the fork waits until no thread holds it (``before``), and both
parent and child release it afterwards. Used for the routing state's lock, which guards
control-plane changes (never the request path), so waiting is short.

Identities must not be copied either: :func:`renew` runs a hook in the child for each live
owner (an experiment draws a new decision-id prefix there).

Thread safety: the registry is a :class:`weakref.WeakKeyDictionary` of owners; a lock is
forgotten with its owner.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["renew", "track"]

_LOCKS: weakref.WeakKeyDictionary[object, threading.Lock] = weakref.WeakKeyDictionary()
_HOOKS: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def track(owner: object, lock: threading.Lock) -> None:
    """Hold ``lock`` across every fork while ``owner`` is alive."""
    _LOCKS[owner] = lock


def renew(owner: T, hook: Callable[[T], None]) -> None:
    """Call ``hook(owner)`` in every forked child while ``owner`` is alive."""
    _HOOKS[owner] = hook


def _before_fork() -> None:
    for lock in list(_LOCKS.values()):
        lock.acquire()


def _after_fork() -> None:
    for lock in list(_LOCKS.values()):
        if lock.locked():
            lock.release()


def _after_fork_in_child() -> None:
    _after_fork()
    for owner, hook in list(_HOOKS.items()):
        hook(owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork_in_child)
