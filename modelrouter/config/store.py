"""The store settings of a :class:`~modelrouter.config.RouterConfig`: :class:`StoreConfig`.

Kept apart so the store options live next to the stores they configure, in one frozen value
that a store factory can take instead of the whole config: where the data live (``store``:
``"memory"`` or a Redis URL), how the in-memory store is snapshotted, how events are buffered
and flushed, and how long decisions wait for feedback. A Redis URL may hold a password:
:func:`redact_url` hides it in every message, ``repr`` and ``as_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from modelrouter.config._checks import (
    check_optional,
    check_positive,
    check_positive_int,
    check_text,
    choices,
    invalid,
)
from modelrouter.config.base import SHOW, SubConfig
from modelrouter.exceptions import ConfigError

__all__ = ["StoreConfig", "StoreScheme", "redact_url"]

StoreScheme = Literal["redis", "rediss", "unix"]  # store URLs other than "memory"
_URL = "'memory' or a URL 'redis://host:port/db'"
_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "auth"})


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


@dataclass(frozen=True, kw_only=True, repr=False)
class StoreConfig(SubConfig):
    """Where the experiment's data live and how they get there.

    ``store`` is ``"memory"`` (this process; ``snapshot_path`` saves it every
    ``snapshot_seconds`` and at shutdown) or a Redis URL (``redis://``, ``rediss://`` or
    ``unix://``; shared by processes, which flush buffered events every ``flush_seconds`` or
    ``flush_events`` events, buffering at most ``max_buffer`` while Redis is away). At most
    ``max_pending`` decisions wait ``attribution_window`` seconds for their feedback.
    """

    store: str = field(default="memory", metadata={SHOW: redact_url})
    snapshot_path: str | None = None
    snapshot_seconds: float | None = None
    flush_seconds: float = 0.1
    flush_events: int = 10_000
    max_buffer: int = 1_000_000
    max_pending: int = 1_000_000
    attribution_window: float = 86_400.0

    def __post_init__(self) -> None:
        _check_store_url(self.store)
        path = check_optional(check_text, "snapshot_path", self.snapshot_path,
                              expected="a non-empty path")
        if path is not None and self.store != "memory":
            raise ConfigError(f"snapshot_path ({path!r}) is for store='memory'; with Redis, use "
                              "Redis persistence (RDB or AOF)")
        check_optional(check_positive, "snapshot_seconds", self.snapshot_seconds)
        if self.snapshot_seconds is not None and path is None:
            raise ConfigError(f"snapshot_seconds ({self.snapshot_seconds!r}) needs "
                              "snapshot_path")
        check_positive("flush_seconds", self.flush_seconds)
        check_positive_int("flush_events", self.flush_events)
        check_positive_int("max_buffer", self.max_buffer)
        check_positive_int("max_pending", self.max_pending)
        check_positive("attribution_window", self.attribution_window)

    @property
    def is_memory(self) -> bool:
        """True for the in-process store, False for Redis."""
        return self.store == "memory"


def _check_store_url(store: object) -> None:
    if not isinstance(store, str):
        raise invalid("store", store, _URL)
    if store == "memory":
        return
    shown = redact_url(store)
    parts = urlsplit(store)
    if parts.scheme not in choices(StoreScheme) or not (parts.hostname or parts.path):
        raise invalid("store", shown, f"{_URL} (schemes: {', '.join(choices(StoreScheme))})")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(f"store ({shown!r}) has an invalid port") from None
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(f"store ({shown!r}): database ({db!r}) must be a number")

