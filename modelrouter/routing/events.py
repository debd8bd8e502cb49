"""Rollback and resume events of the routing state, with when and why.

Kept apart from :mod:`modelrouter.routing.state` (which re-exports :class:`RollbackEvent`) so
the state module stays about the one writer; :meth:`RollbackEvent.from_dict` reads the events
another worker published in the shared routing record (shared.py).

Thread safety: immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = ["RollbackEvent"]


@dataclass(frozen=True)
class RollbackEvent:
    """A weight change made by the guardrail monitor (``rollback``) or undone by a user
    (``resume``), with when and why."""

    kind: Literal["rollback", "resume"]
    at: float
    reasons: tuple[str, ...]
    weights_before: Mapping[str, float] = field(default_factory=dict)
    weights_after: Mapping[str, float] = field(default_factory=dict)

    @property
    def when(self) -> str:
        """``at`` as an ISO 8601 UTC time."""
        try:
            return datetime.fromtimestamp(self.at, tz=timezone.utc).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):  # an injected clock far from the epoch
            return f"{self.at:g}"

    def __repr__(self) -> str:
        return f"RollbackEvent({self.kind} at {self.when}: {'; '.join(self.reasons)})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"kind": self.kind, "at": self.at, "when": self.when, "reasons": list(self.reasons),
                "weights_before": dict(self.weights_before),
                "weights_after": dict(self.weights_after)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RollbackEvent:
        """The event of :meth:`to_dict` (as another worker published it)."""
        kind: Literal["rollback", "resume"] = (
            "rollback" if data["kind"] == "rollback" else "resume")
        return cls(kind, float(data["at"]), tuple(str(r) for r in data["reasons"]),
                   {str(k): float(v) for k, v in data["weights_before"].items()},
                   {str(k): float(v) for k, v in data["weights_after"].items()})
