"""Reading and validating the unit id of an ASGI request.

The unit id decides which variant a user (or session) sees, so it comes from the request
itself: a callable on the scope, a header, a cookie or a query parameter (the config names
which). It is untrusted input: a malformed one is refused with :class:`UnitIdError` (the
middleware answers 400) rather than hashed, so garbage never becomes a unit of the experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from modelrouter.asgi.types import Scope
from modelrouter.config import RouterConfig
from modelrouter.exceptions import UnitIdError

__all__ = ["UnitReader", "header_value"]


def header_value(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) header in an ASGI scope, or None."""
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value
    return None


class UnitReader:
    """Finds a request's unit id (callable, header, cookie, query) and validates it.

    Returns None when no source has an id; raises :class:`UnitIdError` (HTTP 400) when an id is
    present but malformed: not UTF-8, longer than the bound, or containing control characters.
    """

    __slots__ = ("_callable", "_cookie", "_header", "_max", "_query")

    def __init__(self, config: RouterConfig) -> None:
        # the config's callable takes the scope as a read-only mapping of arbitrary ASGI values
        self._callable: Callable[[Mapping[str, Any]], str | None] | None = config.unit_id
        self._header = config.unit_header.encode("latin-1") if config.unit_header else None
        self._cookie = config.unit_cookie
        self._query = config.unit_query
        self._max = config.max_unit_id_length

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
                    if 0 < len(value) <= self._max and value.isprintable() and (
                            value[0] != " " and value[-1] != " "):
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
                return self._check(value, "the unit_id callable")
        if header and self._header is not None:
            raw = header_value(scope, self._header)
            if raw is not None:
                return self._check(self._decode(raw, "header"), "header")
        if self._cookie is not None:
            raw = header_value(scope, b"cookie")
            if raw is not None:
                text = self._decode(raw, "cookie header")
                try:
                    morsel = SimpleCookie(text).get(self._cookie)
                except CookieError:
                    morsel = None
                if morsel is not None:
                    return self._check(morsel.value, "cookie")
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
        """``raw`` as UTF-8; a header far over the bound is refused before decoding it."""
        if len(raw) > 4 * self._max and where == "header":
            raise UnitIdError(f"unit id in {where} is longer than {self._max} characters")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnitIdError(f"unit id in {where} is not valid UTF-8") from None

    def _check(self, value: str, where: str) -> str | None:
        """``value`` stripped; None when blank; UnitIdError when too long or not printable."""
        value = value.strip()
        if not value:
            return None
        if len(value) > self._max:
            raise UnitIdError(f"unit id in {where} has {len(value)} characters; the limit is "
                              f"{self._max}")
        if not value.isprintable():
            raise UnitIdError(f"unit id in {where} contains control or non-printable characters")
        return value
