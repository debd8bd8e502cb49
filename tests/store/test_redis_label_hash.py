"""Labels handed to another worker (shadows across workers) survive lost replies and torn AOF
writes: each label reaches its owner once, in the order its sender sent it.

A label for a decision another worker made is pushed to that worker (its owner) and popped
by it after its flushes. Labels were a list: a push whose reply was lost was pushed again by
the caller's retry (the owner then counted the second copy as a ``duplicate`` label the user
never sent), and a pop trimmed a count of entries from the list's head, so a pop torn in the
AOF (batch.py) and replayed after its retry trimmed that many labels a second time: labels
lost, uncounted, once more than one pop's worth waited. Labels now go to a hash the owner
registers at its first pop, each to a field its sender chose; each push leaves a marker its
retry finds (then it writes nothing again), and the pop deletes the fields it took by name, so
a replay writes or deletes the same fields again. Before the owner's first pop (and for older
versions) the list is still used and read.

Cells: Redis store (AOF, fsync always; a proxy that cuts a reply; the AOF cut by hand); two
and three workers (in-process routers and stores on one Redis); A/B, 2 and 3 variants, user
level, shadows; fresh, restored after a crash with a torn AOF, after a clean restart; valid
labels, repeated labels and hostile entries (malformed JSON, a key of another type).
"""

from __future__ import annotations

import asyncio

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.exceptions import StoreError
from modelrouter.store.redis import control
from tests.store.conftest import RedisServer
from tests.store.test_redis_reply_lost import CuttingProxy, P, lost_reply, worker
from tests.store.test_redis_shadows import Threshold, serve, unrouted_app
from tests.store.test_redis_shadows import _settle as settle
from tests.store.test_redis_torn_aof import tear_last_block

redis = pytest.importorskip("redis")


def labels(owner: str, n: int, start: int = 0) -> list[tuple[str, str, str]]:
    """n (owner, decision id, label JSON) items for ``owner``'s decisions."""
    return [(owner, f"{owner}{i:x}", str(i)) for i in range(start, start + n)]


def taken(items: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(d, y) for _o, d, y in items]


def shadowed(url: str, variants: int) -> ModelRouter:
    config = RouterConfig(experiment="cut", salt="s", store=url, flush_seconds=3600.0)
    models = {f"v{i}": Threshold(0.5 + i / 10) for i in range(variants)}
    return ModelRouter(unrouted_app, models, config, shadows={"cand": Threshold(0.55)})


@pytest.mark.parametrize("taken_between", [False, True], ids=["retry-first", "owner-first"])
@pytest.mark.parametrize("ran", [True, False], ids=["push-ran", "push-never-ran"])
@pytest.mark.parametrize("variants", [2, 3])
def test_a_label_push_whose_reply_is_lost_attaches_each_label_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy, ran: bool,
        variants: int, taken_between: bool) -> None:
    """B made 12 shadowed decisions; their labels are posted to A, whose push to B is cut
    (Redis ran it and died, or died first). A keeps them queued and pushes again, before or
    after B has taken what the first push wrote: B attaches 12 labels and counts no duplicate
    (with the list, a push that ran was pushed twice)."""
    server = persistent_redis_server
    a, b = shadowed(cut.url, variants), shadowed(server.url, variants)
    try:
        ids = [serve(b, f"u{i}", i / 12) for i in range(12)]
        settle([b])  # B's first pop registers its label hash
        for i, did in enumerate(ids):
            assert a.record_label(did, i % 2) is True  # forwarded to B
        sharing = a._shadow_sharing
        assert sharing is not None
        owner = ids[0][:ids[0].index("-") + 1]
        lost_reply(server, cut, b"labels:" + owner.encode(), lambda: sharing.sync(force=True),
                   ran)
        assert len(sharing._outbox) == 12  # queued again
        if taken_between:
            settle([b])
        settle([a])
        settle([b])
        got = b.shadows.log.snapshot().labels  # type: ignore[union-attr]
        assert got["attached"] == 12 and got.get("duplicate", 0) == 0
        assert b.analysis().shadow("cand").n_pairs == 12
    finally:
        for r in (a, b):
            asyncio.run(r.lifecycle.stop())


