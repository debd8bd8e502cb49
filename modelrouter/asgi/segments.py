"""Reading a request's segment values (platform, country, ...) from the ASGI scope.

``RouterConfig(segments={"platform": "x-platform"})`` maps each declared dimension to a request
header; ``segment_fn(scope) -> {dimension: value}`` may supply (or override) values. A missing
or empty value is ``"unknown"``. Values are only *read* here: the store fixes them at the unit's
first exposure and caps each dimension's cardinality (overflow becomes ``"other"``, counted), so
a hostile header cannot grow memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelrouter.asgi.types import Scope
from modelrouter.config import RouterConfig

__all__ = ["UNKNOWN", "SegmentReader"]

UNKNOWN = "unknown"
_MAX_VALUE = 64  # longer values are cut: they are labels, not payloads


class SegmentReader:
    """``reader(scope)`` -> one value per declared dimension, in declaration order.

    Cost: one pass over the request headers, and only when segments are configured.
    """

    __slots__ = ("_dims", "_fn", "_headers")

    def __init__(self, config: RouterConfig) -> None:
        self._dims = tuple(config.segments)
        self._headers = {h.encode("latin-1"): i
                         for i, h in enumerate(config.segments.values()) if h is not None}
        # the config's callable takes the scope as a read-only mapping of arbitrary ASGI values
        self._fn: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = config.segment_fn

    def __bool__(self) -> bool:
        """Whether any dimension is declared (no reader is needed otherwise)."""
        return bool(self._dims)

    def __call__(self, scope: Scope) -> tuple[str, ...]:
        """The request's value of each dimension; ``"unknown"`` where none is given."""
        values = [UNKNOWN] * len(self._dims)
        if self._headers:
            headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
            for key, raw in headers:
                i = self._headers.get(key)
                if i is not None and values[i] is UNKNOWN:
                    text = raw.decode("latin-1").strip()[:_MAX_VALUE]
                    if text:
                        values[i] = text
        if self._fn is not None:
            extra: object
            try:
                extra = self._fn(scope)
            except Exception:  # a failing callable must not turn a request into a 500
                extra = None
            if isinstance(extra, Mapping):  # user code: whatever else it returns is ignored
                for i, dim in enumerate(self._dims):
                    v = extra.get(dim)
                    if v is not None and str(v).strip():
                        values[i] = str(v).strip()[:_MAX_VALUE]
        return tuple(values)
