"""What Redis shares between workers beyond the statistics: the routing control plane, the
bandit's training counters, the feedback seen set and the forwarding inboxes.

- ``mr:{exp}:control`` (hash ``epoch``, ``record``): the routing state in force for every
  worker (mode, A/B weights, active arms, rollback hold, bandit weights; see
  :mod:`modelrouter.routing.state`). :meth:`SharedControl.publish` replaces it only if the
  epoch stored is still the one the publisher started from (compare-and-set in one script,
  which also records the new epoch in the ``epochs`` hash); a publisher that lost the race
  adopts the newer record and tries again. No record means epoch 0, the configured start.
  While Redis cannot answer, a publish retries the same change for a few seconds; the script
  reports a change whose epoch entry is already there, byte for byte, as installed, so a change
  whose reply was lost (Redis killed after running it) is not reported as failed.
- ``mr:{exp}:training``: the bandit's training counters (``<counter>:<arm index>``) and
  ``updates`` (training updates so far), the additive sum of every worker's deltas (flushed
  with the statistics, batch.py). Every worker computes weights from these global counters.
- ``mr:{exp}:seen:<decision id>|<metric>``: a feedback token's (decision, metric) was counted;
  ``SET NX PX`` with the attribution window as time to live, so a replay to any worker is
  refused once. The value is a random id of the claim: a claim whose reply was lost (Redis
  killed after running it) refused its feedback, so it is doubtful, and released (deleted if
  it still holds that id, :data:`RELEASE_LUA`) before this worker's next claim and after each
  flush, so the client's retry is recorded instead of being taken for a duplicate.
- ``mr:{exp}:fwd:<decision-id prefix>``: values for a decision that another worker issued
  (its pending ring is there): written in the sender's batch, one field per value (named by
  the batch and its op, so a replay writes it again instead of adding a copy), taken by the
  owner after its flushes (:data:`HASH_POP_LUA`) and applied to its decision tracker. The
  owner creates the hash at its first poll (an empty field) and keeps it alive; it lives one
  attribution window past its owner's last poll or its last value.
  ``mr:{exp}:inbox:<decision-id prefix>`` is the list older versions push to and read: a
  sender pushes there while the owner's hash does not exist (an older owner, or one that has
  not polled yet), and the owner's pop takes it too.
- ``mr:{exp}:shadows`` (hash ``<decision-id prefix>`` -> JSON): each worker's own shadow
  statistics (store/shadow_state.py), replaced by that worker after its flushes; a reader
  merges every worker's (they are additive). A stopped worker's entry stays: its pairs count.
- ``mr:{exp}:lbl:<decision-id prefix>``: ground-truth labels for another worker's shadowed
  decisions (``record_label``), a hash the owner registers at its first pop, as the inbox's;
  each label is written to a field its sender chose (:data:`LABEL_PUSH_LUA`), so a replayed
  part of a push writes the same fields again instead of a second copy.
  ``mr:{exp}:labels:<decision-id prefix>`` is the list older versions push to and read (and
  where labels go before the owner's first pop); the owner's pop takes it too. Both live a
  week past their last write or pop.
- ``mr:{exp}:pushed:<push id>:<decision-id prefix>``: the marker of one push of labels to one
  owner, set by the push's script: its retry after a lost reply finds it and writes nothing
  again, even if the owner took the labels in between. Deleted by the sender's next push once
  the reply arrived (at most a day later: its TTL).
- ``mr:{exp}:taken:<list>:<pop id>``: the receipt of one pop of an inbox or label hash.

A pop (:data:`HASH_POP_LUA`) is idempotent, as the statistics batches are: it moves what it
takes into a receipt keyed by a pop id in the same atomic script, and a pop whose reply never
arrived (Redis killed after running it: with ``appendfsync always`` it answers only once the
write is on disk, so the pop is replayed from the AOF on restart) is retried with the same id,
which returns the receipt instead of popping again. A receipt is deleted by the next pop of
the same hash once its reply arrived (at most a day later: its TTL). Before this, such a pop
took the values out of Redis and handed them to nobody, silently. Every write of the pop names
its field, so part of it replayed from an AOF a kill tore (batch.py) takes nothing twice. Only
the legacy lists are trimmed by a count of entries from their head: a replayed part trims the
same entries again, which is harmless unless the list held more than ``INBOX_BATCH`` entries
then, and only values sent before the owner's first pop (or by older versions) are there
(tests/store/test_redis_torn_aof.py). A key of another type where the owner's hash belongs
(another client wrote it) is deleted by the pop and counted as one refused entry.

Reads and writes here are control-plane or feedback calls, never on the request path.

Thread safety: redis-py clients are thread-safe; the pop ids in flight and the doubtful claims
are kept under a lock held for list and dict operations only (never across a network call),
and one pop id is never used by two calls at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import StoreError
from modelrouter.store.forksafe import LEAF, track
from modelrouter.store.redis.buffer import MAX_SQUARABLE
from modelrouter.store.redis.layout import INBOX, LABELS, LEGACY_INBOX, LEGACY_LABELS, Layout, text
from modelrouter.store.redis.scripts import CONTROL_LUA, HASH_POP_LUA, LABEL_PUSH_LUA, RELEASE_LUA

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CONTROL_LUA", "HASH_POP_LUA", "LABEL_PUSH_LUA", "RELEASE_LUA", "SharedControl"]

log = logging.getLogger("modelrouter.store.redis")


INBOX_BATCH = 10_000  # values popped per call
PUBLISH_RETRY_SECONDS = 3.0  # a routing change retried this long while Redis cannot answer
RECEIPT_TTL_SECONDS = 86_400  # a pop retried later than this pops afresh
LABEL_TTL_SECONDS = 7 * 24 * 3600  # labels not read for a week are dropped with their owner


class SharedControl:
    """The shared keys above for one experiment (see the module docstring)."""

    def __init__(self, client: Any, layout: Layout, guard: Callable[[str], Any],
                 unavailable: tuple[type[BaseException], ...], *,
                 inbox_ttl_ms: int = 86_400_000) -> None:
        self._client = client
        self.inbox_ttl_ms = max(1, int(inbox_ttl_ms))  # the attribution window
        self._unavailable = unavailable  # no answer at all (refused, lost, timed out)
        self._prefix = layout.prefix
        self._layout = layout
        self._guard = guard  # a context manager factory: redis errors -> StoreError
        self._cas = client.register_script(CONTROL_LUA)
        self._pop_script = client.register_script(HASH_POP_LUA)
        self._push_script = client.register_script(LABEL_PUSH_LUA)
        self._ids_lock = threading.Lock()
        track(self, self._ids_lock, LEAF)  # a fork waits for a list being swapped (forksafe.py)
        self._unanswered: dict[str, list[str]] = {}  # list key -> pop ids to retry
        self._answered: dict[str, list[str]] = {}  # list key -> receipts to delete
        # labels (owner, decision id, label) whose push may have run: the push id and field
        # of each, reused by their retry (the outbox queues them again); and the markers of
        # pushes whose replies arrived, deleted by the next push
        self._label_pending: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        self._label_markers: list[str] = []
        self._field_ns = 0  # the time part of the last label field chosen (push_labels)
        self._release = client.register_script(RELEASE_LUA)
        self._doubtful: list[tuple[str, str]] = []  # claims whose replies were lost: key, id
        # entries popped and skipped: malformed, or out of range (another client wrote them)
        self.refused = {"inbox": 0, "labels": 0}

    def publish(self, record: Mapping[str, Any], expected: int) -> bool:
        """Install ``record`` (its ``epoch`` must be after ``expected``) unless the stored
        epoch is no longer ``expected`` (another worker published); True if installed."""
        epoch = int(record["epoch"])
        if epoch <= expected:
            raise ValueError(f"a record of epoch {epoch} cannot follow epoch {expected}")
        info = json.dumps([record["mode"], list(record["propensities"]), record["at"]])
        args = [str(expected), str(epoch), json.dumps(record, separators=(",", ":")), info]
        keys = [self._prefix + "control", self._prefix + "epochs"]
        deadline = time.monotonic() + PUBLISH_RETRY_SECONDS
        pause = 0.02
        while True:  # the same change again while Redis cannot answer: the script is
            try:     # idempotent (CONTROL_LUA), so a retry of one that ran is not refused
                with self._guard("the routing change"):
                    return bool(int(self._cas(keys=keys, args=args, client=self._client)))
            except StoreError as exc:
                if not isinstance(exc.__cause__, self._unavailable):
                    raise  # Redis answered with an error: nothing changed
                if time.monotonic() + pause > deadline:
                    raise StoreError(
                        f"{exc}; the routing change (epoch {epoch}) was retried for "
                        f"{PUBLISH_RETRY_SECONDS:g} s and may or may not be in force: if Redis "
                        "ran it before the connection was lost, every worker (this one "
                        "included) adopts it at its next sync once Redis is back; read "
                        "the routing state then before changing it again") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def read(self) -> dict[str, Any] | None:
        """The record in force (None before the first change) with ``updates``, the
        training updates every worker has flushed so far, and ``epoch0``: ``[mode, weights]``
        of epoch 0 as the first worker recorded it (None before any flush)."""
        with self._guard("the routing state read"):
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(self._prefix + "control", "record")
            pipe.hget(self._prefix + "training", "updates")
            pipe.hget(self._prefix + "epochs", "0")
            raw, updates, first = pipe.execute()
        try:  # epoch 0 as the first worker recorded it: [mode, weights, started_at]
            start = None if first is None else json.loads(text(first))[:2]
        except (ValueError, TypeError):
            start = None
        if raw is None:
            return {"epoch": 0, "updates": float(text(updates)) if updates else 0.0,
                    "record": None, "epoch0": start}
        try:
            record = json.loads(text(raw))
            record["epoch"] = int(record["epoch"])
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"Redis key {self._prefix + 'control'!r} holds a malformed "
                             f"routing state: {exc}") from None
        return {"epoch": record["epoch"], "updates": float(text(updates)) if updates else 0.0,
                "record": record, "epoch0": start}

    def training(self, names: Sequence[str], n_variants: int) -> dict[str, np.ndarray]:
        """The global training counters ``name -> per-arm array`` (zeros before any flush);
        counts are clipped at 0 (float dust of costs) and sums kept as they are, as the
        tracker's own counters are."""
        import numpy as np

        with self._guard("the training counters read"):
            fields = self._client.hgetall(self._prefix + "training")
        values = {text(k): float(text(v)) for k, v in fields.items()}
        out = {n: np.array([values.get(f"{n}:{i}", 0.0) for i in range(n_variants)])
               for n in names}
        return {n: a if n == "sum" else np.maximum(a, 0.0) for n, a in out.items()}

    def claim(self, key: str, ttl: float) -> bool:
        """``SET NX PX``: True if this call claimed ``key`` first. If the reply is lost the
        claim may have run: StoreError (the caller refuses the feedback) and the claim is
        released later (:meth:`release_doubtful`)."""
        if self._doubtful:
            with contextlib.suppress(StoreError):  # kept; Redis away: the claim fails too
                self.release_doubtful()
        claim_id = os.urandom(8).hex()
        try:
            with self._guard("the feedback claim"):
                return bool(self._client.set(self._prefix + "seen:" + key, claim_id, nx=True,
                                             px=max(1, int(ttl * 1000))))
        except BaseException:
            with self._ids_lock:
                self._doubtful.append((key, claim_id))
            raise

    def release_doubtful(self) -> int:
        """Delete the claims whose replies were lost, each only if it still holds its id (a
        claim by another call stays); how many were there. StoreError if Redis cannot be
        reached (they stay doubtful, for the next try)."""
        with self._ids_lock:
            doubtful, self._doubtful = self._doubtful, []
        if not doubtful:
            return 0
        try:
            with self._guard("the release of unanswered feedback claims"):
                return int(self._release(keys=[self._prefix + "seen:" + k for k, _ in doubtful],
                                         args=[i for _, i in doubtful], client=self._client))
        except BaseException:
            with self._ids_lock:
                self._doubtful[:0] = doubtful
            raise

    def unclaim(self, key: str) -> None:
        """Drop a claim whose feedback could not be recorded."""
        with self._guard("the feedback claim release"):
            self._client.delete(self._prefix + "seen:" + key)

    def refuse(self, kind: str, n: int = 1) -> None:
        """Count ``n`` popped entries of ``kind`` (``inbox``, ``labels``) that were skipped."""
        with self._ids_lock:
            self.refused[kind] += n

    def _pop(self, key: str, doing: str, kind: str, lead: Sequence[str],
             args: Sequence[object]) -> list[Any]:
        """Take up to INBOX_BATCH entries at once with :data:`HASH_POP_LUA` (its keys ``lead``:
        the hash and its legacy list, then this pop's receipt and the receipts to delete, its
        arguments ``args``), in the order of their fields (a legacy list's first), each
        JSON-decoded (malformed ones are skipped and counted as refused ``kind``, as is a key
        of another type the script found and deleted where the hash belongs). Idempotent: a
        pop whose reply was lost is retried first, by its id, and returns what it took.
        ``key`` names the pop's receipts and its ids in flight."""
        with self._ids_lock:
            retry = self._unanswered.get(key)
            pop_id = retry.pop() if retry else os.urandom(8).hex()
            done = self._answered.pop(key, [])
        receipt = f"{self._prefix}taken:{key}:"
        try:
            with self._guard(doing):
                raw = self._pop_script(
                    keys=[*lead, receipt + pop_id, *(receipt + d for d in done)],
                    args=list(args), client=self._client)
        except BaseException:
            with self._ids_lock:  # ran or not: the retry with this id tells
                self._unanswered.setdefault(key, []).append(pop_id)
                self._answered.setdefault(key, []).extend(done)
            raise
        if raw:
            with self._ids_lock:
                self._answered.setdefault(key, []).append(pop_id)
        out = []
        for field, item in sorted(zip(map(text, raw[::2]), raw[1::2])):
            if field == "!type":
                log.warning("modelrouter: %s held a Redis %s, not a hash (another client wrote "
                            "it); it was deleted, counted as refused %s", lead[0], text(item),
                            kind)
                self.refuse(kind)
                continue
            try:
                out.append(json.loads(text(item)))
            except (ValueError, RecursionError):  # UnicodeDecodeError too
                self.refuse(kind)
        return out

    def take_inbox(self, owner: str) -> list[tuple[int, int, float, bool]]:
        """Pop the values forwarded to ``owner``: ``(decision number, metric index, value,
        full record)``. Entries no worker writes (malformed; a negative number, a metric
        index this experiment lacks, a value the store cannot buffer: NaN, beyond
        ``MAX_SQUARABLE``) are skipped and counted (``refused["inbox"]``), never applied."""
        out = []
        n_metrics = len(self._layout.metrics)
        lead = [self._prefix + INBOX + owner, self._prefix + LEGACY_INBOX + owner]
        for item in self._pop(INBOX + owner, "the inbox read", "inbox", lead,
                              [INBOX_BATCH, RECEIPT_TTL_SECONDS, self.inbox_ttl_ms]):
            if isinstance(item, list) and len(item) == 4:
                seq, metric, value, full = item
                if (type(seq) is int and seq >= 0 and type(metric) is int
                        and 0 <= metric < n_metrics and type(full) is bool
                        and type(value) in (int, float)
                        and -MAX_SQUARABLE <= value <= MAX_SQUARABLE):
                    out.append((seq, metric, float(value), full))
                    continue
            self.refuse("inbox")
        return out

    # -- shadows (routing/shadow_sharing.py) -----------------------------------------------
    def publish_shadows(self, owner: str, state: str) -> None:
        """Replace ``owner``'s shadow statistics."""
        with self._guard("the shadow statistics write"):
            self._client.hset(self._prefix + "shadows", owner, state)

    def read_shadows(self) -> dict[str, str]:
        """Every worker's shadow statistics, ``owner -> JSON``."""
        with self._guard("the shadow statistics read"):
            fields = self._client.hgetall(self._prefix + "shadows")
        return {text(k): text(v) for k, v in fields.items()}

    def push_labels(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Hand each ``(owner, decision id, label JSON)`` to its owner (:data:`LABEL_PUSH_LUA`,
        one call per owner in one round trip). Each label is written to a field chosen here,
        time-ordered, so the owner takes a sender's labels in order. Each call leaves a marker
        named by its push id and owner; a push that may have run without an answer keeps its
        id and fields, so its retry (the same items, queued again by the caller) finds the
        marker and writes nothing again, even if the owner has taken the labels since."""
        if not items:
            return
        with self._ids_lock:
            push_id = os.urandom(8).hex()
            groups: dict[tuple[str, str], list[str]] = {}
            assigned = []
            for item in items:
                kept = self._label_pending.get(item)
                if kept:
                    pid, field = kept.pop()
                    if not kept:
                        del self._label_pending[item]
                else:  # strictly increasing here, even if the wall clock stalls or steps back
                    self._field_ns = max(time.time_ns(), self._field_ns + 1)
                    pid, field = push_id, f"{self._field_ns:016x}{os.urandom(4).hex()}"
                assigned.append((item, pid, field))
                groups.setdefault((pid, item[0]), []).extend(
                    (field, json.dumps([item[1], item[2]])))
            done, self._label_markers = self._label_markers, []
        markers = [f"{self._prefix}pushed:{pid}:{owner}" for pid, owner in groups]
        try:
            with self._guard("the label hand-over"):
                pipe = self._client.pipeline(transaction=False)
                for marker, ((_pid, owner), pairs) in zip(markers, groups.items()):
                    self._push_script(keys=[self._prefix + LABELS + owner,
                                            self._prefix + LEGACY_LABELS + owner, marker],
                                      args=[LABEL_TTL_SECONDS * 1000, RECEIPT_TTL_SECONDS,
                                            *pairs], client=pipe)
                if done:
                    pipe.delete(*done)
                replies = pipe.execute()
        except BaseException:
            with self._ids_lock:  # ran or not: the retry's markers tell
                for item, pid, field in assigned:
                    self._label_pending.setdefault(item, []).append((pid, field))
                self._label_markers[:0] = done
            raise
        with self._ids_lock:
            self._label_markers.extend(markers)
        for owner, gone in zip((o for _p, o in groups), replies):
            if text(gone):
                log.warning("modelrouter: %s held a Redis %s, not a list (another client "
                            "wrote it); it was deleted, counted as refused labels",
                            self._prefix + LEGACY_LABELS + owner, text(gone))
                self.refuse("labels")

    def take_labels(self, owner: str) -> list[tuple[str, str]]:
        """Pop the labels handed to ``owner``, a sender's in the order it sent them
        (malformed entries are skipped and counted: ``refused["labels"]``)."""
        out = []
        lead = [self._prefix + LABELS + owner, self._prefix + LEGACY_LABELS + owner]
        for item in self._pop(LEGACY_LABELS + owner, "the label read", "labels", lead,
                              [INBOX_BATCH, RECEIPT_TTL_SECONDS, LABEL_TTL_SECONDS * 1000]):
            if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], str)):
                out.append((item[0], item[1]))
            else:
                self.refuse("labels")
        return out