def test_a_label_sent_twice_is_two_labels_across_a_lost_reply(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """The same (owner, decision, label) twice in one push is two labels, each in a field of
    its own (the retry finds the push's marker), so the owner counts the second as the
    duplicate the user sent."""
    server = persistent_redis_server
    a, b = worker(server.url), worker(cut.url)
    owner = a._prefix
    assert a.store.take_labels(owner) == []  # registers the hash
    items = labels(owner, 3) + labels(owner, 1)
    lost_reply(server, cut, b"labels:" + owner.encode(), lambda: b.store.push_labels(items))
    b.store.push_labels(items)  # the caller's retry
    assert sorted(a.store.take_labels(owner)) == sorted(taken(items))
    assert a.store.take_labels(owner) == []
    for e in (a, b):
        e.close()


@pytest.mark.parametrize("at", ["first", "middle", "last"])
def test_a_pop_of_labels_torn_in_the_aof_takes_each_label_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy,
        monkeypatch: pytest.MonkeyPatch, at: str) -> None:
    """10 labels wait in A's hash, a pop takes 4 (the batch made small). A's pop ran, Redis
    died before the reply, and the pop's block is torn in the AOF. The restart applies none of
    it; A's retry (same pop id) takes the 4; a clean restart replays the orphan part with the
    retry; the next pops take the other 6 and 3 more: every label once, in order. (The list's
    pop trimmed a count: the replayed trim dropped 4 labels.)"""
    monkeypatch.setattr(control, "INBOX_BATCH", 4)
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    owner = a._prefix
    assert a.store.take_labels(owner) == []
    items = labels(owner, 10)
    b.store.push_labels(items)
    cut.arm(b"labels:" + owner.encode())  # (the pop names the list too)
    with pytest.raises(StoreError):
        a.store.take_labels(owner)
    assert server.proc is None
    tear_last_block(server, at)
    server.start()
    got = a.store.take_labels(owner)  # the retry: the receipt
    server.stop()
    server.start()  # the orphan part of the torn pop is replayed here
    more = labels(owner, 3, 10)
    b.store.push_labels(more)
    while batch := a.store.take_labels(owner):
        got += batch
    assert got == taken(items + more)
    assert a.store.stats()["labels_refused"] == 0
    for e in (a, b):
        e.close()


def test_labels_sent_before_the_owners_first_pop_go_to_its_list_then_to_its_hash(
        redis_server: RedisServer) -> None:
    """Before A's first pop its hash does not exist: B's labels (and an older version's) go
    to the list. A takes the list's first, then the hash's, each sender's in its order."""
    a, b, c = worker(redis_server.url), worker(redis_server.url), worker(redis_server.url)
    r = redis_server.client(decode_responses=True)
    owner = a._prefix
    early = labels(owner, 5)
    b.store.push_labels(early)
    assert r.type(P + "labels:" + owner) == "list" and r.exists(P + "lbl:" + owner) == 0
    assert a.store.take_labels(owner) == taken(early)
    assert r.type(P + "lbl:" + owner) == "hash" and r.exists(P + "labels:" + owner) == 0
    from_b, from_c = labels(owner, 300, 5), labels(owner, 300, 305)
    for i in range(0, 300, 20):  # interleaved pushes of two senders
        b.store.push_labels(from_b[i:i + 20])
        c.store.push_labels(from_c[i:i + 20])
    assert r.hlen(P + "lbl:" + owner) == 1 + 600  # the registration and 600 labels
    # past 512 fields, the hash's scan order is no longer the order its fields were written
    assert r.object("encoding", P + "lbl:" + owner) == "hashtable"
    got = a.store.take_labels(owner)
    assert sorted(got) == sorted(taken(from_b + from_c))
    for sent in (from_b, from_c):
        theirs = set(taken(sent))
        assert [g for g in got if g in theirs] == taken(sent)
    assert a.store.take_labels(owner) == []
    for e in (a, b, c):
        e.close()


def test_hostile_entries_in_the_label_hash_are_counted_and_the_real_label_handed_over(
        redis_server: RedisServer) -> None:
    a, b = worker(redis_server.url), worker(redis_server.url)
    owner = a._prefix
    assert a.store.take_labels(owner) == []
    r = redis_server.client()
    hostile = ["[1, 2]", '"x"', "not json", b"\xff", "[" * 100_000, "[1, null]"]
    r.hset(P + "lbl:" + owner, mapping={f"h{i}": v for i, v in enumerate(hostile)})
    r.hset(P + "lbl:" + owner, "!type", "list")  # a field that mimics the script's report
    b.store.push_labels([(owner, owner + "0", "1")])
    assert a.store.take_labels(owner) == [(owner + "0", "1")]
    assert a.store.stats()["labels_refused"] == len(hostile) + 1
    for e in (a, b):
        e.close()


