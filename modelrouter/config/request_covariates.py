"""Covariates read from the request at a unit's first exposure: the config's declaration.

``RouterConfig(covariate_headers={"pre_clicks": "x-pre-clicks"})`` maps a covariate to the
request header that carries its value (the shape of ``segments``: name -> header), and
``covariate_fn(scope) -> {covariate: number}`` may supply (or override) values from the ASGI
scope, like ``segment_fn``. The middleware reads them only at a unit's first exposure
(asgi/covariates.py) and records them as if ``router.record_covariate`` had been called at
that moment, so they enter the CUPED adjustment of every metric that declares them.

:class:`CovariateConfig` groups the two fields (``config.covariate_config``). Checked before
anything runs (ConfigError naming the field and the value):

- every name of ``covariate_headers`` must be declared by some metric's ``covariates``
  (``covariate_fn``'s names can only be checked when it returns them: an undeclared one is
  dropped and counted then);
- ``covariate_fn`` is a callable, and some metric declares covariates for it to return;
- a request-level experiment (``level="request"``) has no unit to describe: refused
  (:meth:`CovariateConfig.check_level`, called by ``RouterConfig``: the level is not part
  of this group);
- header names are non-empty strings (stored lower-case, as ASGI servers send them).

Thread safety: immutable values and pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrouter.config._checks import check_callable, check_mapping, check_text, invalid
from modelrouter.config.base import SubConfig
from modelrouter.config.metrics import MetricSpec, covariate_names, parse_metrics
from modelrouter.exceptions import ConfigError

__all__ = ["CovariateConfig", "parse_covariate_headers"]


def parse_covariate_headers(headers: object, metrics: Mapping[str, MetricSpec]
                            ) -> dict[str, str]:
    """Validate ``covariate_headers`` (declared covariate -> request header)."""
    declared = check_mapping("covariate_headers", {} if headers is None else headers,
                             expected="a mapping of covariate to request header, e.g. "
                             "{'pre_clicks': 'x-pre-clicks'}")
    names = covariate_names(metrics)
    out: dict[str, str] = {}
    for name, header in declared.items():
        if not isinstance(name, str) or name not in names:
            raise invalid("covariate_headers", name,
                          f"a covariate declared by some metric's covariates; declared "
                          f"covariates are {sorted(names)}")
        out[name] = check_text(f"covariate_headers.{name}", header,
                               expected="a header name").strip().lower()
        if not out[name]:
            raise invalid(f"covariate_headers.{name}", header, "a header name")
    return out


@dataclass(frozen=True, kw_only=True, repr=False)
class CovariateConfig(SubConfig):
    """``covariate_headers`` and ``covariate_fn`` (see the module docstring); ``metrics``
    are the config's declared metrics, whose covariates they may name."""

    metrics: Mapping[str, MetricSpec] = field(default_factory=dict)
    covariate_headers: Mapping[str, str] = field(default_factory=dict)
    covariate_fn: Callable[[Mapping[str, Any]], Mapping[str, object]] | None = None

    def __post_init__(self) -> None:
        metrics = parse_metrics(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "covariate_headers",
                           parse_covariate_headers(self.covariate_headers, metrics))
        if self.covariate_fn is not None:
            check_callable("covariate_fn", self.covariate_fn, expected="a callable taking the "
                           "scope and returning {covariate: number}")
            if not covariate_names(metrics):
                raise ConfigError(f"covariate_fn ({self.covariate_fn!r}): no metric declares "
                                  "covariates, so nothing it returns could be used; declare "
                                  "them in metrics.<name>.covariates")

    @property
    def enabled(self) -> bool:
        """Whether any covariate is read from requests."""
        return bool(self.covariate_headers) or self.covariate_fn is not None

    def check_level(self, level: str) -> None:
        """A request-level experiment (``level="request"``) has no unit to describe: refused
        (ConfigError naming the field that asks for covariates)."""
        if level == "request" and self.enabled:
            name = "covariate_headers" if self.covariate_headers else "covariate_fn"
            raise ConfigError(f"{name}: covariates are per unit, and a request-level "
                              "experiment (level='request') has no unit to describe; use "
                              "level='user' or 'session'")
