"""Small result types shared by the statistical functions."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfidenceInterval"]


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided interval ``[low, high]``; either end may be infinite."""

    low: float
    high: float

    def __repr__(self) -> str:
        return f"ConfidenceInterval(low={self.low:.6g}, high={self.high:.6g})"

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float]:
        """The interval as ``{"low": ..., "high": ...}``."""
        return {"low": float(self.low), "high": float(self.high)}
