"""The HTTP settings of a :class:`~modelrouter.config.RouterConfig`: :class:`HttpConfig`.

What the middleware's own endpoints (feedback, admin, metrics, dashboard) need, in one frozen
value the web layer can take instead of the whole config: the ``secret`` that signs feedback
tokens, the ``admin_token`` of the admin API, where the endpoints live (``http_prefix``),
whether ``/metrics`` is public, and how many feedback ids are remembered to refuse replays.

A secret left out (None) is read from the environment (``$MODELROUTER_SECRET``,
``$MODELROUTER_ADMIN_TOKEN``), so it need not be written in code or in a TOML file. Secrets
never appear in a message, a ``repr`` or ``as_dict()``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelrouter.config._checks import (
    check_bool,
    check_positive_int,
    check_secret,
    check_url_prefix,
)
from modelrouter.config.base import SECRET, SubConfig
from modelrouter.exceptions import ConfigError

__all__ = ["SECRET_ENV", "HttpConfig"]

# the environment variable each secret is read from when not given
SECRET_ENV: dict[str, str] = {"secret": "MODELROUTER_SECRET",
                              "admin_token": "MODELROUTER_ADMIN_TOKEN"}


@dataclass(frozen=True, kw_only=True, repr=False)
class HttpConfig(SubConfig):
    """The middleware's HTTP surface: token ``secret``, ``admin_token``, ``http_prefix``,
    ``metrics_public``, ``max_seen_feedback`` (replay protection) and ``cors_origins`` (the
    browser origins allowed to post feedback: ``"https://shop.example"`` or ``"*"``; the
    feedback endpoint then answers CORS preflights). Secrets are resolved from the environment
    when None and are hidden from ``repr`` and ``as_dict``."""

    secret: str | None = field(default=None, repr=False, metadata=SECRET)
    admin_token: str | None = field(default=None, repr=False, metadata=SECRET)
    http_prefix: str = "/_modelrouter"
    metrics_public: bool = False
    max_seen_feedback: int = 100_000
    cors_origins: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name, env in SECRET_ENV.items():
            value = getattr(self, name)
            if value is None:
                value = os.environ.get(env) or None
                object.__setattr__(self, name, value)
            if value is not None:
                check_secret(name, value, source=f"the argument or ${env}")
        check_url_prefix("http_prefix", self.http_prefix)
        check_bool("metrics_public", self.metrics_public)
        check_positive_int("max_seen_feedback", self.max_seen_feedback)
        object.__setattr__(self, "cors_origins", check_origins(self.cors_origins))


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def check_origins(value: object) -> tuple[str, ...]:
    """``cors_origins``: ``"*"`` or exact origins ``scheme://host[:port]`` (no path, no
    trailing slash: a browser's ``Origin`` header is compared with them as written)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"cors_origins ({value!r}) must be a list of origins such as "
                          "['https://shop.example'] or ['*']")
    for origin in value:
        if origin != "*" and (not isinstance(origin, str) or not _ORIGIN.fullmatch(origin)):
            raise ConfigError(f"cors_origins: {origin!r} is not an origin (scheme://host[:port] "
                              "without a path, or '*')")
    return tuple(value)
