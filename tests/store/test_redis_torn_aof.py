"""Redis killed in the middle of writing a batch to its AOF: the torn transaction is never
counted twice.

A batch's script writes many keys; Redis logs its effects to the AOF as one ``MULTI`` ...
``EXEC`` block. A SIGKILL (or a power cut) while that block is being written can leave only
part of it on disk: the kernel may stop a multi-page ``write`` short when a fatal signal is
pending. On restart, Redis (7.0.15, Debian's; fixed in Valkey by valkey-io/valkey#4342, August
2026) cuts the file after the last *whole command*, not before the ``MULTI``: the file ends in
an open transaction. That load applies none of it, so the worker, whose reply was lost,
sends the batch again and Redis applies it. But the next load of the file queues the orphan
commands into the transaction that follows and runs them with it: the part of the batch that
reached the disk is applied a second time. This is what the slow ``uvicorn --workers 3``
test with 30 Redis kills showed twice in 21 runs (12,017 and 12,008 requests for 12,000).

The batch script therefore writes totals, not increments (``HSET`` of the value it computed,
so replaying a prefix of it and then the whole retry leaves the retry's values), and sets its
batch marker to ``started`` first and to ``1`` last. A retry that finds ``started`` (Redis
was killed again before the retry ran, and the next load applied the orphan part) cannot know
which part is in: it is refused whole and counted with reason ``torn``, never added again.

The tear is made by hand, deterministically: Redis runs the batch and is killed before its
reply leaves (:class:`~tests.store.test_redis_reply_lost.CuttingProxy`), then the AOF is cut
inside that batch's block, in the middle of one of its commands (a short write).

Cells: Redis store (AOF, fsync always); one worker and a second one writing between the
restarts; A/B and bandit (3 arms; user level: first exposures, unit sums, training and
decision sums) and A/B at request level (group sums); restored after a crash, then after a
clean restart; the tear at the first, a middle and the last command of the block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelrouter import Experiment, StoreError
from modelrouter.analysis import Analysis
from modelrouter.routing.tokens import Signer
from modelrouter.store.protocol import loss_notes
from modelrouter.store.rows import SUMS_PER_METRIC
from modelrouter.web.feedback import TokenFeedback
from tests.store.conftest import RedisServer
from tests.store.test_redis_reply_lost import SECRET, CuttingProxy, P, worker
from tests.store.test_redis_shared import settle

redis = pytest.importorskip("redis")

BANDIT = {"reward": "click", "mode": "bandit", "refresh_every": 10**9, "refresh_seconds": None}
MODES: dict[str, dict[str, Any]] = {"ab-user": {}, "bandit-user": BANDIT,
                                    "ab-request": {"level": "request"}}


def incr_file(server: RedisServer) -> Path:
    """The AOF file Redis appends to (the manifest's ``type i`` entry)."""
    folder = server.workdir / "appendonlydir"
    for line in (folder / "appendonly.aof.manifest").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("type") + 1] == "i":
            return folder / fields[fields.index("file") + 1]
    raise AssertionError("no incremental AOF file in the manifest")


