"""Plain JSON data from results: the one conversion ``Analysis.to_dict()`` and the HTTP
surface's JSON answers use (in the stats layer so every layer above can share it).

Strict JSON has no NaN or infinity, and results hold both (a p-value that is not defined, an
interval without a bound). :func:`plain` turns a result's ``to_dict()`` (possibly with numpy
values, tuples and non-finite floats) into data that ``json.dumps(..., allow_nan=False)``
accepts: NaN and +-inf become ``None`` (JSON ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

import numpy as np

__all__ = ["JSON", "finite_or_none", "plain"]

JSON: TypeAlias = "None | bool | int | float | str | list[JSON] | dict[str, JSON]"


def finite_or_none(x: float | None) -> float | None:
    """``x`` when it is a finite number, else None (NaN and +-inf as JSON null)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def plain(value: object) -> JSON:
    """``value`` as plain JSON data: NaN/inf become None, tuples, sets and numpy arrays
    lists, numpy scalars Python numbers, mapping keys strings, anything else its ``str``."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return plain(value.tolist())
    return str(value)
