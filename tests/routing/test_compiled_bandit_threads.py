"""The compiled bandit route and decision tracker (routing/bandit_c.pyx, store/decisions_c.pyx)
and their Python methods under 8 threads with a concurrent control thread.

Cells: memory store; one worker, 8 request threads; bandit mode switched to A/B and back
mid-run; 3 arms, one paused and resumed; holdout; forced refreshes and refreshes by schedule;
user level. Exact totals: every decision opened once, every training decision counted once in
the training counters, every click moved its decision once. Skipped where the twins were not
built (the Python methods' run still runs).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.routing.test_compiled_bandit import BUILT, make, use_python


@pytest.mark.parametrize("twin", ["compiled", "python"])
def test_eight_threads_with_concurrent_refresh_pause_and_switch_keep_exact_totals(
        twin: str) -> None:
    """8 threads route (a click on every third request) while a ninth pauses, resumes,
    refreshes and switches modes (4 rounds, each state held 2 ms): every decision counted once,
    in its group and (a training decision) in the training counters; every click moved them
    exactly once."""
    if twin == "compiled" and not BUILT:
        pytest.skip("compiled twins not built on this machine")
    exp = make(variants=3, holdout=0.2, refresh_every=5)
    assert exp.bandit is not None
    if twin == "python":
        use_python(exp)
    done = threading.Event()
    results: list[list[tuple[str, bool]]] = [[] for _ in range(8)]

    def worker(k: int) -> None:
        i = 0
        while not done.is_set() or i < 300:
            decision, seq = exp.route_checked(f"t{k}-{i % 50}")
            click = i % 3 == 0
            if click:
                exp.record(decision, "click", 1)
            exp.store.record_auto(seq, 1.0, 0.0)
            results[k].append((decision.mode, click))
            i += 1

    def control() -> None:
        steps = [lambda: exp.pause_arm("c"), lambda: exp.state.refresh_bandit(force=True),
                 lambda: exp.resume_arm("c"), lambda: exp.configure(mode="ab"),
                 lambda: exp.configure(mode="bandit")]
        for step in steps * 4:
            step()
            time.sleep(0.002)
        done.set()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    ctl = threading.Thread(target=control)
    ctl.start()
    ctl.join()
    for t in threads:
        t.join()
    exp.configure(mode="bandit")
    exp.bandit.wait_idle()
    tracker = exp.bandit.tracker
    exp.store.take_training()  # folds the journal under the lock
    entries = [e for r in results for e in r]
    bandit = [e for e in entries if e[0] == "bandit"]
    assert len(entries) >= 8 * 300 and 0 < len(bandit) < len(entries)
    groups = list(zip(tracker.groups.keys, tracker.groups.sums))
    assert sum(s[0] for _, s in groups) == len(bandit)  # each bandit decision opened once
    trained = sum(s[0] for key, s in groups if not key[3] & 1)  # holdout: tag bit 0
    successes, failures = (sum(c) for c in tracker.counters)
    assert successes + failures == trained  # every training decision counted once
    b = 1 + 5 * exp.store.metric_index["click"]  # the click's x and y sums in a group row
    clicked_trained = sum(s[b] for key, s in groups if not key[3] & 1)
    assert successes == clicked_trained  # every click moved its decision once
    assert sum(s[b + 1] for _, s in groups) == sum(1 for e in bandit if e[1])  # clicks seen
    exp.close()
