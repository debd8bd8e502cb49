"""Feedback values: what :meth:`Experiment.record` accepts, as a number, and in what range.

One rule for every entry point (``record``, ``record_unit``, ``record_token``, HTTP feedback):
a real number (numpy scalars, ``Fraction`` and ``Decimal`` included), finite, in the metric's
range (:func:`value_range`), checked before anything is buffered, with a message naming the
metric and the value. The bounds keep every sum of squares the stores keep finite and every
non-zero variance above underflow (see :data:`MAX_ABS_VALUE`, :data:`MIN_ABS_VALUE`).
"""

from __future__ import annotations

import math
import operator

from modelrouter.config import MetricSpec
from modelrouter.exceptions import InvalidValueError

__all__ = ["MAX_ABS_VALUE", "MAX_LATENCY_MS", "MIN_ABS_VALUE", "check_value", "in_range",
           "value_range"]

MAX_ABS_VALUE = 1e100
"""The largest magnitude a feedback value may have: ``|value| <= 1e100``, else
:class:`~modelrouter.exceptions.InvalidValueError` before anything changes.

Why: the stores keep sums and sums of squares of per-unit totals (``x``, ``x**2``), and the
analysis their second moments. With ``|value| <= 1e100`` a square is at most ``1e200``, which
leaves a factor ``1e108`` below the largest float (``1.8e308``): every sum of squares stays
finite as long as ``units x (values per unit)**2 < 1e108``, i.e. for any traffic a store can
hold. Higher powers (Welch's degrees of freedom, delta-method variances) are computed in a
scaled form by the statistics (see docs/statistics.md, "Numerical safety"). No real metric
comes near the bound (a currency amount of ``1e100`` is not revenue)."""

MIN_ABS_VALUE = 1e-100
"""The smallest magnitude a non-zero feedback value may have: ``0`` or ``|value| >= 1e-100``.

Why: the mirror image of :data:`MAX_ABS_VALUE`. Sums of such values are 0 or at least about
``1e-116`` in magnitude (a multiple of the last bit of ``1e-100``), so every non-zero square of a
per-unit total or of a difference between two is at least ``1e-232``, far above the smallest
float: no spread underflows to a variance of 0 (which would report a zero standard error and a
p-value of 0 for data that do vary)."""

MAX_LATENCY_MS = 86_400_000.0
"""The largest ``latency_ms`` that :meth:`Experiment.record` accepts: 24 hours, in ms."""

# (low, high, smallest non-zero magnitude); binary: 1.0, so that the range is exactly {0, 1}
_BINARY = (0.0, 1.0, 1.0)
_AUTOMATIC_RANGE = {"latency_ms": (0.0, MAX_LATENCY_MS, MIN_ABS_VALUE), "error": _BINARY}
_CONTINUOUS = (-MAX_ABS_VALUE, MAX_ABS_VALUE, MIN_ABS_VALUE)


def value_range(spec: MetricSpec) -> tuple[float, float, float]:
    """``(low, high, tiny)``: a value of ``spec``'s metric must be 0 or lie in
    ``[low, high]`` with a magnitude of at least ``tiny``.

    Binary metrics (and the automatic ``error``): ``(0, 1, 1)``, i.e. 0 or 1. The automatic
    ``latency_ms``: a duration, ``(0, MAX_LATENCY_MS, MIN_ABS_VALUE)``. Every other continuous
    metric: ``(-MAX_ABS_VALUE, MAX_ABS_VALUE, MIN_ABS_VALUE)``.
    """
    automatic = _AUTOMATIC_RANGE.get(spec.name)
    if automatic is not None:
        return automatic
    return _BINARY if spec.kind == "binary" else _CONTINUOUS


def in_range(value: float, low: float, high: float, tiny: float) -> bool:
    """Whether ``value`` is 0 or lies in ``[low, high]`` with ``|value| >= tiny`` (False for
    NaN): the test :meth:`Experiment.record`'s fast paths inline."""
    return tiny <= value <= high or value == 0.0 or low <= value <= -tiny


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_numpy_bool(t: type) -> bool:
    return t.__module__ == "numpy" and t.__name__ in ("bool", "bool_")


