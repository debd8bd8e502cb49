"""Validation of the store fields of :class:`~modelrouter.config.RouterConfig`.

Kept apart from ``config.py`` so the store options live next to the stores they configure.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelrouter.exceptions import ConfigError

__all__ = ["check_store_fields", "redact_url"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _number(name: str, value: object, *, integer: bool = False, optional: bool = False) -> None:
    if optional and value is None:
        return
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (isinstance(value, bool) or not ok or not math.isfinite(value)  # type: ignore[arg-type]
            or value <= 0):  # type: ignore[operator]
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name} ({value!r}) must be {kind}" + (" or None" if optional else ""))


def check_store_fields(config: Any) -> None:
    """Validate ``store``, ``snapshot_path``, ``snapshot_seconds``, ``flush_*``, ``max_buffer``."""
    store = config.store
    if not isinstance(store, str):
        raise ConfigError(f"store ({store!r}) must be 'memory' or a URL 'redis://host:port/db'")
    if store != "memory":
        parts = urlsplit(store)
        if parts.scheme not in _REDIS_SCHEMES or not (parts.hostname or parts.path):
            raise ConfigError(f"store ({redact_url(store)!r}) must be 'memory' or a URL "
                              "'redis://host:port/db' (schemes: redis, rediss, unix)")
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError(f"store ({redact_url(store)!r}) has an invalid port") from None
        db = parts.path.lstrip("/")
        if parts.scheme != "unix" and db and not db.isdigit():
            raise ConfigError(f"store ({redact_url(store)!r}): database ({db!r}) must be a "
                              "number")
    path = config.snapshot_path
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise ConfigError(f"snapshot_path ({path!r}) must be a non-empty path or None")
    if path is not None and store != "memory":
        raise ConfigError(f"snapshot_path ({path!r}) is for store='memory'; with Redis, use "
                          "Redis persistence (RDB or AOF)")
    _number("snapshot_seconds", config.snapshot_seconds, optional=True)
    if config.snapshot_seconds is not None and path is None:
        raise ConfigError(f"snapshot_seconds ({config.snapshot_seconds!r}) needs snapshot_path")
    _number("flush_seconds", config.flush_seconds)
    _number("flush_events", config.flush_events, integer=True)
    _number("max_buffer", config.max_buffer, integer=True)


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and ``as_dict``)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            netloc = f"{user}:***@{host}{port}"
        # redis-py also takes the password from the query string (?password=...)
        query = "&".join(
            f"{k}=***" if k.lower() in _SECRET_QUERY_KEYS else (f"{k}={v}" if v or "=" in raw
                                                                 else k)
            for raw in parts.query.split("&") if raw
            for k, _, v in [raw.partition("=")])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<invalid url>"


_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "auth"})