def commands(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(start, end, name)`` of every command of an AOF (RESP arrays of bulk strings)."""
    out, i = [], 0
    while i < len(data):
        assert data[i:i + 1] == b"*", f"not a RESP array at byte {i}"
        eol = data.index(b"\r\n", i)
        start, argc, i = i, int(data[i + 1:eol]), eol + 2
        name = b""
        for k in range(argc):
            eol = data.index(b"\r\n", i)
            size = int(data[i + 1:eol])
            if k == 0:
                name = data[eol + 2:eol + 2 + size].upper()
            i = eol + 2 + size + 2
        out.append((start, i, name))
    return out


def tear_last_block(server: RedisServer, at: str | tuple[bytes, ...]) -> int:
    """Cut the AOF in the middle of one command of its last MULTI block (a batch's or a pop's
    writes; ``at``: the ``first``, a ``middle`` or the ``last`` command before EXEC, or the
    command after the first one that contains every byte string of a tuple, the EXEC if that
    is the next), as a short write leaves it; returns how many whole commands of the block
    stay after the MULTI."""
    path = incr_file(server)
    data = path.read_bytes()
    cmds = commands(data)
    multi = max(i for i, c in enumerate(cmds) if c[2] == b"MULTI")
    assert cmds[-1][2] == b"EXEC" and multi < len(cmds) - 2, "the last write is not a MULTI block"
    block = cmds[multi + 1:]  # its commands, then the EXEC
    if isinstance(at, tuple):
        k = 1 + next(i for i, (start, end, _name) in enumerate(block[:-1])
                     if all(n in data[start:end] for n in at))
    else:
        k = {"first": 0, "middle": (len(block) - 1) // 2, "last": len(block) - 2}[at]
    start, end, _name = block[k]
    path.write_bytes(data[:start + (end - start) // 2])
    return k


def counts(server: RedisServer) -> dict[str, float]:
    r = server.client(decode_responses=True)
    groups = r.hgetall(P + "groups")
    training = r.hgetall(P + "training")
    return {"requests": sum(int(v) for v in r.hgetall(P + "requests").values()),
            "exposures": sum(int(v) for v in r.hgetall(P + "exposures").values()),
            "clicks": sum(float(v) for v in r.hgetall(P + "y:click").values()),
            "group_n": sum(float(v) for k, v in groups.items() if k.endswith("#0")),
            "successes": sum(float(v) for k, v in training.items()
                             if k.startswith("successes:")),
            "latency": sum(int(v) for k, v in r.hgetall(P + "latency").items()
                           if not k.endswith("#sum"))}


def traffic(exp: Experiment, n: int, tag: str) -> int:
    """n decisions (user or request level), every third clicked; returns the clicks."""
    unit_level = exp.config.level == "user"
    clicks = 0
    for i in range(n):
        d, seq = exp.route(f"{tag}{i}" if unit_level else None)
        exp.store.record_auto(seq, 5.0 + i, 0.0)  # as the middleware does after the response
        if i % 3 == 0:
            exp.record(d, "click", 1)
            clicks += 1
    return clicks


def expected(level: str, mode: str, n: int, clicks: int) -> dict[str, float]:
    user = level == "user"
    return {"requests": n, "exposures": n if user else 0, "clicks": clicks if user else 0,
            "group_n": 0 if user else n, "successes": clicks if mode == "bandit" else 0,
            "latency": n}


@pytest.mark.parametrize("at", ["first", "middle", "last"])
@pytest.mark.parametrize("mode", list(MODES))
def test_a_batch_torn_in_the_aof_and_sent_again_is_counted_once_after_every_restart(
        persistent_redis_server: RedisServer, cut: CuttingProxy, mode: str, at: str) -> None:
    """Redis ran batch 2, was killed before its reply, and its AOF block is torn. The
    restart applies none of it; the worker sends it again; a later clean restart replays the
    orphan part and the retry: every count is exact (before the fix the orphan part was
    counted twice: e.g. 35 requests became 50)."""
    server = persistent_redis_server
    exp = worker(cut.url, **MODES[mode])
    clicks = traffic(exp, 20, "a")
    exp.flush()  # batch 1
    clicks += traffic(exp, 15, "b")
    cut.arm(b"batch:")
    with pytest.raises(StoreError, match="unavailable"):
        exp.flush()  # Redis ran batch 2 and died before its reply
    assert server.proc is None
    tear_last_block(server, at)
    server.start()  # the torn block is not applied
    exp.flush()  # batch 2 again, whole
    want = expected(exp.config.level, exp.config.mode, 35, clicks)
    assert counts(server) == want
    server.stop()  # a clean restart (SIGTERM): the next load of the AOF
    server.start()
    assert counts(server) == want
    snap = Analysis.from_experiment(exp).snapshot
    assert int(snap.requests.sum()) == 35 and snap.losses.get("refused_batches", 0) == 0
    exp.close()


@pytest.mark.parametrize("mode", ["ab-user", "bandit-user"])
def test_a_torn_batch_replayed_before_its_retry_is_refused_and_counted_never_added_twice(
        persistent_redis_server: RedisServer, cut: CuttingProxy, mode: str) -> None:
    """As above, but Redis is restarted again before the worker's retry, after another worker
    wrote (its transaction follows the orphan part in the file, so that load applies both).
    The retry cannot tell which part of it is in: refused whole, counted as ``torn`` with
    what it held; no count is above what was routed."""
    server = persistent_redis_server
    exp = worker(cut.url, **MODES[mode])
    other = worker(server.url, **MODES[mode])
    clicks = traffic(exp, 20, "a")
    exp.flush()
    clicks += traffic(exp, 15, "b")
    cut.arm(b"batch:")
    with pytest.raises(StoreError, match="unavailable"):
        exp.flush()
    tear_last_block(server, "last")  # every op of batch 2 in the orphan part, not its end
    server.start()
    clicks += traffic(other, 10, "c")
    other.flush()  # the transaction after the orphan part
    server.stop()
    server.start()  # this load applies the orphan part of batch 2 with it
    exp.flush()  # the retry finds batch 2 started and not finished
    got = counts(server)
    assert got["requests"] <= 45 and got["exposures"] <= 45 and got["clicks"] <= clicks
    r = server.client(decode_responses=True)
    assert r.hgetall(P + "refused") == {"torn": "1"}
    assert r.hget(P + "counters", "refused_requests") == "15"
    assert exp.store.stats()["refused_batches"] == 1
    snap = Analysis.from_experiment(other).snapshot
    assert snap.losses["refused:torn"] == 1
    notes = loss_notes(snap.losses)  # what every analysis of this snapshot says
    assert any("replayed part of it before the worker's retry" in n and "15 requests" in n
               and "part may be in the totals as well" in n for n in notes), notes
    exp.flush()  # nothing counted again
    assert counts(server) == got
    exp.close()
    other.close()


def forwarded_clicks(owner: Experiment, sender: Experiment, n: int) -> int:
    """n decisions of ``owner``; every other one clicked through ``sender`` (a token posted to
    another worker): each click is forwarded to ``owner``'s inbox. Returns the clicks."""
    signer = Signer(SECRET, "cut")
    level = owner.config.level
    decisions = [owner.assign(f"f{i}" if level == "user" else None) for i in range(n)]
    owner.flush()
    feedback = TokenFeedback(sender, SECRET)
    for d in decisions[::2]:
        assert feedback.submit(signer.sign_decision(d).decode(), "click", 1)
    return len(decisions[::2])


def owner_counts(server: RedisServer, owner: Experiment) -> tuple[float, float, int]:
    """(successes in the training counters, clicks in the request-level groups, values the
    owner took from its inbox)."""
    r = server.client(decode_responses=True)
    training = r.hgetall(P + "training")
    groups = r.hgetall(P + "groups")  # request level: sum k = 2 + 5m counts metric m's values
    click = f"#{2 + SUMS_PER_METRIC * owner.store.metric_index['click']}"
    return (sum(float(v) for k, v in training.items() if k.startswith("successes:")),
            sum(float(v) for k, v in groups.items() if k.endswith(click)),
            int(owner.store.stats()["forwarded_in"]))  # type: ignore[call-overload]


@pytest.mark.parametrize("mode", ["bandit-user", "ab-request"])
def test_values_forwarded_in_a_torn_batch_reach_their_owner_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy, mode: str) -> None:
    """Clicks for A's decisions posted to B are forwarded to A's inbox in B's batch; that
    batch is torn in the AOF (every forward in the orphan part), B sends it again, Redis
    restarts cleanly, A takes its inbox: each click once (pushed to a list, the replayed
    orphan part put a second copy of each click in A's inbox)."""
    server = persistent_redis_server
    a = worker(server.url, **MODES[mode])
    b = worker(cut.url, **MODES[mode])
    a.store.poll()  # type: ignore[attr-defined]  # registers A's inbox hash
    clicks = forwarded_clicks(a, b, 12)
    cut.arm(b"batch:")
    with pytest.raises(StoreError, match="unavailable"):
        b.flush()
    tear_last_block(server, "last")
    server.start()
    b.flush()  # the retry, whole: the forwards are in A's inbox
    server.stop()
    server.start()  # replays the orphan part and the retry
    settle([a, b])
    successes, group_clicks, taken = owner_counts(server, a)
    assert taken == clicks
    if mode == "bandit-user":
        assert successes == clicks
    else:  # request level: the whole value is recorded by the owner
        assert group_clicks == clicks
    a.close()
    b.close()


