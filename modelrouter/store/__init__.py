"""Stores of experiment statistics: in memory (default) and, as an extra, Redis."""

from modelrouter.stats.moments import Moments
from modelrouter.store.memory import MemoryStore, Snapshot

__all__ = ["MemoryStore", "Moments", "Snapshot"]
