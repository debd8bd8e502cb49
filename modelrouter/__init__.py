"""modelrouter: online experiments between model predictors inside any ASGI app."""

from modelrouter.exceptions import ModelRouterError

__all__ = ["ModelRouterError"]
__version__ = "0.1.0"
