"""Recording a unit's pre-exposure covariate: ``router.record_covariate(unit, name, value)``.

A covariate is a number per unit known before the experiment could change it (last month's
clicks, from a feature store or the warehouse); metrics that declare it
(``MetricSpec.covariates``) are compared with CUPED adjustment (analysis/adjusted.py). The
value is checked like a continuous metric's feedback value (routing/values.py: a real number,
finite, ``|value| <= MAX_ABS_VALUE``, 0 or ``|value| >= MIN_ABS_VALUE``) and kept with the time
it was recorded: the analysis uses it only if recorded at or before the unit's first exposure.
A unit not exposed yet is fine (the store keeps the value until it is, store/covariates.py).
The first value of a unit's covariate wins.

Thread safety: the store's (the memory store's lock; Redis buffers under its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from modelrouter.config import MetricSpec, RouterConfig
from modelrouter.config.unit_ids import check_unit_id
from modelrouter.exceptions import FeedbackError, UnknownMetricError
from modelrouter.routing.values import check_value
from modelrouter.store.protocol import Store

__all__ = ["CovariateTarget", "record_covariate"]


class CovariateTarget(Protocol):
    """What :func:`record_covariate` reads of an :class:`~modelrouter.routing.Experiment`."""

    @property
    def config(self) -> RouterConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Callable[[], float]: ...


def record_covariate(experiment: CovariateTarget, unit: str, name: str, value: object) -> None:
    """Keep ``value`` of covariate ``name`` for ``unit`` (first value wins), recorded now.

    Refused: a request-level experiment (FeedbackError: there is no unit to describe), a name
    no metric declares (UnknownMetricError naming the declared ones), a value that is not a
    finite real number in range (InvalidValueError), a unit id that is not valid (UnitIdError).
    """
    config = experiment.config
    if config.level == "request":
        raise FeedbackError("record_covariate needs a unit-level experiment; this one "
                            "randomises requests (level='request')")
    unit = check_unit_id(unit, config.max_unit_id_length)
    names = experiment.store.covariate_names
    if not isinstance(name, str) or name not in names:
        raise UnknownMetricError(f"covariate {str(name)[:60]!r} is not declared by any metric; "
                                 f"declared covariates are {sorted(names)}")
    v = check_value(MetricSpec(name, "continuous"), value)
    experiment.store.record_covariate(unit, names.index(name), v, experiment.clock())
