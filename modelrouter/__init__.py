"""modelrouter: online experiments between model predictors inside any ASGI app.

Public names load when first used (PEP 562 ``__getattr__``), so ``import modelrouter`` and
everything the middleware needs to route stay cheap: the statistics (scipy) load with the
first analysis, not with the app.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import (
    AnalysisError,
    ConfigError,
    ExpiredTokenError,
    FeedbackError,
    InvalidValueError,
    ModelRouterError,
    StoreError,
    TokenError,
    UnitIdError,
    UnknownDecisionError,
    UnknownMetricError,
    UnknownUnitError,
)

if TYPE_CHECKING:
    from modelrouter.analysis import Analysis, ComparisonResult, VariantSummary
    from modelrouter.asgi.middleware import ASGIVariant
    from modelrouter.config import MetricSpec, RouterConfig
    from modelrouter.config.guardrails import GuardrailSpec
    from modelrouter.config.plan import ExperimentPlan
    from modelrouter.experiment import Experiment
    from modelrouter.router import ModelRouter
    from modelrouter.routing.assignment import Allocation, bucket
    from modelrouter.routing.decision import Decision
    from modelrouter.routing.state import RollbackEvent
    from modelrouter.routing.tokens import TOKEN_HEADER, Signer, TokenPayload

# public name -> the module that defines it
_LAZY = {
    "ASGIVariant": "modelrouter.asgi.middleware",
    "Allocation": "modelrouter.routing.assignment",
    "Analysis": "modelrouter.analysis",
    "ComparisonResult": "modelrouter.analysis",
    "Decision": "modelrouter.routing.decision",
    "Experiment": "modelrouter.experiment",
    "ExperimentPlan": "modelrouter.config.plan",
    "GuardrailSpec": "modelrouter.config.guardrails",
    "MetricSpec": "modelrouter.config",
    "ModelRouter": "modelrouter.router",
    "RollbackEvent": "modelrouter.routing.state",
    "RouterConfig": "modelrouter.config",
    "Signer": "modelrouter.routing.tokens",
    "TOKEN_HEADER": "modelrouter.routing.tokens",
    "TokenPayload": "modelrouter.routing.tokens",
    "VariantSummary": "modelrouter.analysis",
    "bucket": "modelrouter.routing.assignment",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelrouter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ASGIVariant",
    "Allocation",
    "Analysis",
    "AnalysisError",
    "ComparisonResult",
    "ConfigError",
    "Decision",
    "Experiment",
    "ExperimentPlan",
    "ExpiredTokenError",
    "FeedbackError",
    "GuardrailSpec",
    "InvalidValueError",
    "MetricSpec",
    "ModelRouter",
    "ModelRouterError",
    "RollbackEvent",
    "RouterConfig",
    "Signer",
    "StoreError",
    "TOKEN_HEADER",
    "TokenError",
    "TokenPayload",
    "UnitIdError",
    "UnknownDecisionError",
    "UnknownMetricError",
    "UnknownUnitError",
    "VariantSummary",
    "bucket",
]
__version__ = "0.1.0"