@pytest.mark.parametrize("kind", ["labels", "inbox"])
def test_a_key_of_another_type_where_the_hash_belongs_is_deleted_and_counted_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy, kind: str) -> None:
    """Another client wrote a string where A's label (or inbox) hash belongs. A's pop deletes
    it and counts one refused entry, also when that pop's reply was lost and its retry
    returned the receipt; the labels pushed afterwards reach A."""
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    owner = a._prefix
    key = ("lbl:" if kind == "labels" else "fwd:") + owner
    server.client().set(P + key, "hostile")
    if kind == "labels":
        lost_reply(server, cut, key.encode(), lambda: a.store.take_labels(owner))
        assert a.store.take_labels(owner) == []  # the retry: the receipt's report
    else:
        lost_reply(server, cut, key.encode(), a.store.poll,  # type: ignore[attr-defined]
                   raises=False)
        a.store.poll()  # type: ignore[attr-defined]
    stats = a.store.stats()
    assert stats["labels_refused" if kind == "labels" else "forwarded_refused"] == 1
    r = server.client(decode_responses=True)
    assert r.type(P + key) == "hash"
    b.store.push_labels(labels(owner, 2))
    assert a.store.take_labels(owner) == taken(labels(owner, 2))
    assert a.store.stats()["labels_refused"] == (1 if kind == "labels" else 0)
    for e in (a, b):
        e.close()


def test_a_key_of_another_type_at_the_list_name_does_not_hold_up_the_hand_over(
        redis_server: RedisServer) -> None:
    """Before A's first pop, another client wrote a string where A's legacy label list
    belongs: B's push deletes it, counts one refused entry and pushes; its labels to another
    owner in the same round trip go through too."""
    a, b, c = worker(redis_server.url), worker(redis_server.url), worker(redis_server.url)
    r = redis_server.client()
    r.set(P + "labels:" + a._prefix, "hostile")
    assert c.store.take_labels(c._prefix) == []  # C has registered its hash, A has not
    items = labels(a._prefix, 3) + labels(c._prefix, 2)
    b.store.push_labels(items)
    assert b.store.stats()["labels_refused"] == 1
    assert a.store.take_labels(a._prefix) == taken(items[:3])
    assert c.store.take_labels(c._prefix) == taken(items[3:])
    b.store.push_labels(items)  # nothing left to delete
    assert b.store.stats()["labels_refused"] == 1
    for e in (a, b, c):
        e.close()


@pytest.mark.parametrize("registered", [True, False], ids=["hash", "list"])
def test_a_push_retried_after_the_owner_took_its_labels_adds_nothing(
        persistent_redis_server: RedisServer, cut: CuttingProxy, registered: bool) -> None:
    """B's push ran and its reply was lost; A takes the labels; B's retry (the same items)
    finds the push's marker and writes nothing: A has each label once and no copy to count
    as a duplicate. Before A's first pop the labels go to its list: the same."""
    server = persistent_redis_server
    a, b = worker(server.url), worker(cut.url)
    owner = a._prefix
    if registered:
        assert a.store.take_labels(owner) == []
    items = labels(owner, 5)
    lost_reply(server, cut, b"labels:" + owner.encode(), lambda: b.store.push_labels(items))
    assert a.store.take_labels(owner) == taken(items)
    b.store.push_labels(items + labels(owner, 2, 5))  # the retry, with two new labels
    assert a.store.take_labels(owner) == taken(labels(owner, 2, 5))
    assert a.store.take_labels(owner) == []
    for e in (a, b):
        e.close()


def test_a_senders_markers_of_answered_pushes_are_deleted_by_its_next_push(
        redis_server: RedisServer) -> None:
    a, b = worker(redis_server.url), worker(redis_server.url)
    owner, other = a._prefix, "0123abcd-"
    r = redis_server.client(decode_responses=True)
    for k in range(5):
        b.store.push_labels(labels(owner, 3, 3 * k) + labels(other, 1, k))
        assert len(r.keys(P + "pushed:*")) == 2  # this push's, one per owner
    assert a.store.take_labels(owner) == taken(labels(owner, 15))
    for e in (a, b):
        e.close()
