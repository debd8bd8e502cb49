"""What a remote store could not merge, as the analysis notes say it (never lost silently).

:func:`loss_notes` turns a snapshot's ``losses`` (dropped exposures and values of full worker
buffers, orphan values, batches Redis refused with their reasons, covariate values read from
requests and dropped) into sentences for the analysis; :data:`REFUSAL_REASONS` explains each
refusal reason of the Redis batch script (store/redis/batch.py), :data:`COVARIATE_DROP_REASONS`
each reason a covariate read from a request is dropped (asgi/covariates.py). The memory store
adds ``unattributed_requests`` (:data:`UNATTRIBUTED`): finished requests whose decision was no
longer pending, so their latency and error had nothing to be attributed to (store/journal.py);
the Redis store counts those of every worker too. A memory store keeps its losses in one dict
(:func:`count_loss`) and saves them with its state (:func:`check_losses` reads them back).
Re-exported by :mod:`modelrouter.store.protocol`.

Thread safety: pure functions and constants.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["COVARIATE_DROP_REASONS", "DROP_PREFIX", "FORWARDS_LOST", "FORWARDS_REFUSED",
           "REFUSAL_REASONS", "UNATTRIBUTED", "check_losses", "count_loss", "loss_notes"]

DROP_PREFIX = "covariate_dropped:"
"""``Snapshot.losses`` key prefix of covariate values read from requests and dropped."""

UNATTRIBUTED = "unattributed_requests"
"""``Snapshot.losses`` key of finished requests whose decision was no longer pending."""

FORWARDS_LOST = "forwarded_lost"
"""``Snapshot.losses`` key (Redis) of feedback values forwarded to the worker that made their
decision (request level: the whole value goes there) after that decision had left its
pending ring: not recorded (its group's statistics, a bandit's decision sums and training)."""

FORWARDS_REFUSED = "forwarded_refused"
"""``Snapshot.losses`` key (Redis) of entries in a worker's inbox that no worker writes
(another client wrote them: malformed, out of range, a key of another type), never applied."""


def count_loss(losses: dict[str, int], key: str, n: int = 1) -> None:
    """Add ``n`` to the ``losses`` entry ``key`` (nothing for 0: no zero entries)."""
    if n:
        losses[key] = losses.get(key, 0) + n


def check_losses(section: object) -> dict[str, int]:
    """A saved ``losses`` section validated (ValueError): a mapping of the keys a memory store
    counts (:data:`UNATTRIBUTED`, :data:`DROP_PREFIX` + a reason of
    :data:`COVARIATE_DROP_REASONS`) to counts in [0, 2**63). A file cannot put text of its
    own into the analysis notes."""
    if not isinstance(section, Mapping):
        raise ValueError(f"losses must be a mapping, not {type(section).__name__}")
    losses = {}
    for key, n in section.items():
        if key != UNATTRIBUTED and (not isinstance(key, str) or not key.startswith(DROP_PREFIX)
                                    or key[len(DROP_PREFIX):] not in COVARIATE_DROP_REASONS):
            raise ValueError(f"unknown loss {key!r}")
        if type(n) is not int or not 0 <= n < 2**63:
            raise ValueError(f"loss {key!r} is {n!r}, not a count")
        losses[key] = n
    return losses


def loss_notes(losses: Mapping[str, int]) -> list[str]:
    """Analysis notes for what a remote store could not merge (never silently lost)."""
    notes = []
    if losses.get("dropped_exposures"):
        notes.append(f"{losses['dropped_exposures']:,} exposures were dropped by full worker "
                     "buffers while the shared store was unreachable (requests still counted)")
    if losses.get("dropped_values"):
        notes.append(f"{losses['dropped_values']:,} feedback values were dropped by full worker "
                     "buffers while the shared store was unreachable")
    if losses.get(UNATTRIBUTED):
        n = losses[UNATTRIBUTED]
        whose = "request's" if n == 1 else "requests'"
        notes.append(f"{n:,} finished {whose} latency and error were not recorded: the "
                     "decision was no longer pending when the response ended "
                     "(max_pending newer decisions were made while it was in flight, or the "
                     "store was restored); raise max_pending if this grows")
    if losses.get(FORWARDS_LOST):
        n = losses[FORWARDS_LOST]
        notes.append(f"{n:,} feedback value{'s' if n != 1 else ''} forwarded to the worker "
                     "that made the decision arrived after that decision had left its pending "
                     "ring (max_pending newer decisions, or a restart), so it was not recorded "
                     "(its group's statistics, a bandit's decision sums and training); raise "
                     "max_pending if this grows")
    if losses.get(FORWARDS_REFUSED):
        notes.append(f"{losses[FORWARDS_REFUSED]:,} entries in the workers' forwarding inboxes "
                     "were refused, never applied: no worker writes them (another Redis client "
                     "wrote into the experiment's keys)")
    if losses.get("orphan_values"):
        notes.append(f"{losses['orphan_values']:,} feedback values belong to units whose exposure "
                     "is not in the shared store (dropped or not yet flushed); not analysed")
    dropped = {k[len(DROP_PREFIX):]: n for k, n in sorted(losses.items())
               if k.startswith(DROP_PREFIX) and n}
    if dropped:
        reasons = "; ".join(f"{n:,} {COVARIATE_DROP_REASONS.get(r, r)}"
                            for r, n in dropped.items())
        notes.append(f"{sum(dropped.values()):,} covariate values read from requests at a "
                     f"unit's first exposure were dropped ({reasons}); those units are "
                     "adjusted as missing that covariate")
    if losses.get("refused_batches"):
        reasons = "; ".join(
            f"{n:,} x {REFUSAL_REASONS.get(key[8:], key[8:])}"
            for key, n in sorted(losses.items()) if key.startswith("refused:") and n)
        n = losses["refused_batches"]
        notes.append(f"{n:,} batch{'' if n == 1 else 'es'} of updates could not be applied by "
                     f"the shared store and {'was' if n == 1 else 'were'} dropped whole "
                     f"({reasons or 'no reason recorded'}): "
                     f"{losses.get('refused_requests', 0):,} requests, "
                     f"{losses.get('refused_exposures', 0):,} exposures and "
                     f"{losses.get('refused_values', 0):,} feedback values are missing"
                     + (" (of a torn batch, part may be in the totals as well)"
                        if losses.get("refused:torn") else ""))
    return notes


REFUSAL_REASONS: Mapping[str, str] = {
    "ops": "the batch did not decode (e.g. a unit id that is not valid UTF-8)",
    "type": "a key of the experiment is not a hash (overwritten by another client)",
    "stored": "a stored counter is not a number (overwritten by another client)",
    "increment": "an increment is not a finite number (a worker's buffered sum overflowed)",
    "overflow": "a total would overflow (not a finite float, or a count of 2**53 or more)",
    "torn": ("Redis restarted twice around a batch it was writing to its append-only file and "
             "replayed part of it before the worker's retry"),
}
"""Why the Redis store may refuse a batch (store/redis/batch.py), as the analysis notes say."""

COVARIATE_DROP_REASONS: Mapping[str, str] = {
    "not_a_number": "not a number (a header that does not parse as a float)",
    "invalid_value": "not finite or out of range (NaN, inf, |value| > 1e100, 0 < |v| < 1e-100)",
    "undeclared": "a name covariate_fn returned that no metric declares",
    "reader_error": "covariate_fn raised or returned no mapping",
    "refused": "refused by the store",
}
"""Why a covariate value read from a request is dropped (asgi/covariates.py): reason ->
what the analysis notes say."""
