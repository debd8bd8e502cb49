"""The routing decision handed to the app through ``scope["state"]["modelrouter"]``."""

from __future__ import annotations

from typing import Any, NamedTuple

from modelrouter.exceptions import ConfigError

__all__ = ["Decision", "call_model"]


def call_model(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``model.predict(*args, **kwargs)``, or ``model(*args, **kwargs)`` for a plain callable
    without ``predict`` (a function, a lambda)."""
    predict = getattr(model, "predict", None)
    if predict is not None:
        return predict(*args, **kwargs)
    if callable(model):
        return model(*args, **kwargs)
    raise ConfigError(f"model {model!r} has no predict method and is not callable")


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

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """The served model's prediction: ``model.predict(*args, **kwargs)`` (or
        ``model(*args, **kwargs)`` for a plain callable), returned at once. On a decision
        chosen for shadow evaluation (``ModelRouter(shadows=...)``) the same arguments are
        also handed to every shadow in the background (:mod:`modelrouter.routing.shadows`)."""
        return call_model(self.model, args, kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain data (without the model object)."""
        d = self._asdict()
        del d["model"]
        d["segment"] = list(self.segment)
        return d
