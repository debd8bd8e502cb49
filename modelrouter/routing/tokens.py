"""Signed decision tokens: late feedback attributable by any process that holds the secret.

A token is the URL-safe base64 (no padding) of a compact binary payload followed by its
HMAC-SHA256 tag (32 bytes)::

    payload = 0x01 (version) || issued_at float64 || propensity float64 || epoch uint32
              || 4 x uint16 lengths || utf8(decision_id) || utf8(experiment)
              || utf8(variant) || utf8(unit_id, "" when none)
    token   = b64url(payload || HMAC-SHA256(secret, payload))

The token is self-contained (no shared map is needed to attribute feedback), readable by anyone
(it is signed, not encrypted: do not put secrets in unit ids) and unforgeable without the secret.
:func:`verify` compares tags with :func:`hmac.compare_digest`, so its running time does not
depend on how many tag bytes match, and rejects any non-canonical encoding, so flipping any
character of a token is detected.

Size: :meth:`Signer.verify` takes tokens of at most ``MAX_TOKEN_CHARS`` (4096) characters, and
signing refuses to make a longer one (:class:`TokenError`, never a ``struct.error``). With a
secret, the config bounds ``max_unit_id_length`` so that every decision's token fits (see
:mod:`modelrouter.config.limits`). A token's unit id obeys the unit id rule
(:mod:`modelrouter.config.unit_ids`); a token carrying any other is refused as malformed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct
import time
from dataclasses import dataclass
from typing import Any

from modelrouter.config.limits import MAX_TOKEN_CHARS, TOKEN_OVERHEAD
from modelrouter.config.unit_ids import unit_id_problem
from modelrouter.exceptions import ExpiredTokenError, TokenError
from modelrouter.routing.decision import Decision

__all__ = ["TOKEN_HEADER", "Signer", "TokenPayload", "sign", "verify"]

TOKEN_HEADER = "x-modelrouter-token"
_VERSION = 1
_HEAD = struct.Struct(">BddI4H")
_TAG = 32
_BLOCK = 64  # SHA-256 block size
_URLSAFE = bytes.maketrans(b"+/", b"-_")
if _HEAD.size + _TAG != TOKEN_OVERHEAD:  # config/limits.py sizes unit ids from it
    raise ImportError("config.limits.TOKEN_OVERHEAD does not match the token format")
_NO_LIMIT = 1 << 62  # unit_id_problem without a length bound (the config bounds the length)


@dataclass(frozen=True)
class TokenPayload:
    """What a verified token says: which decision, of which experiment, for which unit."""

    decision_id: str
    experiment: str
    variant: str
    unit_id: str | None
    propensity: float
    issued_at: float
    epoch: int = 0

    @classmethod
    def from_decision(cls, decision: Decision, experiment: str) -> TokenPayload:
        """The payload of a routing decision."""
        return cls(decision.decision_id, experiment, decision.variant, decision.unit_id,
                   decision.propensity, decision.issued_at, decision.epoch)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"decision_id": self.decision_id, "experiment": self.experiment,
                "variant": self.variant, "unit_id": self.unit_id,
                "propensity": self.propensity, "issued_at": self.issued_at, "epoch": self.epoch}


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or not secret:
        raise TokenError("the token secret must be a non-empty str or bytes")
    return secret


def _pack(decision_id: str, experiment: bytes, variant: str, unit_id: str | None,
          propensity: float, issued_at: float, epoch: int) -> bytes:
    try:
        d = decision_id.encode("utf-8")
        v = variant.encode("utf-8")
        u = b"" if unit_id is None else unit_id.encode("utf-8")
        return _HEAD.pack(_VERSION, issued_at, propensity, epoch & 0xFFFFFFFF, len(d),
                          len(experiment), len(v), len(u)) + d + experiment + v + u
    except (UnicodeEncodeError, struct.error) as exc:
        raise _unsignable(exc) from None


def _unsignable(exc: Exception) -> TokenError:
    """The error for a payload no token can carry (the config's bounds prevent it)."""
    if isinstance(exc, UnicodeEncodeError):
        return TokenError(f"cannot sign: a field is not valid UTF-8 ({exc.reason} at index "
                          f"{exc.start})")
    return TokenError("cannot sign: a field is longer than 65,535 UTF-8 bytes")


def _too_long(n: int) -> TokenError:
    """The error for a token :meth:`Signer.verify` would refuse (the config prevents it)."""
    return TokenError(f"cannot sign: the token would have {n} characters; tokens are verified "
                      f"up to {MAX_TOKEN_CHARS} (see max_unit_id_length)")


class Signer:
    """Signs and verifies tokens with one secret; precomputes what it can (hot path)."""

    __slots__ = ("_experiment", "_inner", "_outer")

    def __init__(self, secret: str | bytes, experiment: str = "") -> None:
        # RFC 2104 with the padded-key states hashed once: HMAC(k, m) =
        # H((k ^ opad) || H((k ^ ipad) || m)); copying a state is cheaper than rehashing the key
        key = _key(secret)
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._experiment = experiment.encode("utf-8")

    def _mac(self, body: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __repr__(self) -> str:  # never show the secret
        return f"Signer(experiment={self._experiment.decode()!r})"

    def sign_decision(self, decision: Decision) -> bytes:
        """The token of a routing decision, as ASCII bytes ready for a response header."""
        # inlined _pack + _mac: this runs once per routed response (about 1.5 us)
        try:
            d = decision.decision_id.encode("utf-8")
            v = decision.variant.encode("utf-8")
            u = b"" if decision.unit_id is None else decision.unit_id.encode("utf-8")
            e = self._experiment
            body = b"".join((_HEAD.pack(_VERSION, decision.issued_at, decision.propensity,
                                        decision.epoch & 0xFFFFFFFF, len(d), len(e), len(v),
                                        len(u)), d, e, v, u))
        except (UnicodeEncodeError, struct.error) as exc:
            raise _unsignable(exc) from None
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        token = binascii.b2a_base64(body + outer.digest(), newline=False).translate(
            _URLSAFE).rstrip(b"=")
        if len(token) > MAX_TOKEN_CHARS:
            raise _too_long(len(token))
        return token

    def sign(self, payload: TokenPayload) -> str:
        """The token of any payload (its own experiment name is used); TokenError for one no
        token can carry or :meth:`verify` would refuse (a unit id breaking the unit id rule,
        a field that is not UTF-8, a token over the size bound)."""
        problem = unit_id_problem(payload.unit_id, _NO_LIMIT) if payload.unit_id else None
        if problem is not None:
            raise TokenError(f"cannot sign: the unit id {problem}")
        body = _pack(payload.decision_id, payload.experiment.encode("utf-8"), payload.variant,
                     payload.unit_id, payload.propensity, payload.issued_at, payload.epoch)
        token = base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")
        if len(token) > MAX_TOKEN_CHARS:
            raise _too_long(len(token))
        return token

    def verify(self, token: object, *, now: float | None = None,
               max_age: float | None = None) -> TokenPayload:
        """Check the tag (constant time) and the age; return the payload.

        Raises :class:`TokenError` when the token is malformed, tampered with or signed with
        another secret, and :class:`ExpiredTokenError` when it is genuine but older than
        ``max_age`` seconds at ``now`` (default: the current time).
        """
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise TokenError("token is not ASCII") from None
        if not isinstance(token, str):
            raise TokenError(f"token must be a string, got {type(token).__name__}")
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError(f"token must have 1 to {MAX_TOKEN_CHARS} characters")
        try:
            text = token.encode("ascii")
            raw = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise TokenError("token is not URL-safe base64") from None
        # a non-canonical spelling (ignored characters, stray low bits) is a tampered token
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != text:
            raise TokenError("token is not canonical URL-safe base64")
        if len(raw) < _HEAD.size + _TAG:
            raise TokenError("token is too short")
        body, tag = raw[:-_TAG], raw[-_TAG:]
        if not hmac.compare_digest(self._mac(body), tag):
            raise TokenError("token signature does not verify (forged, tampered with, or "
                             "signed with another secret)")
        payload = _unpack(body)
        if max_age is not None:
            now = time.time() if now is None else now
            age = now - payload.issued_at
            if age > max_age:
                raise ExpiredTokenError(f"token was issued {age:.0f} s ago, past the "
                                        f"attribution window of {max_age:g} s")
        return payload


def _unpack(body: bytes) -> TokenPayload:
    # Only reached for bodies we signed ourselves, but decode defensively all the same.
    try:
        version, issued, prop, epoch, nd, ne, nv, nu = _HEAD.unpack_from(body)
        if version != _VERSION or _HEAD.size + nd + ne + nv + nu != len(body):
            raise ValueError("layout")
        pos = _HEAD.size
        fields = []
        for n in (nd, ne, nv, nu):
            fields.append(body[pos:pos + n].decode("utf-8"))
            pos += n
    except (struct.error, ValueError):
        raise TokenError("token payload is malformed") from None
    if not (math.isfinite(issued) and math.isfinite(prop)):
        raise TokenError("token payload is malformed")
    d, e, v, u = fields
    problem = unit_id_problem(u, _NO_LIMIT) if u else None
    if problem is not None:  # signed by a release without the unit id rule
        raise TokenError(f"token payload is malformed: its unit id {problem}")
    return TokenPayload(d, e, v, u or None, prop, issued, epoch)


def sign(payload: TokenPayload, secret: str | bytes) -> str:
    """Sign a payload with ``secret``; see the module docstring for the format."""
    return Signer(secret).sign(payload)


def verify(token: object, secret: str | bytes, now: float | None = None,
           max_age: float | None = None) -> TokenPayload:
    """Verify a token signed with ``secret`` (see :meth:`Signer.verify`)."""
    return Signer(secret).verify(token, now=now, max_age=max_age)

