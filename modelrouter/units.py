"""Reading and validating the unit id of an ASGI request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from modelrouter.config import RouterConfig
from modelrouter.exceptions import UnitIdError

__all__ = ["UnitReader", "header_value"]


def header_value(scope: Mapping[str, Any], name: bytes) -> bytes | None:
    """The first value of a (lower-case) header in an ASGI scope, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


class UnitReader:
    """Finds a request's unit id (callable, header, cookie, query) and validates it.

    Returns None when no source has an id; raises :class:`UnitIdError` (HTTP 400) when an id is
    present but malformed: not UTF-8, longer than the bound, or containing control characters.
    """

    __slots__ = ("_callable", "_cookie", "_header", "_max", "_query")

    def __init__(self, config: RouterConfig) -> None:
        self._callable: Callable[[Mapping[str, Any]], str | None] | None = config.unit_id
        self._header = config.unit_header.encode("latin-1") if config.unit_header else None
        self._cookie = config.unit_cookie
        self._query = config.unit_query
        self._max = config.max_unit_id_length

    def __call__(self, scope: Mapping[str, Any]) -> str | None:
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
        if self._header is not None:
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
            qs = scope.get("query_string", b"")
            if qs:
                values = parse_qs(self._decode(qs, "query string")).get(self._query)
                if values:
                    return self._check(values[0], "query parameter")
        return None

    def _decode(self, raw: bytes, where: str) -> str:
        if len(raw) > 4 * self._max and where != "cookie header":
            raise UnitIdError(f"unit id in {where} is longer than {self._max} characters")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnitIdError(f"unit id in {where} is not valid UTF-8") from None

    def _check(self, value: str, where: str) -> str | None:
        value = value.strip()
        if not value:
            return None
        if len(value) > self._max:
            raise UnitIdError(f"unit id in {where} has {len(value)} characters; the limit is "
                              f"{self._max}")
        if not value.isprintable():
            raise UnitIdError(f"unit id in {where} contains control or non-printable characters")
        return value
