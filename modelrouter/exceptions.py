"""Exceptions raised by modelrouter.

Every error the library raises on purpose derives from :class:`ModelRouterError`::

    ModelRouterError
    ├── ConfigError            a configuration value is wrong (names the field and the value)
    ├── UnitIdError            a request's unit id is missing or malformed (HTTP 400)
    ├── FeedbackError          feedback was refused; nothing was recorded
    │   ├── UnknownDecisionError   decision id never issued here, or past its attribution window
    │   ├── UnknownUnitError       unit id never routed by this experiment
    │   ├── UnknownMetricError     metric not declared in the config
    │   └── InvalidValueError      NaN, infinity, wrong type, or not 0/1 for a binary metric
    ├── TokenError             a decision token is malformed, forged or expired
    │   └── ExpiredTokenError      valid signature, but past the attribution window
    ├── AnalysisError          the question cannot be answered from the data (e.g. no units)
    └── StoreError             the store cannot be read or written (snapshot, Redis)

Errors that are also ``ValueError`` subclass it too, so ``except ValueError`` keeps working for
callers who validate input generically.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "ConfigError",
    "ExpiredTokenError",
    "FeedbackError",
    "InvalidValueError",
    "ModelRouterError",
    "StoreError",
    "TokenError",
    "UnitIdError",
    "UnknownDecisionError",
    "UnknownMetricError",
    "UnknownUnitError",
]


class ModelRouterError(Exception):
    """Base class of every error modelrouter raises on purpose."""


class ConfigError(ModelRouterError, ValueError):
    """A configuration value is invalid; the message names the field path and the value."""


class UnitIdError(ModelRouterError, ValueError):
    """The unit id of a request is missing or malformed."""


class FeedbackError(ModelRouterError, ValueError):
    """Feedback was refused and nothing was recorded."""


class UnknownDecisionError(FeedbackError, KeyError):
    """The decision id was never issued here, or its attribution window has passed."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownUnitError(FeedbackError, KeyError):
    """The unit id was never routed by this experiment."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownMetricError(FeedbackError, KeyError):
    """The metric is not declared in the configuration."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidValueError(FeedbackError):
    """A feedback value is NaN, infinite, of the wrong type, or not 0/1 for a binary metric."""


class TokenError(ModelRouterError, ValueError):
    """A decision token is malformed or its signature does not verify."""


class ExpiredTokenError(TokenError):
    """A decision token verifies but was issued before the attribution window."""


class AnalysisError(ModelRouterError, ValueError):
    """The analysis cannot answer from the data it has (no units, unknown variant, ...)."""


class StoreError(ModelRouterError):
    """The store cannot be read or written (corrupt snapshot, unreachable Redis)."""
