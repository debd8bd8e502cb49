"""The compiled Bucketer's own BLAKE2b (routing/assignment_c.pyx) against hashlib's.

The twin hashes ASCII ids itself (RFC 7693 on the stack) instead of through a copied hashlib
object; hashlib is the independent reference. Lengths are chosen around BLAKE2b's 128-byte
block (the salt's prefix and the id may each end inside, at, or past a block boundary, and the
message may be exactly one or two blocks). Matrix cells: valid and hostile input (non-ASCII,
str subclasses, bytes, an uninitialised Bucketer); the store and mode do not reach the hash.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.assignment import Bucketer
from tests.asgi._attack import outcome

pytestmark = pytest.mark.skipif(not compiled().get("modelrouter.routing.assignment_c"),
                                reason="compiled Bucketer not built on this machine")
PYTHON_CALL: Any = python_method(Bucketer, "__call__")
LENGTHS = (0, 1, 7, 8, 63, 126, 127, 128, 129, 200, 254, 255, 256, 257, 383, 384, 385, 1000)


def reference(salt: str, unit: str) -> float:
    """The README's spec with hashlib, independent of Bucketer."""
    digest = hashlib.blake2b(salt.encode() + b"\x00" + unit.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def test_every_salt_and_id_length_around_the_block_boundaries() -> None:
    rnd = random.Random(7)
    for ns in LENGTHS:
        salt = "".join(rnd.choices("abcdefghijklmnopqrstuvwxyz-0123456789", k=ns))
        b = Bucketer(salt)
        for nu in LENGTHS:
            unit = "".join(rnd.choice([chr(c) for c in range(0x20, 0x7F)]) for _ in range(nu))
            assert b(unit) == reference(salt, unit) == PYTHON_CALL(b, unit), (ns, nu)


def test_every_byte_value_and_bit_position_of_one_id() -> None:
    """All 128 ASCII characters (control characters included) at every position of a
    130-character id, so every byte of both blocks is read with its own value."""
    b = Bucketer("exp")
    for pos in range(0, 130, 13):
        for c in range(128):
            unit = "u" * pos + chr(c) + "v" * (129 - pos)
            assert b(unit) == reference("exp", unit), (pos, c)


def test_non_ascii_ids_and_salts_take_the_python_steps_with_the_same_result() -> None:
    for salt in ("", "s\u00e9l", "\U0001F600" * 70):
        b = Bucketer(salt)
        for unit in ("\u00e9", "\u4e2d" * 100, "a" * 127 + "\u00df", "\U0010FFFF"):
            assert b(unit) == reference(salt, unit) == PYTHON_CALL(b, unit)


def test_hostile_ids_raise_what_the_python_method_raises() -> None:
    class Loud(str):
        def encode(self, *args: Any, **kwargs: Any) -> bytes:
            return b"other"

    b = Bucketer("s")
    for unit in ("\ud800", "a\udfffb", b"x", bytearray(b"x"), None, 5, 1.5, Loud("user-1")):
        assert outcome(lambda u=unit: b(u)) == outcome(lambda u=unit: PYTHON_CALL(b, u)), unit
    assert b(Loud("user-1")) == PYTHON_CALL(b, Loud("user-1"))  # the subclass's own encode


def test_a_bucketer_whose_init_never_ran_raises_like_the_python_method() -> None:
    bare = Bucketer.__new__(Bucketer)
    assert outcome(lambda: bare("user-1")) == outcome(lambda: PYTHON_CALL(bare, "user-1"))
    assert outcome(lambda: bare("user-1")) == "AttributeError"
