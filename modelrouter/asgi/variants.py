"""Variants (and shadows) that are whole ASGI apps: :class:`ASGIVariant` and their detection.

A variant (or a shadow) is either a predictor, called by the app's handler through
``decision.predict``, or a whole ASGI app the router dispatches the request to (a variant:
asgi/middleware.py) or replays it to (a shadow: asgi/shadow_replay.py). Starlette and FastAPI
apps are detected; any other ASGI callable is marked with :class:`ASGIVariant`.
"""

from __future__ import annotations

from modelrouter.asgi.types import ASGIApp
from modelrouter.exceptions import ConfigError

__all__ = ["ASGIVariant", "is_asgi_app"]


class ASGIVariant:
    """Marks a variant as a whole ASGI app: the router dispatches its requests to it."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        if not callable(app):
            raise ConfigError(f"ASGIVariant needs an ASGI callable, got {app!r}")
        self.app = app

    def __repr__(self) -> str:
        return f"ASGIVariant({self.app!r})"


def is_asgi_app(model: object) -> bool:
    """Whether ``model`` is served as a whole ASGI app (an :class:`ASGIVariant`, or a
    Starlette/FastAPI app) rather than called as a predictor."""
    if isinstance(model, ASGIVariant):
        return True
    try:
        from starlette.applications import Starlette
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, Starlette)
