"""Every validator of the configuration, written once.

Each check takes the *path* of a field (``level``, ``metrics.click.kind``, ``weights.a``) and
its value, and either returns the value, normalised (``float`` for a number, ``tuple`` for a
list), or raises :class:`~modelrouter.exceptions.ConfigError` with one sentence that names the
path, repeats the bad value in parentheses and says what it must be::

    plan.alpha (1.2) must be in (0, 1)
    metrics.click.kind ('bool') must be one of 'binary', 'continuous'

Why one module: the config modules (metrics, plan, guardrails, bandit, store, http,
router_config) used to carry five copies of "is this a number", each with its own idea of
whether ``True`` is an integer or ``nan`` a number. Here the rules hold for every field at
once: a bool is neither a number nor an integer, ``nan`` and ``inf`` are not finite numbers,
an integer must fit in 64 bits (it may reach numpy arrays), an int too large for a float is not
a number, and a bad value is shown safely even when ``repr`` of it would fail or flood the
message. Like tea-tasting's ``check_scalar``, one function (:func:`check_number`) covers every
numeric parameter through its bounds.

Choices are ``Literal`` aliases (``Level = Literal["user", "session", "request"]``): the
allowed values are read from the alias with :func:`typing.get_args`, so each list of choices
is written once, in its type.

This module imports nothing from the package but the exception, so any config module may use
it. Its names are public (no leading underscore) because the other config modules import them;
the module itself is private to :mod:`modelrouter.config`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, get_args

from modelrouter.exceptions import ConfigError

__all__ = [
    "MAX_INT",
    "NAME_CHARS",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_integer",
    "check_keys",
    "check_list",
    "check_mapping",
    "check_mapping_of",
    "check_name",
    "check_number",
    "check_open_unit",
    "check_optional",
    "check_path_prefixes",
    "check_positive",
    "check_positive_int",
    "check_secret",
    "check_text",
    "check_url_prefix",
    "choices",
    "invalid",
    "show",
]

T = TypeVar("T")

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
MAX_INT = 2**63 - 1  # integers reach numpy int64 arrays and counters
_MAX_SHOWN = 200  # characters of a bad value repeated in a message


# -- messages --------------------------------------------------------------------------------
def show(value: object) -> str:
    """``repr(value)`` for a message: shortened when long, and never failing (an int of more
    than 4300 digits has no ``repr`` in Python >= 3.11; a user object's ``__repr__`` may
    raise)."""
    try:
        text = repr(value)
    except Exception:  # any failure of repr must not hide the config error
        if isinstance(value, int):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__} object>"
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def invalid(path: str, value: object, requirement: str) -> ConfigError:
    """The error ``{path} ({value!r}) must be {requirement}``, to raise."""
    return ConfigError(f"{path} ({show(value)}) must be {requirement}")


def _or_none(requirement: str, or_none: bool) -> str:
    return requirement + " or None" if or_none else requirement


def _bound(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``> 0``, ``>= 1``, ``<= 5``, ``in (0, 1)``, ``in [0, 0.5]``..."""
    if low is not None and high is not None:
        return (f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return "a number"  # pragma: no cover - only called with a bound


def _outside(v: float, low: float | None, high: float | None, low_open: bool,
             high_open: bool) -> bool:
    return ((low is not None and (v < low or (low_open and v == low)))
            or (high is not None and (v > high or (high_open and v == high))))


# -- choices and names ----------------------------------------------------------------------
def choices(alias: object) -> tuple[Any, ...]:
    """The values of a ``Literal`` alias: ``choices(Level) == ("user", "session", "request")``."""
    options = get_args(alias)
    if not options:
        raise TypeError(f"{alias!r} is not a Literal alias")
    return options


def check_choice(path: str, value: object, alias: object, *, expected: str | None = None) -> None:
    """``value`` is one of the values of the ``Literal`` alias (a bool never is)."""
    options = choices(alias)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value not in options:
        raise invalid(path, value, expected or "one of " + ", ".join(map(repr, options)))


def check_name(path: str, value: object) -> str:
    """A name: 1 to 64 letters, digits, ``_``, ``-`` and ``.`` (metrics, variants, ...)."""
    if (not isinstance(value, str) or not value or len(value) > 64
            or not set(value) <= NAME_CHARS):
        raise invalid(path, value, "a non-empty name of at most 64 characters from letters, "
                      "digits, '_', '-' and '.'")
    return value


def check_keys(path: str, keys: Iterable[object], known: frozenset[str], *,
               what: str = "field") -> None:
    """No key outside ``known``: ``plan.lookz: unknown plan field; known plan fields are [...]``."""
    unknown = sorted((k for k in keys if k not in known), key=str)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{where}: unknown {what}; known {what}s are {sorted(known)}")


# -- scalars ----------------------------------------------------------------------------------
def check_bool(path: str, value: object) -> bool:
    """``True`` or ``False`` (not 0, 1 or ``"yes"``)."""
    if not isinstance(value, bool):
        raise invalid(path, value, "a bool")
    return value


def check_number(path: str, value: object, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 expected: str | None = None, why: str | None = None,
                 or_none: bool = False) -> float:
    """A finite int or float (not a bool) within the bounds, as a float.

    The message says ``must be a finite number`` or the range (``> 0``, ``in [0, 0.5]``);
    ``expected`` replaces both, ``why`` is added after the range (``: one value is ...``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(path, value, _or_none(expected or "a finite number", or_none))
    try:
        number = float(value)
    except OverflowError:  # an int beyond the range of a float
        raise invalid(path, value, _or_none(expected or "a finite number", or_none)) from None
    if not math.isfinite(number):
        raise invalid(path, value, _or_none(expected or "a finite number", or_none))
    if _outside(number, low, high, low_open, high_open):
        requirement = _or_none(expected or _range(low, high, low_open, high_open), or_none)
        raise invalid(path, value, requirement + (f": {why}" if why else ""))
    return number


def check_integer(path: str, value: object, *, low: int | None = None, high: int | None = None,
                  low_open: bool = False, high_open: bool = False, expected: str | None = None,
                  why: str | None = None, or_none: bool = False) -> int:
    """An int (not a bool, not a float such as ``10.0``) that fits in 64 bits, within the
    bounds. Messages as for :func:`check_number`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, value, _or_none(expected or "an integer", or_none))
    if abs(value) > MAX_INT:
        raise invalid(path, value, _or_none(expected or "a 64-bit integer", or_none))
    if _outside(value, low, high, low_open, high_open):
        requirement = _or_none(expected or _range(low, high, low_open, high_open), or_none)
        raise invalid(path, value, requirement + (f": {why}" if why else ""))
    return int(value)


