"""The bounds the stores and the decision tokens rely on, checked when a config is built.

A value past one of these would not fail at construction but later, on the request path or in a
snapshot (an ``OverflowError`` appending to a typed column, a ``struct.error`` packing a token:
HTTP 500s). So :class:`~modelrouter.config.RouterConfig` (and ``Experiment``, which alone knows
the variant names) refuse them up front with a :class:`~modelrouter.exceptions.ConfigError`
naming the field and the value. Each bound is the real limit, not a round number; the tests
run the real store or token path at the bound and show that one more fails.

- :data:`MAX_VARIANTS` (128): a unit's variant is a signed byte (``array("b")`` in
  ``store/units.py``, ``|i1`` in a snapshot file), codes 0 to 127.
- :data:`MAX_SEGMENT_CAP` (65,536): segment values are coded per dimension as unsigned 16-bit
  integers (``array("H")``, ``<u2`` in a snapshot), codes 0 to 65,535; ``segment_cap`` counts
  the values kept, ``"other"`` included, so code ``segment_cap - 1`` is the largest used.
- :func:`max_token_unit_id_length`: with a ``secret``, every routed response carries a signed
  decision token (``routing/tokens.py``) holding the unit id, and :meth:`Signer.verify
  <modelrouter.routing.tokens.Signer.verify>` takes tokens of at most :data:`MAX_TOKEN_CHARS`
  characters. A token is the unpadded URL-safe base64 of ``TOKEN_OVERHEAD`` bytes (header and
  HMAC tag) plus the UTF-8 of the decision id (at most :data:`MAX_DECISION_ID_BYTES`), the
  experiment name, the variant name and the unit id (at most 4 bytes a character), so
  ``max_unit_id_length`` may be at most ``(3072 - 61 - 25 - len(experiment) - len(variant))
  // 4`` for the longest variant name: 742 characters for experiment ``"experiment"`` and
  variant ``"control"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from modelrouter.exceptions import ConfigError

__all__ = ["MAX_DECISION_ID_BYTES", "MAX_SEGMENT_CAP", "MAX_TOKEN_CHARS", "MAX_VARIANTS",
           "TOKEN_OVERHEAD", "check_variant_names", "max_token_unit_id_length"]

MAX_VARIANTS = 128
MAX_SEGMENT_CAP = 65_536
MAX_TOKEN_CHARS = 4096
TOKEN_OVERHEAD = 29 + 32  # routing/tokens.py: ">BddI4H" header, HMAC-SHA256 tag
MAX_DECISION_ID_BYTES = 9 + 16  # 8 hex digits and "-", then the sequence number in hex (64 bits)
_MAX_TOKEN_BYTES = MAX_TOKEN_CHARS * 3 // 4  # unpadded base64: 4 characters per 3 bytes
_UTF8_MAX = 4  # bytes of the longest UTF-8 character


def max_token_unit_id_length(experiment: str, variants: Iterable[str] = ("",)) -> int:
    """The longest ``max_unit_id_length`` whose every decision token fits
    :data:`MAX_TOKEN_CHARS`, for this experiment name and variant names (the longest one
    counts; without names, a one-byte name: the bound a config can check on its own)."""
    longest = max((len(v.encode("utf-8", "surrogatepass")) for v in variants), default=0)
    room = (_MAX_TOKEN_BYTES - TOKEN_OVERHEAD - MAX_DECISION_ID_BYTES
            - len(experiment.encode("utf-8", "surrogatepass")) - max(longest, 1))
    return max(room // _UTF8_MAX, 0)


def check_variant_names(names: Sequence[str], *, experiment: str,
                        token_unit_id_length: int | None) -> None:
    """ConfigError unless the stores and the tokens can hold these variant names: at most
    :data:`MAX_VARIANTS` of them and, when decision tokens are signed
    (``token_unit_id_length`` is the config's ``max_unit_id_length`` then, else None), room
    in a token for a unit id of that length next to the longest name."""
    if len(names) > MAX_VARIANTS:
        raise ConfigError(f"variants: {len(names)} variants; at most {MAX_VARIANTS} (a unit's "
                          "variant is stored as a signed byte)")
    if token_unit_id_length is None:
        return
    limit = max_token_unit_id_length(experiment, names)
    if token_unit_id_length > limit:
        longest = max(names, key=lambda v: len(v.encode("utf-8", "surrogatepass")))
        raise ConfigError(f"max_unit_id_length ({token_unit_id_length}) must be <= {limit} with "
                          f"a secret and variant {longest[:64]!r}: a decision token carries the "
                          f"unit id (up to 4 UTF-8 bytes a character) and is verified up to "
                          f"{MAX_TOKEN_CHARS} characters")