def test_a_pop_of_the_inbox_torn_in_the_aof_takes_each_value_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """A's pop of its inbox ran, Redis died before the reply, the pop's block is torn in the
    AOF. The restart applies none of it; A's retry (same pop id) takes the values; a clean
    restart replays the orphan part and the retry; more clicks arrive: every click once."""
    server = persistent_redis_server
    a = worker(cut.url, **BANDIT)
    b = worker(server.url, **BANDIT)
    a.store.poll()  # type: ignore[attr-defined]
    clicks = forwarded_clicks(a, b, 20)
    b.flush()
    cut.arm(b"fwd:")
    a.store.poll()  # type: ignore[attr-defined]  # the pop is cut (logged, not raised)
    assert server.proc is None
    tear_last_block(server, "middle")
    server.start()
    settle([a, b])  # the retry
    server.stop()
    server.start()
    clicks += forwarded_clicks(a, b, 10)
    settle([a, b])
    successes, _groups, taken = owner_counts(server, a)
    assert taken == clicks and successes == clicks
    a.close()
    b.close()


def test_an_owner_takes_what_older_senders_push_to_its_list_and_newer_ones_to_its_hash(
        redis_server: RedisServer) -> None:
    """Before an owner's first poll its inbox hash does not exist, so senders push to the
    list older versions read; an older version pushes there too. The owner takes both, once;
    after its poll, forwards go to the hash."""
    a = worker(redis_server.url, **BANDIT)
    b = worker(redis_server.url, **BANDIT)
    r = redis_server.client(decode_responses=True)
    owner = a._prefix
    clicks = forwarded_clicks(a, b, 8)
    b.flush()
    assert r.type(P + "inbox:" + owner) == "list" and r.exists(P + "fwd:" + owner) == 0
    settle([a, b])
    assert r.type(P + "fwd:" + owner) == "hash" and r.exists(P + "inbox:" + owner) == 0
    clicks += forwarded_clicks(a, b, 8)
    b.flush()
    assert r.hlen(P + "fwd:" + owner) == 1 + 4  # the registration and 4 clicks
    settle([a, b])
    successes, _groups, taken = owner_counts(redis_server, a)
    assert taken == clicks and successes == clicks
    a.close()
    b.close()