def check_positive(path: str, value: object, *, or_none: bool = False) -> float:
    """A finite number > 0."""
    return check_number(path, value, low=0, low_open=True, or_none=or_none)


def check_positive_int(path: str, value: object, *, or_none: bool = False) -> int:
    """An integer > 0."""
    return check_integer(path, value, low=0, low_open=True, or_none=or_none)


def check_open_unit(path: str, value: object, *, or_none: bool = False) -> float:
    """A number in (0, 1): an error rate, a power, a conversion rate."""
    return check_number(path, value, low=0, high=1, low_open=True, high_open=True,
                        or_none=or_none)


def check_text(path: str, value: object, *, expected: str = "a non-empty string",
               allow_empty: bool = False, or_none: bool = False) -> str:
    """A string; unless ``allow_empty``, one with something besides spaces."""
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise invalid(path, value, _or_none(expected, or_none))
    return value


def check_callable(path: str, value: object, *, expected: str = "a callable",
                   or_none: bool = False) -> Callable[..., object]:
    """Something to call (``expected`` says with what: ``a callable taking the scope``)."""
    if not callable(value):
        raise invalid(path, value, _or_none(expected, or_none))
    return value


def check_secret(path: str, value: object, *, source: str) -> str:
    """A secret: a string of at least 16 printable characters without surrounding spaces.

    The message names ``source`` (``the argument or $MODELROUTER_SECRET``) but never the value:
    it may be a real secret with a typo.
    """
    if (not isinstance(value, str) or len(value) < 16 or not value.isprintable()
            or value != value.strip()):
        raise ConfigError(f"{path} (from {source}) must be a string of at least 16 printable "
                          "characters without surrounding spaces")
    return value


def check_url_prefix(path: str, value: object) -> str:
    """A URL path prefix such as ``/_modelrouter``: no trailing ``/``, name characters only."""
    if (not isinstance(value, str) or not value.startswith("/") or value.endswith("/")
            or len(value) < 2 or not set(value[1:]) <= NAME_CHARS | {"/"}):
        raise invalid(path, value, "a path that starts with '/', does not end with '/', and "
                      "uses letters, digits, '_', '-', '.' and '/'")
    return value


# -- collections ------------------------------------------------------------------------------
def check_list(path: str, value: object, *, expected: str, or_none: bool = False
               ) -> tuple[object, ...]:
    """A list or tuple (not a string, which is a sequence of characters), as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise invalid(path, value, _or_none(expected, or_none))
    return tuple(value)


def check_path_prefixes(path: str, value: object, *, or_none: bool = False) -> tuple[str, ...]:
    """A list of URL path prefixes, each starting with ``/``."""
    expected = "a list of path prefixes starting with '/'"
    items = check_list(path, value, expected=expected, or_none=or_none)
    if not all(isinstance(p, str) and p.startswith("/") for p in items):
        raise invalid(path, value, _or_none(expected, or_none))
    return tuple(str(p) for p in items)


def check_mapping(path: str, value: object, *, expected: str, non_empty: bool = False,
                  or_none: bool = False) -> Mapping[object, object]:
    """A mapping (``expected`` says of what: ``a mapping of metric to spec``)."""
    if not isinstance(value, Mapping) or (non_empty and not value):
        raise invalid(path, value, _or_none(expected, or_none))
    return value


def check_mapping_of(path: str, value: object, check: Callable[..., T], *, expected: str,
                     keys: Callable[[str, object], str] = check_name, non_empty: bool = False,
                     or_none: bool = False, **options: object) -> dict[str, T]:
    """A mapping whose keys pass ``keys(path, key)`` (names by default) and whose values pass
    ``check(f"{path}.{key}", value, **options)``, as a plain dict; items are checked in order,
    key then value."""
    mapping = check_mapping(path, value, expected=expected, non_empty=non_empty,
                            or_none=or_none)
    out: dict[str, T] = {}
    for key, item in mapping.items():
        name = keys(path, key)
        out[name] = check(f"{path}.{name}", item, **options)
    return out


def check_optional(check: Callable[..., T], path: str, value: object, **options: object
                   ) -> T | None:
    """``None``, or a value that passes ``check`` (whose message then ends in ``or None``)."""
    if value is None:
        return None
    return check(path, value, or_none=True, **options)
