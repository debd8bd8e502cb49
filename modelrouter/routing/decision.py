"""The routing decision handed to the app through ``scope["state"]["modelrouter"]``."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Decision"]


class Decision(NamedTuple):
    """One routing decision; immutable (a tuple, cheap to create on the request path).

    ``decision_id`` ties late feedback to this request (``router.record(decision_id, ...)``);
    ``propensity`` is the probability with which ``variant`` was chosen (its weight in the
    allocation of ``epoch``); ``counted`` is False when the request is served but left out of
    the experiment (no unit id under the ``"control"`` missing-unit policy).
    """

    decision_id: str
    variant: str
    model: Any
    unit_id: str | None
    propensity: float
    epoch: int
    mode: str
    issued_at: float
    counted: bool = True
    segment: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"Decision(decision_id={self.decision_id!r}, variant={self.variant!r}, "
                f"unit_id={self.unit_id!r}, propensity={self.propensity:.4g}, "
                f"epoch={self.epoch}, mode={self.mode!r}, counted={self.counted})")

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain data (without the model object)."""
        d = self._asdict()
        del d["model"]
        d["segment"] = list(self.segment)
        return d
