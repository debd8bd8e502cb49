"""Which strings may be a unit id: the rule, written once and used by every entry point.

A unit id decides which variant a user sees and which row their feedback lands in, so every
way in - the ASGI readers (header, cookie, query parameter, the ``unit_id`` callable,
``asgi/units.py``), ``Experiment.assign`` / ``route`` / ``record_unit`` (routing), decision
tokens (``routing/tokens.py``) and the Redis store's hot path - applies this one rule through
:func:`check_unit_id` (or :func:`unit_id_problem`), and refuses with
:class:`~modelrouter.exceptions.UnitIdError` (HTTP 400 on the request path) instead of
normalising: an id is stored exactly as it was accepted, never merged into another one.

A unit id is a ``str`` of 1 to ``max_unit_id_length`` characters (code points) that

- does not begin or end with a space (the ASGI readers strip spaces and tabs around a value,
  HTTP's optional whitespace; nothing else is ever stripped), and
- contains none of the characters in :data:`REFUSED_RANGES`:

  ========================  =================================================================
  ``Cc`` controls           U+0000-U+001F, U+007F-U+009F: NUL, tab, CR, LF, the separators
                            U+001C-U+001F, DEL, NEL (U+0085) and the other C1 controls
  ``Cs`` surrogates         U+D800-U+DFFF: not characters; no valid UTF-8 encodes them, so an
                            id holding one could not be hashed, stored in Redis or signed
  ``Cf`` format characters  invisible: zero-width space and joiners (U+200B-U+200F), bidi
                            embeddings, overrides and isolates (U+202A-U+202E,
                            U+2066-U+2069), the BOM (U+FEFF), soft hyphen (U+00AD), tags
                            (U+E0001, U+E0020-U+E007F), ...
  ``Zl``, ``Zp``            U+2028 line and U+2029 paragraph separator (line breaks)
  ========================  =================================================================

Why format characters too: ``alice\\u200b`` prints exactly like ``alice`` yet is another unit,
and a bidi override makes a logged id read backwards; an opaque identifier never needs them.
The cost is that emoji sequences joined by U+200D (ZWJ) are refused. Everything else is
accepted, spaces inside an id, non-ASCII letters, private-use and unassigned code points
included.

The table is fixed (Unicode 15.1's ``Cc``, ``Cs``, ``Cf``, ``Zl`` and ``Zp``), not read from
:mod:`unicodedata`, so every Python version a fleet of workers runs decides the same way;
``tests/config/test_unit_ids.py`` checks it still covers the running Python's database.

Messages name the position and the code point of the first refused character, never the id.
"""

from __future__ import annotations

import re

from modelrouter.exceptions import UnitIdError

__all__ = ["REFUSED_RANGES", "check_unit_id", "unit_id_problem"]

REFUSED_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0000, 0x001F, "control"),
    (0x007F, 0x009F, "control"),
    (0x00AD, 0x00AD, "format"),
    (0x0600, 0x0605, "format"),
    (0x061C, 0x061C, "format"),
    (0x06DD, 0x06DD, "format"),
    (0x070F, 0x070F, "format"),
    (0x0890, 0x0891, "format"),
    (0x08E2, 0x08E2, "format"),
    (0x180E, 0x180E, "format"),
    (0x200B, 0x200F, "format"),
    (0x2028, 0x2028, "line separator"),
    (0x2029, 0x2029, "paragraph separator"),
    (0x202A, 0x202E, "format"),
    (0x2060, 0x2064, "format"),
    (0x2066, 0x206F, "format"),
    (0xD800, 0xDFFF, "surrogate"),
    (0xFEFF, 0xFEFF, "format"),
    (0xFFF9, 0xFFFB, "format"),
    (0x110BD, 0x110BD, "format"),
    (0x110CD, 0x110CD, "format"),
    (0x13430, 0x1343F, "format"),
    (0x1BCA0, 0x1BCA3, "format"),
    (0x1D173, 0x1D17A, "format"),
    (0xE0001, 0xE0001, "format"),
    (0xE0020, 0xE007F, "format"),
)
"""``(first, last, kind)`` code point ranges no unit id may contain (see the module docstring)."""

_REFUSED = re.compile("[" + "".join(
    f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b, _ in REFUSED_RANGES) + "]")


def _kind(cp: int) -> str:
    for first, last, kind in REFUSED_RANGES:
        if first <= cp <= last:
            return kind
    return "refused"  # pragma: no cover - only called for a match of _REFUSED


def unit_id_problem(value: str, max_length: int) -> str | None:
    """Why ``value`` is not a valid unit id (a phrase such as ``is empty`` or ``contains a
    control character U+001F at index 5``), or None when it is one."""
    n = len(value)
    if n == 0:
        return "is empty"
    if n > max_length:
        return f"has {n} characters; the limit is {max_length}"
    # the common case, printable ASCII, needs no regex
    bad = None if value.isascii() and value.isprintable() else _REFUSED.search(value)
    if bad is not None:
        cp = ord(bad.group())
        kind = _kind(cp)
        article = "an" if kind[0] in "aeiou" else "a"
        return f"contains {article} {kind} character U+{cp:04X} at index {bad.start()}"
    if value[0] == " " or value[-1] == " ":
        return "begins or ends with a space"
    return None


def check_unit_id(value: object, max_length: int, where: str = "") -> str:
    """``value`` if it is a valid unit id of at most ``max_length`` characters, else
    :class:`UnitIdError` ``unit id{where} <problem>`` (``where``: `` in header``, ...)."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise UnitIdError(f"unit id{where} must be a string, got {type(value).__name__}")
        value = str.__str__(value)  # a str subclass (numpy.str_): its plain string
    problem = unit_id_problem(value, max_length)
    if problem is not None:
        raise UnitIdError(f"unit id{where} {problem}")
    return value
