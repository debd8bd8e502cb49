"""What every config class shares: a plain-data view, a readable ``repr``, hidden secrets.

:class:`SubConfig` is the base of the typed, frozen, keyword-only groups of settings that a
:class:`~modelrouter.config.RouterConfig` is composed of (``BanditConfig``, ``StoreConfig``,
``HttpConfig``, ``GuardrailConfig``); like httpx's small config classes, each validates itself
on creation, shows only what differs from the defaults in its ``repr`` and turns into plain
data with ``as_dict()``. The same two functions (:func:`config_dict`, :func:`config_repr`)
serve :class:`~modelrouter.config.plan.ExperimentPlan` and ``RouterConfig`` itself, so a
secret is hidden, and a store URL's password redacted, the same way everywhere.

A field says how it is shown through its dataclass ``metadata``: ``SECRET`` (shown as
``'***'``, never its value) or ``{SHOW: function}`` (e.g. ``redact_url``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from modelrouter.config.metrics import MetricSpec
from modelrouter.exceptions import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["SECRET", "SHOW", "SubConfig", "config_dict", "config_repr", "plain"]

SHOW = "show"
SECRET: Mapping[str, object] = MappingProxyType({"secret": True})
_S = TypeVar("_S", bound="SubConfig")


@runtime_checkable
class _ToDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def plain(value: object) -> Any:
    """``value`` as plain data (dicts, lists, str, numbers, bool, None): specs through their
    ``to_dict()``, mappings and sequences item by item, callables by qualified name."""
    if isinstance(value, SubConfig):
        return value.as_dict()
    if isinstance(value, _ToDict) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if callable(value):
        return getattr(value, "__qualname__", repr(value))
    return value


def _shown(f: dataclasses.Field[Any], value: object) -> object:
    if f.metadata.get("secret"):
        return None if value is None else "***"
    show: Callable[[Any], object] | None = f.metadata.get(SHOW)
    return value if show is None or value is None else show(value)


def config_dict(config: DataclassInstance) -> dict[str, Any]:
    """Every field as plain data, secrets as ``"***"`` (or None when unset)."""
    return {f.name: plain(_shown(f, getattr(config, f.name)))
            for f in dataclasses.fields(config)}


def _defaults(config: DataclassInstance) -> dict[str, object]:
    """The normalised default of each field: a default instance's values when the class can
    be built without arguments (``salt`` becomes the experiment name, ``guardrails=None`` the
    default guardrails), else the declared defaults."""
    try:
        default: object = type(config)()
    except (ConfigError, TypeError):  # e.g. ExperimentPlan needs mde or max_units
        default = None
    out: dict[str, object] = {}
    for f in dataclasses.fields(config):
        if default is not None:
            out[f.name] = getattr(default, f.name)
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def config_repr(config: DataclassInstance) -> str:
    """``Name(field=value, ...)`` with the fields that differ from their defaults; metrics by
    name, secrets as ``'***'``, a store URL without its password."""
    defaults = _defaults(config)
    parts = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in defaults and bool(value == defaults[f.name]):
            continue
        shown = _shown(f, value)
        if isinstance(shown, Mapping) and shown and all(
                isinstance(v, MetricSpec) for v in shown.values()):
            shown = sorted(shown)  # the specs are in config.metrics; the names say enough
        parts.append(f"{f.name}={shown!r}")
    return f"{type(config).__name__}({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class SubConfig:
    """Base of the frozen groups of :class:`~modelrouter.config.RouterConfig` settings.

    A subclass is a ``@dataclass(frozen=True, kw_only=True, repr=False)`` whose fields carry
    the names of the flat ``RouterConfig`` fields they group, and whose ``__post_init__``
    validates them (raising the messages ``RouterConfig`` raises).
    """

    @classmethod
    def from_config(cls: type[_S], config: object) -> _S:
        """The group of ``config``'s flat fields of the same names (validated again):
        ``BanditConfig.from_config(router_config)``. Any object with those attributes will
        do; the config modules do not import :class:`~modelrouter.config.RouterConfig`, which
        is built from them."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """Plain data (secrets as ``"***"``); ``type(self)(**as_dict())`` rebuilds it when it
        holds no secret and no callable."""
        return config_dict(self)

    def __repr__(self) -> str:
        return config_repr(self)
