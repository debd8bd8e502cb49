"""A scripted run of the request path, printed as JSON: run once with the compiled twins and
once with ``MODELROUTER_NO_EXTENSIONS=1`` (tests/asgi/test_compiled_twins.py compares them).

Everything that could differ between runs is fixed: the salt, the clock and the timer (counters),
the rng of the bandit; decision ids are printed without their random per-process prefix. The
requests cover the cells the twins touch: new and returning units, hostile unit ids (refused
with 400, or read by the Python reader), a request without a unit id, 2 and 3 variants, a
weight change (a new allocation mid-run), a restore from a dump (cached hash buckets unknown),
a pending ring that wraps (evicted journal entries), 500s, an app that raises, signed tokens,
segments, a switch to the bandit and back, the bandit with 3 arms (holdout, clicks, refreshes,
a paused arm, a restore; segments with a pending ring that wraps), and request level. After
each request, feedback through ``ModelRouter.record`` (the compiled ``Experiment.record`` and
``MemoryStore.record_seq``, routing/feedback_c.pyx, store/record_c.pyx) on a recent or evicted
decision, with hostile values, ids and metric names now and then: its outcome is logged, its
sums are in the state.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import sys
from typing import Any

from modelrouter import ModelRouter, RouterConfig
from modelrouter.config.extensions import compiled

HOSTILE = [b"", b"   ", b" alice", b"bob ", b"caf\xc3\xa9", b"\xff\xfe", b"a\x1fb", b"x" * 300,
           b"tab\tin", b"\xed\xa0\x80", b"ok-user", b"a b", b"\xe2\x80\x8b"]


def counter(step: float) -> Any:
    it = itertools.count()
    return lambda: next(it) * step


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("boom")
    status = 500 if path == "/fail" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    if path == "/chunked":
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
    await send({"type": "http.response.body", "body": b"ok"})


def make(variants: dict[str, Any], **config: Any) -> ModelRouter:
    cfg = RouterConfig(salt="twins", metrics={"click": "binary"}, **config)
    return ModelRouter(app, variants, cfg, timer=counter(0.00125), clock=counter(0.5),
                       rng=random.Random(7))


async def call(router: ModelRouter, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers, "query_string": b"",
             "method": "GET", "state": {}}
    error = None
    try:
        await router(scope, receive, send)
    except RuntimeError as exc:
        error = str(exc)
    decision = scope["state"].get("modelrouter") if isinstance(scope["state"], dict) else None
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    return {"status": None if start is None else start["status"],
            "token": None if start is None else any(k == b"x-modelrouter-token"
                                                    for k, _ in start["headers"]),
            "body": b"".join(m.get("body", b"") for m in sent
                             if m["type"] == "http.response.body").decode("latin-1"),
            "error": error,
            "decision": None if decision is None else {
                "id": decision.decision_id.partition("-")[2], "variant": decision.variant,
                "unit": decision.unit_id, "p": decision.propensity, "epoch": decision.epoch,
                "mode": decision.mode, "at": decision.issued_at, "counted": decision.counted,
                "segment": list(decision.segment)}}


FEEDBACK = [1.0, 1, 0, 0.0, -0.0, True, 1.0, 1, 0.0, 2.5, math.nan, 1e300, "1", 2**60]


def feedback(router: ModelRouter, entry: dict[str, Any], ids: list[str],
             rnd: random.Random) -> dict[str, Any]:
    """``entry`` with the outcome of one feedback event (None: recorded; else the error, the
    per-process prefix blanked) on a random one of the last 100 decisions."""
    if entry["decision"] is not None:
        ids.append(entry["decision"]["id"])
    if not ids:
        return entry
    prefix = router.experiment._prefix
    number = ids[-1 - rnd.randrange(min(len(ids), 100))]
    if rnd.random() < 0.1:  # hex digits in capitals (accepted), malformed ones (refused)
        number = rnd.choice([number.upper(), number + "g", "0" + number, " " + number])
    decision = prefix + number
    metric = rnd.choice(["click", "click", "click", "nope"])
    try:
        router.record(decision, metric, rnd.choice(FEEDBACK))
        got = None
    except Exception as exc:  # noqa: BLE001 - type and message are compared
        got = f"{type(exc).__name__}: {str(exc).replace(prefix, '<prefix>')}"
    return {**entry, "feedback": got}


def state(router: ModelRouter) -> dict[str, Any]:
    store = router.experiment.store
    header, arrays = store.dump()
    header = {k: v for k, v in header.items() if k not in ("written_at", "pid")}
    return {"header": json.loads(json.dumps(header, default=str)),
            "arrays": {k: v.tolist() for k, v in sorted(arrays.items())},
            "stats": store.stats()}


async def run() -> dict[str, Any]:
    out: dict[str, Any] = {"compiled": compiled()}
    rnd = random.Random(11)
    # 3 variants, user level, a small ring that wraps, tokens, a segment header
    r = make({"a": 0, "b": 1, "c": 2}, max_pending=64, secret="twin-secret-0123456789",
             segments={"country": "x-country"})
    log, ids = [], list[str]()
    for i in range(400):
        path = rnd.choice(["/p", "/p", "/p", "/fail", "/chunked", "/boom"])
        user = (f"user-{rnd.randrange(150)}".encode() if rnd.random() < 0.85
                else rnd.choice(HOSTILE))
        headers = [(b"host", b"t"), (b"x-country", rnd.choice([b"de", b"fr", b"\xff"]))]
        if rnd.random() < 0.95:
            headers.append((b"x-user-id", user))
        log.append(feedback(r, await call(r, path, headers), ids, rnd))
        if i == 150:
            r.experiment.configure(weights={"a": 0.2, "b": 0.3, "c": 0.5})
        if i == 250:  # restore: every cached hash bucket unknown
            header, arrays = r.experiment.store.dump()
            r.experiment.store.load(header, arrays)
    out["three_variants"] = {"log": log, "state": state(r)}

    # 2 variants with the bandit: A/B -> bandit -> A/B
    b = make({"a": 0, "b": 1}, reward="click")
    log, ids = [], []
    for i in range(300):
        log.append(feedback(b, await call(b, "/p", [(b"x-user-id",
                                                    f"u{rnd.randrange(80)}".encode())]),
                            ids, rnd))
        if i == 100:
            b.experiment.configure(mode="bandit")
        if i == 200:
            b.experiment.configure(mode="ab")
    out["switched"] = {"log": log, "state": state(b)}

    # 3 arms in bandit mode: holdout, clicks, refreshes by schedule (each one run before the
    # next request), a paused and resumed arm, a restore, a switch to A/B and back
    t = make({"a": 0, "b": 1, "c": 2}, reward="click", mode="bandit", holdout=0.2,
             refresh_every=5, refresh_seconds=1e9)
    log = []
    for i in range(300):
        entry = await call(t, "/p", [(b"x-user-id", f"u{rnd.randrange(60)}".encode())])
        log.append(entry)
        d = entry["decision"]
        if d is not None and d["counted"] and rnd.random() < 0.5:
            t.experiment.record(t.experiment._prefix + d["id"], "click",
                                rnd.random() < (0.5 if d["variant"] == "b" else 0.2))
        t.experiment.bandit.wait_idle()
        if i == 100:
            t.experiment.pause_arm("c")
        if i == 150:
            t.experiment.resume_arm("c")
        if i == 200:  # restore: the tracker starts again from the saved counters
            header, arrays = t.experiment.store.dump()
            t.experiment.store.load(header, arrays)
        if i == 240:
            t.experiment.configure(mode="ab")
        if i == 260:
            t.experiment.configure(mode="bandit")
    out["bandit_three_arms"] = {"log": log, "state": state(t)}

    # the bandit with segments and a pending ring that wraps (the store's and the tracker's):
    # the compiled route's C calls of expose_decision and open on reused slots, segment groups
    g = make({"a": 0, "b": 1, "c": 2}, reward="click", mode="bandit", holdout=0.1,
             refresh_every=7, refresh_seconds=1e9, max_pending=32,
             segments={"country": "x-country"})
    log = []
    for _ in range(200):
        entry = await call(g, "/p", [(b"x-user-id", f"s{rnd.randrange(50)}".encode()),
                                     (b"x-country", rnd.choice([b"de", b"fr", b"it"]))])
        log.append(entry)
        d = entry["decision"]
        if d is not None and d["counted"] and rnd.random() < 0.6:
            g.experiment.record(g.experiment._prefix + d["id"], "click", rnd.random() < 0.3)
        g.experiment.bandit.wait_idle()
    out["bandit_segments_ring"] = {"log": log, "state": state(g)}

    # request level
    q = make({"a": 0, "b": 1}, level="request")
    ids = []
    out["request_level"] = {"log": [feedback(q, await call(q, "/p", [(b"x-user-id", b"u1")]),
                                             ids, rnd) for _ in range(50)], "state": state(q)}
    return out


if __name__ == "__main__":
    json.dump(asyncio.run(run()), sys.stdout, sort_keys=True)
