"""The routing state as one record shared by every worker (the control plane of shared stores).

With a store whose ``shared`` is True (Redis), every change of the routing state (``configure``,
``pause_arm``/``resume_arm``, a rollback or resume, a bandit refresh) is published as a record
of the whole desired state with the next epoch number, by compare-and-set on the epoch the
worker started from (:meth:`Store.publish_control
<modelrouter.store.protocol.Store.publish_control>`). A worker that lost the race adopts the
newer record and applies its change again on top of it, so the history of the routing state
is one sequence of epochs for all workers, and every epoch has one set of weights and
propensities (the analysis of any worker reads the same epochs).

Every worker adopts a newer record after each flush of its store (every ``flush_seconds``,
0.1 s by default): a change made through one worker is in force in all of them within
``flush_seconds`` plus a Redis round trip, measured in the tests. The same watcher runs the
bandit's schedule on the *shared* counters: a refresh is due when ``refresh_every`` training
updates have been flushed by all workers together since the record in force was published, or
``refresh_seconds`` have passed with at least one; any worker may find it due, and the
compare-and-set lets one of them publish it.

This module holds the record's format and the schedule; :mod:`modelrouter.routing.state`
applies them under its lock.

Thread safety: pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelrouter.config import Mode

__all__ = ["MAX_EVENTS", "RETRY_SECONDS", "Conflict", "desired_of", "make_record",
           "refresh_due"]

RETRY_SECONDS = 5.0  # compare-and-set retries of one change (with jitter) before it is refused
MAX_EVENTS = 100  # rollback/resume events kept in the shared record (the newest)


class Conflict(Exception):
    """Another worker published a routing state first (internal: the change is retried)."""


def make_record(*, epoch: int, mode: str, ab: Mapping[str, float], active: Sequence[bool],
                held: bool, bandit: Mapping[str, Any] | None, propensities: Sequence[float],
                events: Sequence[Mapping[str, Any]], at: float, updates: float
                ) -> dict[str, Any]:
    """The JSON-safe record of a routing state in force from ``epoch`` on.

    ``bandit``: the bandit's weights (``BanditRouter.saved_state()["weights"]``) or None;
    ``updates``: the shared training updates when it was published (the refresh schedule).
    """
    return {"epoch": int(epoch), "mode": mode, "ab": {k: float(v) for k, v in ab.items()},
            "active": [bool(a) for a in active], "held": bool(held),
            "bandit": None if bandit is None else dict(bandit),
            "propensities": [float(p) for p in propensities],
            "events": [dict(e) for e in events[-MAX_EVENTS:]], "at": float(at),
            "updates": float(updates)}


def desired_of(record: Mapping[str, Any], names: Sequence[str]
               ) -> tuple[Mode, dict[str, float], list[bool], bool, list[Mapping[str, Any]]]:
    """``(mode, A/B weights, active arms, held, event dicts)`` of a published record."""
    mode: Mode = "bandit" if record["mode"] == "bandit" else "ab"
    ab = {n: float(record["ab"].get(n, 0.0)) for n in names}
    return (mode, ab, [bool(a) for a in record["active"]], bool(record["held"]),
            list(record["events"]))


def refresh_due(record: Mapping[str, Any] | None, updates: float, now: float,
                refresh_every: int, refresh_seconds: float | None,
                skipped: tuple[float, float] | None = None) -> bool:
    """Whether the shared schedule asks for a bandit refresh of the record in force;
    ``skipped``: (updates, time) of this worker's last refresh that changed nothing (counted
    from there, see ``RoutingState._scheduled_refresh``)."""
    if skipped is not None:
        last = record or {}
        record = {"updates": max(skipped[0], float(last.get("updates", 0.0))),
                  "at": max(skipped[1], float(last.get("at", 0.0)))}
    if record is None:
        return updates >= refresh_every
    new = updates - float(record.get("updates", 0.0))
    if new >= refresh_every:
        return True
    if refresh_seconds is None or math.isinf(refresh_seconds):
        return False
    return new > 0 and now - float(record.get("at", now)) >= refresh_seconds
