"""The routing state: the one writer of the allocation, the epoch and the mode.

(Being built: see issue "One owner per concept".) For now it holds the control-plane event type.
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
