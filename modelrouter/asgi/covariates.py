"""Covariates read from the request at a unit's first exposure (CUPED, issue 16).

``RouterConfig(covariate_headers={"pre_clicks": "x-pre-clicks"})`` names the request header
that carries a covariate, ``covariate_fn(scope) -> {covariate: number}`` may supply (or
override) values, as ``segments`` and ``segment_fn`` do for segments
(config/request_covariates.py). :class:`CovariateReader` reads them only when a unit is
exposed for the first time, records them as ``router.record_covariate`` would, timed at that
exposure (so the analysis's pre-exposure rule, recorded at or before the first exposure,
admits them), and leaves every later request of the unit alone: the request path pays one
``has_unit`` lookup per request, the reading only once per unit.

First exposure, per store:

- **memory**: the store's own unit table says whether the unit has been exposed
  (``has_unit``, exact; restored units count as exposed).
- **redis**: a worker knows the units in its unflushed buffer (``has_unit``) and the units it
  has read since (a set of at most :data:`MAX_READ_UNITS`, emptied when full). A unit first
  exposed by another worker, or read again after the set was emptied, is read again: its
  value is recorded later than its first exposure and never enters the estimate (and a first
  value flushed earlier wins: ``HSETNX``). Two workers exposing a new unit within one flush
  interval: the first to flush wins both the exposure and the value.

A value that cannot be used never fails the request: it is dropped and counted by reason
(``store.drop_covariate``; the analysis notes say how many and why, store/losses.py):
``not_a_number`` (a header that does not parse, or longer than 64 characters),
``invalid_value`` (refused by the rule of ``record_covariate``: a finite real number,
``|value| <= 1e100``, 0 or ``|value| >= 1e-100``), ``undeclared`` (a name ``covariate_fn``
returned that no metric declares), ``reader_error`` (``covariate_fn`` raised or returned no
mapping), ``refused`` (the store refused the value). An absent or empty header is no value.

Thread safety: the read set is touched only from the event loop's thread (the middleware);
the stores guard their own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from modelrouter.asgi.types import Scope
from modelrouter.config import MetricSpec
from modelrouter.exceptions import ConfigError
from modelrouter.routing.decision import Decision
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.values import check_value

__all__ = ["MAX_READ_UNITS", "CovariateReader", "CovariateStore"]

MAX_READ_UNITS = 100_000
"""A shared store's worker remembers at most this many units it has read covariates for
(about 100 bytes each); past it the set is emptied (see the module docstring)."""

_MAX_TEXT = 64  # a number needs no more characters; longer headers are not parsed


@runtime_checkable
class CovariateStore(Protocol):
    """What the reader needs of a store (the memory and Redis stores have it)."""

    covariate_names: tuple[str, ...]

    def has_unit(self, unit: str) -> bool:
        """Whether the unit has been exposed (locally, for a shared store)."""
        ...

    def record_covariate(self, unit: str, index: int, value: float, now: float) -> None:
        """Keep a unit's validated covariate recorded at ``now`` (first value wins)."""
        ...

    def drop_covariate(self, reason: str) -> None:
        """Count a value read from a request and dropped for ``reason``."""
        ...


class CovariateReader:
    """``reader.route(scope, unit, segment)``: route, and at a unit's first exposure read and
    record its covariates from the request."""

    __slots__ = ("_fn", "_has_unit", "_headers", "_index", "_read", "_route", "_shared",
                 "_specs", "_store")

    def __init__(self, experiment: Experiment) -> None:
        config = experiment.config
        store = experiment.store
        if not isinstance(store, CovariateStore):
            raise ConfigError(f"covariate_headers / covariate_fn: {type(store).__name__} keeps "
                              "no covariates; use the memory or a redis store")
        self._store = store
        names = store.covariate_names
        self._index = {name: i for i, name in enumerate(names)}
        self._specs = tuple(MetricSpec(name, "continuous") for name in names)
        self._headers = {h.encode("latin-1"): self._index[name]
                         for name, h in config.covariate_headers.items()}
        # the config's callable takes the scope as a read-only mapping of arbitrary ASGI values
        self._fn: Callable[[Mapping[str, Any]], Mapping[str, object]] | None = (
            config.covariate_fn)
        self._route = experiment.route_checked
        self._has_unit = store.has_unit  # bound once: every request of the experiment asks
        self._shared = store.shared
        self._read: set[str] = set()

    def route(self, scope: Scope, unit: str | None, segment: Sequence[str]
              ) -> tuple[Decision, int]:
        """:meth:`Experiment.route_checked`, reading the covariates of a unit seen first."""
        if unit is None or self._has_unit(unit) or (self._shared and unit in self._read):
            return self._route(unit, segment)  # not a first exposure: nothing more to pay
        decision, seq = self._route(unit, segment)
        if decision.counted:
            if self._shared:
                if len(self._read) >= MAX_READ_UNITS:
                    self._read.clear()
                self._read.add(unit)
            self.record(scope, unit, decision.issued_at)
        return decision, seq

    def values(self, scope: Scope) -> dict[int, object]:
        """The raw values the request carries, by covariate index (the callable's win);
        what cannot be read is dropped and counted."""
        values: dict[int, object] = {}
        if self._headers:
            headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
            for key, raw in headers:
                i = self._headers.get(key)
                if i is not None and i not in values and raw.strip():
                    values[i] = raw
        if self._fn is not None:
            try:
                extra = self._fn(scope)
                if not isinstance(extra, Mapping):
                    raise TypeError(f"covariate_fn returned {type(extra).__name__}")
                items = list(extra.items())
            except Exception:  # user code: a failing callable must not fail the request
                self._store.drop_covariate("reader_error")
                return values
            for name, v in items:
                i = self._index.get(name) if type(name) is str else None
                if i is None:
                    self._store.drop_covariate("undeclared")
                elif v is not None:
                    values[i] = v
        return values

    def record(self, scope: Scope, unit: str, now: float) -> None:
        """Read the request's covariates and record them for ``unit`` at ``now``."""
        store = self._store
        for i, raw in self.values(scope).items():
            if isinstance(raw, bytes):
                text = raw.decode("latin-1").strip()
                try:
                    if len(text) > _MAX_TEXT:
                        raise ValueError(text[:_MAX_TEXT])
                    raw = float(text)
                except ValueError:
                    store.drop_covariate("not_a_number")
                    continue
            try:
                value = check_value(self._specs[i], raw)
            except Exception:  # InvalidValueError, or a hostile number type's own error
                store.drop_covariate("invalid_value")
                continue
            try:
                store.record_covariate(unit, i, value, now)
            except Exception:  # never fail the request: counted (the analysis notes say it)
                store.drop_covariate("refused")
