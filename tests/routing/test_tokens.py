"""Decision tokens: round trip, HMAC against the stdlib reference, tamper and forgery detection,
expiry, constant-time comparison."""

from __future__ import annotations

import base64
import contextlib
import hmac
import statistics
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter.exceptions import ExpiredTokenError, TokenError
from modelrouter.routing.decision import Decision
from modelrouter.routing.tokens import Signer, TokenPayload, sign, verify

SECRET = "a-secret-of-32-characters-length"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _decision(unit: str | None = "user-42", issued: float = 1_700_000_000.25) -> Decision:
    return Decision("0a1b2c3d-2f", "treatment", None, unit, 0.3, 7, "ab", issued)


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_round_trip_carries_every_field() -> None:
    signer = Signer(SECRET, "exp-1")
    token = signer.sign_decision(_decision()).decode()
    payload = signer.verify(token, now=1_700_000_001.0, max_age=60)
    assert payload == TokenPayload("0a1b2c3d-2f", "exp-1", "treatment", "user-42", 0.3,
                                   1_700_000_000.25, 7)
    assert payload.to_dict()["unit_id"] == "user-42"


def test_sign_decision_and_sign_payload_agree() -> None:
    signer = Signer(SECRET, "exp-1")
    payload = TokenPayload.from_decision(_decision(), "exp-1")
    assert signer.sign_decision(_decision()).decode() == sign(payload, SECRET)


def test_tag_is_standard_hmac_sha256() -> None:
    # the precomputed-pad fast path must equal the stdlib's HMAC-SHA256 (RFC 2104)
    for secret in (SECRET, "k" * 64, "long" * 40):  # shorter than, equal to, longer than a block
        token = Signer(secret, "e").sign_decision(_decision()).decode()
        raw = _raw(token)
        assert raw[-32:] == hmac.digest(secret.encode(), raw[:-32], "sha256")


@pytest.mark.parametrize("unit", [None, "ü-ß-用户-🙂", "a" * 256, "x|y.z:1=2"])
def test_unit_ids_round_trip(unit: str | None) -> None:
    signer = Signer(SECRET, "e")
    assert signer.verify(signer.sign_decision(_decision(unit))).unit_id == unit


def test_flipping_any_character_is_rejected() -> None:
    signer = Signer(SECRET, "exp-1")
    token = signer.sign_decision(_decision()).decode()
    for i, ch in enumerate(token):
        for other in {ALPHABET[(ALPHABET.index(ch) + k) % 64] for k in (1, 2, 32)} | {"=", "!"}:
            bad = token[:i] + other + token[i + 1:]
            with pytest.raises(TokenError):
                signer.verify(bad)


def test_flipping_any_bit_of_the_decoded_bytes_is_rejected() -> None:
    signer = Signer(SECRET, "exp-1")
    raw = bytearray(_raw(signer.sign_decision(_decision()).decode()))
    for i in range(len(raw)):
        for bit in range(8):
            raw[i] ^= 1 << bit
            bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
            raw[i] ^= 1 << bit
            with pytest.raises(TokenError):
                signer.verify(bad)


def test_truncated_or_extended_tokens_are_rejected() -> None:
    signer = Signer(SECRET, "e")
    token = signer.sign_decision(_decision()).decode()
    for bad in (token[:-1], token[:-4], token + "A", token + "AAAA", token[1:], "", "A" * 5000):
        with pytest.raises(TokenError):
            signer.verify(bad)


def test_another_secret_is_rejected() -> None:
    token = Signer(SECRET, "e").sign_decision(_decision()).decode()
    with pytest.raises(TokenError, match="signature"):
        verify(token, "another-secret-of-32-characters!")
    with pytest.raises(TokenError, match="signature"):
        verify(token, SECRET + "x")


def test_expiry() -> None:
    signer = Signer(SECRET, "e")
    token = signer.sign_decision(_decision(issued=1000.0)).decode()
    assert signer.verify(token, now=1060.0, max_age=60).issued_at == 1000.0
    with pytest.raises(ExpiredTokenError, match="attribution window of 60 s"):
        signer.verify(token, now=1060.5, max_age=60)
    assert signer.verify(token, now=10**9).decision_id  # no max_age: no expiry check


@pytest.mark.parametrize("bad", [None, 12, b"\xff\xfe", "tök", ["x"]])
def test_non_tokens_raise_token_error(bad: object) -> None:
    with pytest.raises(TokenError):
        Signer(SECRET).verify(bad)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(TokenError):
        Signer("")


def test_repr_never_shows_the_secret() -> None:
    assert SECRET not in repr(Signer(SECRET, "e"))


def test_verification_compares_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    signer = Signer(SECRET, "e")
    token = signer.sign_decision(_decision()).decode()
    signer.verify(token)
    with pytest.raises(TokenError):
        signer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert calls == [(32, 32), (32, 32)]


