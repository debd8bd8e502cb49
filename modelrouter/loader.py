"""Importing objects named as ``"package.module:attribute"`` in config files."""

from __future__ import annotations

import importlib
from typing import Any

from modelrouter.exceptions import ConfigError

__all__ = ["import_object"]


def import_object(path: str, target: object) -> Any:
    """Import ``"package.module:attr.sub"``; ``path`` names the config field for errors.

    The result is ``Any`` because it is whatever the config names (an ASGI app, a model): the
    caller knows what the field must hold. ``getattr`` walks the dotted attribute path.
    """
    if not isinstance(target, str) or ":" not in target:
        raise ConfigError(f"{path} ({target!r}) must be 'package.module:attribute'")
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{path} ({target!r}): cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{path} ({target!r}): {module_name!r} has no {attr!r}") from None
    return obj
