"""Admin API helpers: who may call it (:class:`AdminAuth`) and what a change means
(:func:`config_change`), kept apart from the ASGI plumbing in :mod:`modelrouter.http`.

Credentials are a bearer token (``Authorization: Bearer <admin token>``) or, for the read-only
endpoints and the dashboard, a session cookie set by the dashboard's login form. The cookie
holds ``HMAC(admin token, label)``, never the token itself, and is HttpOnly and
SameSite=Strict. Every comparison is :func:`hmac.compare_digest` of fixed-length digests, so
the time taken says nothing about the token, not even its length.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import Any

from modelrouter.config import RouterConfig
from modelrouter.exceptions import ConfigError

__all__ = ["COOKIE_NAME", "AdminAuth", "config_change"]

COOKIE_NAME = "modelrouter_admin"
_SESSION_LABEL = b"modelrouter dashboard session v1"


class AdminAuth:
    """Checks admin credentials; :meth:`check` answers None (allowed), 401 or 403."""

    __slots__ = ("_digest", "_session")

    def __init__(self, admin_token: str) -> None:
        token = admin_token.encode("utf-8")
        self._digest = hashlib.sha256(token).digest()
        self._session = hmac.new(token, _SESSION_LABEL, "sha256").hexdigest().encode()

    def __repr__(self) -> str:
        return "AdminAuth(***)"

    @property
    def session_value(self) -> str:
        """The cookie value the login form sets."""
        return self._session.decode()

    def token_ok(self, token: bytes) -> bool:
        """Whether ``token`` is the admin token (constant time)."""
        return hmac.compare_digest(hashlib.sha256(token).digest(), self._digest)

    def _cookie(self, headers: Sequence[tuple[bytes, bytes]]) -> bool | None:
        for key, raw in headers:
            if key.lower() != b"cookie":
                continue
            try:
                morsel = SimpleCookie(raw.decode("latin-1")).get(COOKIE_NAME)
            except CookieError:
                continue
            if morsel is not None:
                value = morsel.value.encode("utf-8", "replace")
                return hmac.compare_digest(hashlib.sha256(value).digest(),
                                           hashlib.sha256(self._session).digest())
        return None

    def check(self, headers: Sequence[tuple[bytes, bytes]], *, cookie: bool
              ) -> tuple[int, str] | None:
        """None when allowed; else (401, why) without credentials or (403, why) with wrong
        ones. ``cookie=False`` (state-changing endpoints) accepts only the bearer header."""
        for key, raw in headers:
            if key.lower() == b"authorization":
                scheme, _, value = raw.strip().partition(b" ")
                if scheme.lower() != b"bearer" or not value.strip():
                    return 401, "authorization: expected 'Bearer <admin token>'"
                if not self.token_ok(value.strip()):
                    return 403, "authorization: wrong admin token"
                return None
        if cookie:
            ok = self._cookie(headers)
            if ok:
                return None
            if ok is False:
                return 403, "cookie: the dashboard session is not valid; log in again"
        return 401, "authorization: this endpoint needs 'Authorization: Bearer <admin token>'"


def _pause(weights: dict[str, float], arm: str) -> dict[str, float]:
    """The arm's share goes to the others in proportion to their weights."""
    rest = math.fsum(w for v, w in weights.items() if v != arm)
    if rest <= 0:
        raise ConfigError(f"pause ({arm!r}): cannot pause the only variant with traffic")
    return {v: 0.0 if v == arm else w / rest for v, w in weights.items()}


def _resume(weights: dict[str, float], arm: str, share: float) -> dict[str, float]:
    """The arm gets back its configured share; the others shrink in proportion."""
    if weights[arm] > 0:
        return weights
    rest = math.fsum(w for v, w in weights.items() if v != arm)
    scale = (1.0 - share) / rest
    out = {v: share if v == arm else w * scale for v, w in weights.items()}
    total = math.fsum(out.values())
    return {v: w / total for v, w in out.items()}


def config_change(experiment: Any, data: object) -> tuple[dict[str, float] | None, str | None]:
    """Validate a ``POST /config`` body; return the (weights, mode) to pass to ``configure``.

    ``{"mode": "ab" | "bandit"}``, ``{"weights": {variant: share}}`` (every variant, summing
    to 1), ``{"pause": name | [names]}`` (its share goes to the others in proportion) and
    ``{"resume": name | [names]}`` (back to its configured share, the others shrinking in
    proportion); mode combines with either. Raises ConfigError naming the field.
    """
    fields = ("mode", "weights", "pause", "resume")
    if not isinstance(data, Mapping) or not data:
        raise ConfigError("body: expected an object with any of 'mode', 'weights', 'pause', "
                          "'resume'")
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ConfigError(f"{unknown[0][:60]}: unknown field; expected one of {list(fields)}")
    mode = data.get("mode")
    if mode is not None and (not isinstance(mode, str) or mode not in ("ab", "bandit")):
        raise ConfigError(f"mode ({str(mode)[:60]!r}) must be one of 'ab', 'bandit'")
    names: tuple[str, ...] = experiment.names
    if data.get("weights") is not None:
        if "pause" in data or "resume" in data:
            raise ConfigError("weights: give either 'weights' or 'pause'/'resume', not both")
        return RouterConfig.check_weights(data["weights"], names), mode
    if "pause" not in data and "resume" not in data:
        return None, mode
    weights = dict(experiment.allocation.weights)
    base = experiment.config.weights or {}
    for field in ("resume", "pause"):
        if field not in data:
            continue
        arms = data[field]
        arms = [arms] if isinstance(arms, str) else arms
        if not isinstance(arms, list) or not arms or not all(
                isinstance(a, str) and a in names for a in arms):
            raise ConfigError(f"{field} ({str(data[field])[:80]}) must be a variant name or a "
                              f"list of them; variants are {list(names)}")
        for arm in arms:
            if field == "pause":
                weights = _pause(weights, arm)
            else:
                weights = _resume(weights, arm, base.get(arm) or 1.0 / len(names))
    return weights, mode