def _as_float(spec: MetricSpec, value: object) -> float:
    """``value`` as a float if it is a real number, else InvalidValueError.

    Accepted: ``float`` (and subclasses such as ``numpy.float64``), ``int`` (exactly, then
    rounded to the nearest float), ``bool`` and ``numpy.bool_`` (as 0 and 1), every
    :class:`numbers.Integral` (``numpy.int64``, ``numpy.uint8``, ...: read exactly through
    ``__index__``), every other :class:`numbers.Real` (``numpy.float32``,
    :class:`fractions.Fraction`) and :class:`decimal.Decimal`, both rounded to the nearest
    float. Refused: everything else (``str``, ``bytes``, ``complex``, arrays, ``None``, ...).
    Neither numpy nor :mod:`numbers` is imported by the routing core until a value that is
    not a plain float, int or bool arrives.
    """
    if isinstance(value, float):
        return float(value)
    t = type(value)
    if t is bool or _is_numpy_bool(t):
        return 1.0 if value else 0.0
    import numbers  # lazy: not on the routing path's import
    from decimal import Decimal

    try:
        if isinstance(value, numbers.Integral):
            return float(operator.index(value))
        if isinstance(value, (numbers.Real, Decimal)):
            return float(value)
    except OverflowError:  # an int or Fraction beyond the float range
        raise InvalidValueError(f"value for metric {spec.name!r} must be finite and at most "
                                f"{MAX_ABS_VALUE:g} in magnitude (MAX_ABS_VALUE), got a "
                                "number too large for a float") from None
    except (ValueError, ArithmeticError):  # Decimal("sNaN") and the like
        raise InvalidValueError(f"value for metric {spec.name!r} must be finite, got "
                                f"{_shown(value)}") from None
    raise InvalidValueError(f"value for metric {spec.name!r} must be a number, "
                            f"got {t.__name__} {_shown(value)}")


def check_value(spec: MetricSpec, value: object) -> float:
    """Validate a feedback value for a metric; return it as a float or raise InvalidValueError.

    The value must be a real number (see ``_as_float`` for the types accepted, rounded to the
    nearest float before it is checked), finite and in :func:`value_range` of the metric: 0 or
    1 for binary metrics and ``error``, ``0 .. MAX_LATENCY_MS`` for ``latency_ms``, at most
    :data:`MAX_ABS_VALUE` in magnitude otherwise; non-zero magnitudes below
    :data:`MIN_ABS_VALUE` are refused too. The message names the metric and the value.
    """
    v = _as_float(spec, value)
    low, high, tiny = value_range(spec)
    if in_range(v, low, high, tiny):
        return v
    name, shown = spec.name, _shown(value)
    if math.isnan(v):
        raise InvalidValueError(f"value for metric {name!r} must be finite, got {shown}")
    if tiny == 1.0:
        why = "finite" if math.isinf(v) else "0 or 1"
        raise InvalidValueError(f"value for binary metric {name!r} must be {why}, got {shown}")
    if name == "latency_ms" and not (0.0 < v < tiny):
        raise InvalidValueError(f"value for metric 'latency_ms' (recorded automatically by the "
                                f"middleware) must be a finite duration in milliseconds from 0 "
                                f"to {high:.0f} (24 hours), got {shown}")
    if v != 0.0 and -tiny < v < tiny:
        raise InvalidValueError(f"value for metric {name!r} must be 0 or at least "
                                f"{MIN_ABS_VALUE:g} in magnitude (MIN_ABS_VALUE: smaller squares "
                                f"underflow), got {shown}")
    raise InvalidValueError(f"value for metric {name!r} must be finite and at most "
                            f"{MAX_ABS_VALUE:g} in magnitude (MAX_ABS_VALUE), got {shown}")
