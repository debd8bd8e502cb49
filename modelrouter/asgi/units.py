"""Reading and validating the unit id of an ASGI request.

The unit id decides which variant a user (or session) sees, so it comes from the request
itself: a callable on the scope, a header, a cookie or a query parameter (the config names
which). It is untrusted input: a malformed one is refused with :class:`UnitIdError` (the
middleware answers 400) rather than hashed, so garbage never becomes a unit of the experiment.

Spaces and tabs around a value are removed (HTTP's optional whitespace, which servers may or
may not strip from a header); nothing else is. The rest is the one unit id rule of
:mod:`modelrouter.config.unit_ids`: valid UTF-8, at most ``max_unit_id_length`` characters, no
control, surrogate, format (invisible) or line-separator character anywhere, so
``alice\x1f`` is refused, never merged into ``alice``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from modelrouter.asgi.types import Scope
from modelrouter.config import RouterConfig
from modelrouter.config.unit_ids import unit_id_problem
from modelrouter.exceptions import UnitIdError

__all__ = ["UnitReader", "cookie_value", "header_value"]


def header_value(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) header in an ASGI scope, or None."""
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value
    return None


def cookie_value(scope: Scope, name: bytes) -> bytes | None:
    """The raw value of cookie ``name`` in the request's ``Cookie`` header(s), or None.

    Parsed as RFC 6265 (5.4) says a request's cookies are sent: ``name=value`` pairs separated
    by ``;``, spaces and tabs around each part ignored, the first pair of the name wins, a value
    in double quotes is unquoted. Bytes in, bytes out: the caller decodes only this value, so
    another application's malformed cookie neither hides ours nor fails the request, and a
    character in our value that a cookie may not hold is not skipped over but refused by the
    unit id rule. A quoted value with no closing quote is malformed (UnitIdError).
    """
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for key, raw in headers:
        if key != b"cookie":
            continue
        for pair in raw.split(b";"):
            key_part, eq, value = pair.partition(b"=")
            if eq and key_part.strip(b" \t") == name:
                value = value.strip(b" \t")
                if value[:1] == b'"':
                    if len(value) < 2 or value[-1:] != b'"':
                        raise UnitIdError("unit id in cookie has an opening quote but no "
                                          "closing one")
                    value = value[1:-1]
                return value
    return None


class UnitReader:
    """Finds a request's unit id (callable, header, cookie, query) and validates it.

    Returns None when no source has an id (or its value is blank: empty, or spaces and tabs
    only); raises :class:`UnitIdError` (HTTP 400) when an id is present but malformed: not
    UTF-8, longer than the bound, or holding a refused character (see the module docstring).
    """

    __slots__ = ("_callable", "_cookie", "_cookie_name", "_header", "_max", "_query",
                 "fast_header", "max_length")

    def __init__(self, config: RouterConfig) -> None:
        # the config's callable takes the scope as a read-only mapping of arbitrary ASGI values
        self._callable: Callable[[Mapping[str, Any]], str | None] | None = config.unit_id
        self._header = config.unit_header.encode("latin-1") if config.unit_header else None
        self._cookie = config.unit_cookie
        self._cookie_name = (config.unit_cookie or "").encode("utf-8")
        self._query = config.unit_query
        self._max = self.max_length = config.max_unit_id_length
        # the header whose printable-ASCII values the compiled middleware reads itself
        # (asgi/middleware_c.pyx): set when a header is the first source (no callable)
        self.fast_header = self._header if self._callable is None else None

    def __call__(self, scope: Scope) -> str | None:
        """The request's unit id; None when no source has one (or it is blank)."""
        name = self._header
        if name is not None and self._callable is None:  # the common case, inlined
            headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
            for key, raw in headers:
                if key == name:
                    try:
                        value = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise UnitIdError("unit id in header is not valid UTF-8") from None
                    # printable ASCII (no control character), no space to strip: valid
                    if 0 < len(value) <= self._max and value.isascii() and (
                            value.isprintable() and value[0] != " " and value[-1] != " "):
                        return value
                    return self._check(self._decode(raw, "header"), "header")
            return self._slow(scope, header=False) if self._cookie or self._query else None
        return self._slow(scope)

    def _slow(self, scope: Scope, header: bool = True) -> str | None:
        """Every source in order: callable, header (unless done), cookie, query."""
        if self._callable is not None:
            try:
                value = self._callable(scope)
            except Exception as exc:
                raise UnitIdError(f"the unit_id callable failed: {exc!r}") from exc
            if value is not None:
                if not isinstance(value, str):
                    raise UnitIdError(f"the unit_id callable returned {type(value).__name__}, "
                                      "expected str or None")
                return self._check(str.__str__(value), "the unit_id callable")
        if header and self._header is not None:
            raw = header_value(scope, self._header)
            if raw is not None:
                return self._check(self._decode(raw, "header"), "header")
        if self._cookie is not None:
            raw = cookie_value(scope, self._cookie_name)
            if raw is not None:
                return self._check(self._decode(raw, "cookie"), "cookie")
        if self._query is not None:
            qs: bytes = scope.get("query_string", b"")
            if qs:  # the whole string is unbounded (other parameters): only the value is checked
                # percent escapes to bytes (latin-1 maps them 1:1), then only our value as UTF-8
                values = parse_qs(qs.decode("latin-1"), encoding="latin-1").get(self._query)
                if values:
                    raw = values[0].encode("latin-1")
                    return self._check(self._decode(raw, "query parameter"), "query parameter")
        return None

    def _decode(self, raw: bytes, where: str) -> str:
        """``raw`` as UTF-8; a value far over the bound is refused before decoding it."""
        if len(raw.strip(b" \t")) > 4 * self._max:
            raise UnitIdError(f"unit id in {where} is longer than {self._max} characters")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnitIdError(f"unit id in {where} is not valid UTF-8") from None

    def _check(self, value: str, where: str) -> str | None:
        """``value`` without surrounding spaces and tabs; None when nothing is left;
        UnitIdError when it breaks the unit id rule (config/unit_ids.py)."""
        value = value.strip(_OWS)
        if not value:
            return None
        problem = unit_id_problem(value, self._max)
        if problem is not None:
            raise UnitIdError(f"unit id in {where} {problem}")
        return value


_OWS = " \t"  # HTTP optional whitespace (RFC 9110, 5.6.3): the only characters stripped
