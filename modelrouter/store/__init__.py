"""Stores of experiment statistics: in memory (default) and, as an extra, Redis.

Names are loaded on first use (PEP 562), so importing one store module does not import the
others, numpy, or the statistics package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelrouter.stats.moments import Moments
    from modelrouter.store.memory import MemoryStore
    from modelrouter.store.types import Snapshot

__all__ = ["MemoryStore", "Moments", "Snapshot"]

_WHERE = {"MemoryStore": "modelrouter.store.memory", "Moments": "modelrouter.stats.moments",
          "Snapshot": "modelrouter.store.types"}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