def test_verification_time_does_not_depend_on_where_the_tag_differs() -> None:
    """A wrong first tag byte and a wrong last tag byte take the same time (interleaved,
    min of medians; generous bound: this guards against an early-exit comparison)."""
    signer = Signer(SECRET, "e")
    raw = bytearray(_raw(signer.sign_decision(_decision()).decode()))
    variants = []
    for pos in (len(raw) - 32, len(raw) - 1):
        r = bytearray(raw)
        r[pos] ^= 0xFF
        variants.append(base64.urlsafe_b64encode(bytes(r)).rstrip(b"=").decode())
    samples: list[list[float]] = [[], []]
    for _ in range(30):
        for k, tok in enumerate(variants):
            t0 = time.perf_counter()
            for _ in range(200):
                with contextlib.suppress(TokenError):
                    signer.verify(tok)
            samples[k].append(time.perf_counter() - t0)
    first, last = (statistics.median(sorted(s)[:15]) for s in samples)
    assert 0.67 < first / last < 1.5


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(alphabet=ALPHABET, max_size=300),
                 st.binary(max_size=300)))
def test_arbitrary_input_only_ever_raises_token_error(token: object) -> None:
    with pytest.raises(TokenError):
        Signer(SECRET, "e").verify(token)


# -- hostile fields and the size bound (config/limits.py, config/unit_ids.py) ------------------
def _seal(body: bytes, secret: str = SECRET) -> str:
    """A correctly signed token of any payload bytes (what a forger with the secret makes)."""
    raw = body + hmac.digest(secret.encode(), body, "sha256")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_unsignable_fields_raise_token_error_not_encode_or_struct_errors() -> None:
    signer = Signer(SECRET, "e")
    with pytest.raises(TokenError, match="^cannot sign: a field is not valid UTF-8"):
        signer.sign_decision(_decision("alice\udc80"))
    with pytest.raises(TokenError, match="^cannot sign: a field is longer than 65,535"):
        signer.sign_decision(Decision("0a1b2c3d-2f", "t" * 70_000, None, "u", 0.5, 0, "ab", 1.0))
    with pytest.raises(TokenError, match="^cannot sign: the unit id contains a control "
                                         "character U\\+001F at index 5$"):
        signer.sign(TokenPayload("0a1b2c3d-2f", "e", "t", "alice\x1f", 0.5, 1.0))
    with pytest.raises(TokenError, match="^cannot sign: the unit id contains a surrogate"):
        signer.sign(TokenPayload("0a1b2c3d-2f", "e", "t", "alice\ud800", 0.5, 1.0))


def test_a_signed_token_carrying_a_refused_unit_id_does_not_verify() -> None:
    """A token signed by a release without the unit id rule: genuine, but its unit id could
    merge into another unit, so it is refused as malformed."""
    import struct

    d, e, v, u = b"0a1b2c3d-2f", b"e", b"t", b"alice\x1f"
    body = struct.pack(">BddI4H", 1, 1.0, 0.5, 0, len(d), len(e), len(v), len(u)) + d + e + v + u
    with pytest.raises(TokenError, match="^token payload is malformed: its unit id contains a "
                                         "control character U\\+001F at index 5$"):
        Signer(SECRET, "e").verify(_seal(body))
    good = body[:-len(u)] + b"alice"
    good = good[:27] + struct.pack(">H", 5) + good[29:]
    assert Signer(SECRET, "e").verify(_seal(good)).unit_id == "alice"


def test_the_largest_token_fits_the_verified_size_and_one_more_character_does_not() -> None:
    """At ``max_token_unit_id_length`` (every character 4 UTF-8 bytes, the longest decision id,
    a 64-character experiment and variant name) a token is at most 4096 characters and
    verifies; one character more makes it longer than verify takes, and signing refuses it."""
    from modelrouter.config.limits import (
        MAX_DECISION_ID_BYTES,
        MAX_TOKEN_CHARS,
        max_token_unit_id_length,
    )

    experiment, variant = "e" * 64, "v" * 64
    n = max_token_unit_id_length(experiment, [variant])
    assert n == (3072 - 61 - 25 - 64 - 64) // 4 == 714
    decision_id = "0a1b2c3d-" + "f" * 16
    assert len(decision_id) == MAX_DECISION_ID_BYTES
    signer = Signer(SECRET, experiment)
    unit = "\U0001f642" * n
    token = signer.sign_decision(Decision(decision_id, variant, None, unit, 0.5, 3, "ab", 1.0))
    assert len(token) == 4094 <= MAX_TOKEN_CHARS
    assert signer.verify(token).unit_id == unit
    with pytest.raises(TokenError, match="^cannot sign: the token would have 4099 characters; "
                                         "tokens are verified up to 4096"):
        signer.sign_decision(Decision(decision_id, variant, None, unit + "\U0001f642", 0.5, 3,
                                      "ab", 1.0))
    payload = TokenPayload(decision_id, experiment, variant, unit + "\U0001f642", 0.5, 1.0)
    with pytest.raises(TokenError, match="would have 4099 characters"):
        signer.sign(payload)
