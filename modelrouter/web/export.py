"""``GET {prefix}/export``: the snapshot's rows as CSV, streamed (admin token).

The rows and their columns are :mod:`modelrouter.store.export`'s (the same as
``modelrouter export`` and ``Analysis.to_frame()``). The answer is sent in chunks of
:data:`~modelrouter.store.export.CHUNK_ROWS` rows, each one ASGI ``http.response.body`` message
with ``more_body=True`` (the server sends them chunked), so an export of a million units never
exists whole in memory; every chunk is formatted in a worker thread, so the event loop keeps
serving routed requests meanwhile. The snapshot is taken once, before the first byte: a refused
request (401/403, bad ``format``, store down) gets its JSON error instead of a partial file.

Also :func:`query_format`, the ``?format=`` of the admin endpoints (``/stats?format=text``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from modelrouter.asgi.types import Scope, Send
from modelrouter.store.export import csv_chunks
from modelrouter.store.types import Snapshot
from modelrouter.web.messages import SECURITY_HEADERS, HTTPError

__all__ = ["CSV_TYPE", "CsvStream", "query_format", "stream_csv"]

CSV_TYPE = b"text/csv; charset=utf-8; header=present"


def query_format(scope: Scope, allowed: Sequence[str]) -> str:
    """The ``format`` query parameter (default: the first of ``allowed``); 422 otherwise."""
    raw = scope.get("query_string", b"")
    try:
        query = parse_qs(raw.decode("latin-1"), max_num_fields=10)
    except ValueError:
        raise HTTPError(422, "query: malformed query string") from None
    values: list[str] = query.get("format", [allowed[0]])
    if len(values) != 1 or values[0] not in allowed:
        raise HTTPError(422, f"format ({', '.join(values)[:40]!r}) must be one of "
                             f"{', '.join(map(repr, allowed))}")
    chosen: str = values[0]
    return chosen


@dataclass(frozen=True, repr=False)
class CsvStream:
    """An endpoint's answer that is streamed (:func:`stream_csv`) rather than sent whole."""

    snapshot: Snapshot
    filename: str

    def __repr__(self) -> str:
        return f"CsvStream({self.filename!r}, {self.snapshot.n_units} units)"


async def stream_csv(send: Send, answer: CsvStream) -> None:
    """Send the snapshot's export as a streamed CSV attachment."""
    chunks: Iterator[bytes] = csv_chunks(answer.snapshot)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", CSV_TYPE),
                            (b"content-disposition",
                             f'attachment; filename="{answer.filename}"'.encode()),
                            *SECURITY_HEADERS]})
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            break
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
