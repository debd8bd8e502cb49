"""Admin API helpers: who may call it (:class:`AdminAuth`) and what a change means
(:func:`config_change`), kept apart from the ASGI plumbing in :mod:`modelrouter.web.surface`.

Credentials are a bearer token (``Authorization: Bearer <admin token>``) or, for the read-only
endpoints and the dashboard, a session cookie set by the dashboard's login form. The cookie
holds ``HMAC(admin token, label)``, never the token itself, and is HttpOnly and
SameSite=Strict. Every comparison is :func:`hmac.compare_digest` of fixed-length digests, so
the time taken says nothing about the token, not even its length.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, NamedTuple

from modelrouter.config import RouterConfig
from modelrouter.exceptions import ConfigError

if TYPE_CHECKING:
    from modelrouter.routing.experiment import Experiment

__all__ = ["COOKIE_NAME", "AdminAuth", "ConfigChange", "apply_change", "config_change"]

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
        """Whether the session cookie is right; None when the request has none."""
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


class ConfigChange(NamedTuple):
    """A validated ``POST /config`` body (see :func:`config_change`)."""

    weights: dict[str, float] | None
    mode: str | None
    resume: tuple[str, ...] = ()
    pause: tuple[str, ...] = ()


def _arms(data: Mapping[str, object], field: str, names: Sequence[str]) -> tuple[str, ...]:
    """The variants named by ``data[field]`` (a name or a list of names), de-duplicated."""
    if field not in data:
        return ()
    value = data[field]
    arms = [value] if isinstance(value, str) else value
    if not isinstance(arms, list) or not arms or not all(
            isinstance(a, str) and a in names for a in arms):
        raise ConfigError(f"{field} ({str(value)[:80]}) must be a variant name or a "
                          f"list of them; variants are {list(names)}")
    return tuple(dict.fromkeys(arms))


def config_change(experiment: Experiment, data: object) -> ConfigChange:
    """Validate a ``POST /config`` body against ``experiment``; change nothing.

    ``{"mode": "ab" | "bandit"}``, ``{"weights": {variant: share}}`` (every variant, summing
    to 1), ``{"pause": name | [names]}`` and ``{"resume": name | [names]}`` (as
    :meth:`Experiment.pause_arm` / :meth:`Experiment.resume_arm`); mode combines with either.
    Raises ConfigError naming the field.
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
        try:
            return ConfigChange(RouterConfig.check_weights(data["weights"], names), mode)
        except OverflowError:  # finite shares whose sum overflows (1e308 + 1e308)
            raise ConfigError("weights: each share must be in [0, 1] and they must sum to "
                              "1") from None
    resume, pause = _arms(data, "resume", names), _arms(data, "pause", names)
    both = [a for a in pause if a in resume]
    if both:
        raise ConfigError(f"pause ({both[0]!r}): also listed in 'resume'")
    active = {v for v, w in experiment.allocation.weights.items() if w > 0} | set(resume)
    if pause and not active - set(pause):
        raise ConfigError(f"pause ({list(pause)}): cannot pause every variant with traffic")
    return ConfigChange(None, mode, resume, pause)


def apply_change(experiment: Experiment, change: ConfigChange) -> None:
    """Apply a validated change: weights and mode in one ``configure``, else the mode first
    and then the arms, through the same pause/resume as the Python API."""
    if change.weights is not None or not (change.resume or change.pause):
        experiment.configure(weights=change.weights, mode=change.mode)
        return
    if change.mode is not None and change.mode != experiment.mode:
        experiment.configure(mode=change.mode)
    for arm in change.resume:
        experiment.resume_arm(arm)
    for arm in change.pause:
        experiment.pause_arm(arm)
