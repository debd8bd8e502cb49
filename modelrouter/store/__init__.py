"""Stores of experiment statistics: in memory (default) and, as an extra, Redis."""

from modelrouter.store.memory import MemoryStore, Snapshot
from modelrouter.store.moments import Moments

__all__ = ["MemoryStore", "Moments", "Snapshot"]
