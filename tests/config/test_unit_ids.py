"""The unit id rule (modelrouter/config/unit_ids.py): which characters are refused, exactly,
and the table's agreement with the running Python's Unicode database."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from modelrouter.config.unit_ids import REFUSED_RANGES, check_unit_id, unit_id_problem
from modelrouter.exceptions import UnitIdError

REFUSED_CATEGORIES = {"Cc", "Cs", "Cf", "Zl", "Zp"}


def refused(cp: int) -> bool:
    return unit_id_problem(f"a{chr(cp)}b", 10) is not None


def test_every_code_point_is_refused_exactly_when_the_table_says() -> None:
    """All 1,114,112 code points, in the middle of an id: refused iff in a range of the table,
    and the table holds exactly the categories Cc, Cs, Cf, Zl and Zp of this Python."""
    table = {cp for first, last, _ in REFUSED_RANGES for cp in range(first, last + 1)}
    for cp in range(sys.maxunicode + 1):
        assert refused(cp) == (cp in table), hex(cp)
        if unicodedata.category(chr(cp)) in REFUSED_CATEGORIES:
            # a newer Unicode may add format characters: extend REFUSED_RANGES then
            assert cp in table, f"U+{cp:04X} ({unicodedata.category(chr(cp))}) is not refused"
        elif cp in table:  # Unicode 15.1 format characters this Python may not know yet
            assert unicodedata.category(chr(cp)) in REFUSED_CATEGORIES | {"Cn"}, hex(cp)


@pytest.mark.parametrize(("value", "problem"), [
    ("alice\x1f", "contains a control character U+001F at index 5"),
    ("\x1calice", "contains a control character U+001C at index 0"),
    ("alice\x85", "contains a control character U+0085 at index 5"),
    ("ali\x00ce", "contains a control character U+0000 at index 3"),
    ("tab\there", "contains a control character U+0009 at index 3"),
    ("del\x7f", "contains a control character U+007F at index 3"),
    ("alice\u200b", "contains a format character U+200B at index 5"),
    ("\ufeffalice", "contains a format character U+FEFF at index 0"),
    ("abc\u202edcba", "contains a format character U+202E at index 3"),
    ("line\u2028sep", "contains a line separator character U+2028 at index 4"),
    ("para\u2029", "contains a paragraph separator character U+2029 at index 4"),
    ("lone\udc80", "contains a surrogate character U+DC80 at index 4"),
    ("\ud83d", "contains a surrogate character U+D83D at index 0"),
    ("", "is empty"),
    (" alice", "begins or ends with a space"),
    ("alice ", "begins or ends with a space"),
    ("x" * 9, "has 9 characters; the limit is 8"),
])
def test_refused_ids_and_their_exact_problem(value: str, problem: str) -> None:
    assert unit_id_problem(value, 8 if len(value) == 9 else 100) == problem
    with pytest.raises(UnitIdError) as info:
        check_unit_id(value, 8 if len(value) == 9 else 100, " in header")
    assert str(info.value) == f"unit id in header {problem}"


@pytest.mark.parametrize("value", [
    "alice", "user-42", "a b", "\u00e9l\u00e8ve", "\u7528\u6237", "\U0001f642",
    "alice\u00a0",  # a no-break space is not stripped and not refused: its own unit
    "\ue000private", "x" * 100, "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
])
def test_accepted_ids_are_returned_unchanged(value: str) -> None:
    assert unit_id_problem(value, 100) is None
    assert check_unit_id(value, 100) == value


def test_length_counts_characters() -> None:
    assert check_unit_id("\U0001f642" * 4, 4) == "\U0001f642" * 4
    assert unit_id_problem("\U0001f642" * 5, 4) == "has 5 characters; the limit is 4"


def test_only_strings() -> None:
    with pytest.raises(UnitIdError, match="^unit id must be a string, got int$"):
        check_unit_id(42, 10)
    with pytest.raises(UnitIdError, match="must be a string, got bytes"):
        check_unit_id(b"alice", 10)

    class Name(str):
        pass

    out = check_unit_id(Name("alice"), 10)
    assert out == "alice" and type(out) is str
