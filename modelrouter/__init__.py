"""modelrouter: online experiments between model predictors inside any ASGI app."""

from modelrouter.analysis import Analysis, ComparisonResult, VariantSummary
from modelrouter.asgi.middleware import ASGIVariant
from modelrouter.config import MetricSpec, RouterConfig
from modelrouter.config.guardrails import GuardrailSpec
from modelrouter.config.plan import ExperimentPlan
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
from modelrouter.router import ModelRouter
from modelrouter.routing.assignment import Allocation, bucket
from modelrouter.routing.decision import Decision
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.state import RollbackEvent
from modelrouter.routing.tokens import TOKEN_HEADER, Signer, TokenPayload

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
