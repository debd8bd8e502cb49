"""Bandit mode: route by Thompson weights, train on rewards, refresh in the background.

:class:`BanditRouter` is built by the experiment when the config names a ``reward``. It holds
the :class:`~modelrouter.bandit.allocator.ThompsonAllocator`, the store's
:class:`~modelrouter.store.decisions.DecisionTracker` (decision-level sums and the training
counters) and a background refresh thread. It writes no routing state: the experiment's
:class:`~modelrouter.routing.state.RoutingState` is the one writer of the allocation, epoch
and mode, and asks this module for weights (:meth:`BanditRouter.compute`) under its lock.

Request path (:meth:`BanditRouter.route`): one read of an immutable :class:`BanditState`, one
uniform number from a per-process ``random.Random`` (or a posterior draw for the
``thompson-per-request`` policy), a bisection of the cumulative weights, and the store's
``expose_decision``: O(log K), no numpy, no I/O. With ``holdout=h`` a share ``h`` of decisions
goes uniformly to the active arms (tagged, never trained on); the propensity of arm i is then
``h / K_active + (1 - h) * w_i``. Sticky units (``sticky_seconds``) keep their first draw (arm,
propensity and epoch) in a bounded ``cachetools.TTLCache`` guarded by a lock.

Refresh: the tracker calls :meth:`BanditRouter._wake` (sets an event; under the store lock)
once ``refresh_every`` training updates accumulated; the worker thread also wakes every
``refresh_seconds`` and calls the routing state's refresh, which computes and installs the next
epoch under the state lock: at most one refresh at a time, never on a request. Tests make it
deterministic with :meth:`BanditRouter.wait_idle` (wait until every refresh due so far ran).

Thread safety: ``route`` may run on any thread; everything else is called by the routing state
under its lock (lock order: routing state, then store). Each process draws its own numbers: the
generators are reseeded after ``fork``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import TTLCache

from modelrouter.bandit.allocator import ThompsonAllocator, Weights, fixed_split
from modelrouter.bandit.policies import check_min_share, p_best_quadrature, summarize
from modelrouter.bandit.status import BanditStatus
from modelrouter.config.bandit import BanditConfig
from modelrouter.config.extensions import CoreMirror, install, load_extension
from modelrouter.exceptions import ConfigError
from modelrouter.routing.assignment import Allocation
from modelrouter.routing.decision import Decision
from modelrouter.routing.policies import RouteContext
from modelrouter.store.decisions import HOLDOUT, STICKY, DecisionTracker, Training
from modelrouter.store.forksafe import renew

__all__ = ["EPOCH_BUDGET", "NEGLIGIBLE_CHANGE", "BanditAllocation", "BanditRouter",
           "BanditState"]

_log = logging.getLogger("modelrouter.bandit")
_BELOW_ONE = math.nextafter(1.0, 0.0)
NEGLIGIBLE_CHANGE = 0.005
"""A scheduled refresh that moves no arm's share by this much or more keeps the weights in
force and their epoch: epochs (and the per-epoch sums kept for the analysis) then grow with
the changes of routing, not with the number of refreshes (README, "Bandit mode")."""
EPOCH_BUDGET = 1_000
"""The threshold doubles every ``EPOCH_BUDGET`` epochs (1 pp after 1,000, 2 pp after 2,000, ...),
so that scheduled refreshes start at most about 8,000 epochs in all (past 128 pp no share can
move enough): a hard bound on the per-epoch state, whatever the posterior does."""


class BanditAllocation(Allocation):
    """The experiment's allocation in bandit mode: the effective propensities (for the admin
    API and dashboards) plus the :class:`BanditState` the request path routes by."""

    __slots__ = ("state",)

    def __init__(self, variants: Sequence[str], weights: Mapping[str, float], control: str,
                 epoch: int, state: BanditState) -> None:
        super().__init__(variants, weights, control, epoch)
        self.state = state


@dataclass(frozen=True, eq=False)
class BanditState:
    """The routing policy of one bandit epoch, swapped as a whole."""

    epoch: int
    weights: Weights  # the allocator's weights (before the holdout mix)
    propensities: tuple[float, ...]  # effective: h / K_active + (1 - h) * w
    active: tuple[int, ...]  # indices of active arms
    holdout: float
    per_request: bool


_new_decision = tuple.__new__


class BanditRouter(CoreMirror):
    """Thompson-sampling routing, training and the refresh worker of one experiment.

    It never writes the experiment's routing state: :class:`~modelrouter.routing.state.
    RoutingState` calls :meth:`compute` and :meth:`allocation_for` under its lock and installs
    the result; the worker thread asks the state to refresh through the callback given to
    :meth:`bind`.
    """

    def __init__(self, config: BanditConfig, ctx: RouteContext, seeds: Sequence[int], *,
                 name: str = "experiment") -> None:
        self.config = config
        self.name = name  # the experiment's, for the worker thread's name
        self.ctx = ctx
        store = ctx.store
        k = len(ctx.names)
        check_min_share(config.min_share, k)  # min_share x arms <= 1, naming the field
        kind = config.reward_kind
        if config.reward is None:
            raise ConfigError("bandit routing needs RouterConfig(reward=<a declared metric>)")
        self.allocator = ThompsonAllocator.from_config(
            k, reward=kind, prior=config.prior, policy=config.bandit_policy,
            min_share=config.min_share, refresh_every=config.refresh_every,
            refresh_seconds=config.refresh_seconds, seed=seeds[0])
        self._rng = random.Random(seeds[1])
        self._np_rng = np.random.default_rng(seeds[2])
        index = store.metric_index
        costs = tuple((index[m], c) for m, c in (config.reward_cost or {}).items())
        training = Training(index[config.reward], costs, config.missing_reward, kind,
                            self.allocator.posterior.shift, config.refresh_every)
        self.tracker = DecisionTracker(k, [store.metrics[m].aggregate for m in store.metric_names],
                                       store.max_pending, training, on_due=self._wake)
        store.track_decisions(self.tracker)  # ConfigError on a store without decision tracking
        self._sticky: TTLCache[str, tuple[int, float, int, int]] | None = None
        if config.sticky_seconds is not None:
            self._sticky = TTLCache(config.sticky_max_units, config.sticky_seconds,
                                    timer=ctx.clock)
        self._refresh: Callable[[], object] | None = None
        self._init_threading()
        renew(self, BanditRouter._after_fork)  # with the store's locks free (forksafe.py)
        # what the compiled route reads (routing/bandit_c.pyx), when it was built
        self._core = None if _compiled is None else _compiled.new_core(self)

    def bind(self, refresh: Callable[[], object]) -> None:
        """Give the worker the routing state's refresh (called when a refresh is due)."""
        self._refresh = refresh

    def _init_threading(self) -> None:
        self._lock = threading.Lock()  # the sticky cache
        self._event = threading.Event()
        self._idle = threading.Condition()
        self._signals = 0  # due signals so far (written under the store lock)
        self._served = 0  # due signals handled by the worker
        self._closed = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"BanditRouter(policy={self.allocator.policy.name!r}, "
                f"arms={len(self.ctx.names)}, epoch={self.allocator.epoch})")

    # -- request path ---------------------------------------------------------------------
    def route(self, unit: str | None, segment: Sequence[str], alloc: BanditAllocation
              ) -> tuple[Decision, int]:
        """Choose an arm for one request and count the decision (the bandit's hot path).

        ``alloc`` is the experiment's allocation as the caller read it: the decision uses that
        epoch even if a refresh or a switch to A/B happens meanwhile.
        """
        ctx = self.ctx
        st = alloc.state
        now = ctx.clock()
        if not ctx.unit_level:
            unit = None
        elif unit is None:
            return ctx.missing(lambda: self._drawn(st), st.epoch, "bandit", segment, now)
        hit = None
        if self._sticky is not None and unit is not None:
            with self._lock:
                hit = self._sticky.get(unit)
        if hit is not None and hit[0] in st.active:
            i, p, epoch, tag = hit[0], hit[1], hit[2], hit[3] | STICKY
        else:
            i, tag = self._draw(st)
            p, epoch = st.propensities[i], st.epoch
            if self._sticky is not None and unit is not None:
                with self._lock:
                    self._sticky[unit] = (i, p, epoch, tag)
        store = ctx.store
        codes = store.segment_codes(segment) if segment else ()
        seq = store.expose_decision(unit, i, p, epoch, codes, now, tag)
        return _new_decision(Decision, (  # tuple.__new__: see Experiment.route
            ctx.prefix + format(seq, "x"), ctx.names[i], ctx.models[i], unit, p, epoch,
            "bandit", now, True, segment if type(segment) is tuple else tuple(segment))), seq

    def _draw(self, st: BanditState) -> tuple[int, int]:
        u = self._rng.random()
        h = st.holdout
        if u < h:  # the uniform holdout: its outcomes never train the bandit
            return st.active[min(int(u / h * len(st.active)), len(st.active) - 1)], HOLDOUT
        if st.per_request:
            return st.weights.draw(self._np_rng)[0], 0
        return st.weights.choose(min((u - h) / (1.0 - h), _BELOW_ONE))[0], 0

    def _drawn(self, st: BanditState) -> tuple[int, float]:
        i = self._draw(st)[0]
        return i, st.propensities[i]

    # -- for the routing state (its lock held) ----------------------------------------------
    def clear_sticky(self) -> None:
        """Forget the sticky draws (on entering bandit mode)."""
        if self._sticky is not None:
            with self._lock:
                self._sticky.clear()

    def refresh_due(self) -> bool:
        """Whether the schedule (events or seconds since the last refresh) asks for one."""
        return self.allocator.should_refresh(self.tracker.pending)

    def compute(self, active: Sequence[bool]) -> Weights:
        """Load the latest training counters and compute weights over the ``active`` arms."""
        counters, _ = self.ctx.store.take_training()
        self.allocator.load_counters(counters)
        self.allocator.set_active(active)
        return self.allocator.refresh()

    def allocation_for(self, w: Weights, epoch: int) -> BanditAllocation:
        """The allocation routing by ``w`` in ``epoch``, with the holdout mixed in."""
        h = float(self.config.holdout)
        active = tuple(i for i, a in enumerate(w.active) if a)
        props = tuple((h / len(active) if i in active else 0.0) + (1.0 - h) * p
                      for i, p in enumerate(w.probabilities))
        ctx = self.ctx
        state = BanditState(epoch, w, props, active, h, self.allocator.policy.per_request)
        return BanditAllocation(ctx.names, dict(zip(ctx.names, props)),
                                ctx.names[ctx.control_index], epoch, state)

    def identity(self) -> dict[str, Any]:
        """What the training counters and weights mean, as a snapshot records it (a restore
        refuses a file whose bandit identity differs, see store/persistence.py)."""
        c = self.config
        return {"reward": c.reward, "kind": c.reward_kind,
                "costs": {m: float(v) for m, v in sorted((c.reward_cost or {}).items())},
                "missing_reward": c.missing_reward, "policy": self.allocator.policy.name}

    def saved_state(self, active: Sequence[bool]) -> dict[str, Any]:
        """The snapshot's bandit section (JSON-safe): identity, the allocator's weights in
        force and the operator's ``active`` arms (routing state lock held)."""
        w = self.allocator.weights
        return {"identity": self.identity(), "active": [bool(a) for a in active],
                "weights": {"probabilities": list(w.probabilities), "p_best": list(w.p_best),
                            "active": list(w.active), "epoch": w.epoch,
                            "created_at": w.created_at, "policy": w.policy,
                            "min_share": w.min_share}}

    def restore(self, section: Mapping[str, Any]) -> Weights:
        """Continue from a snapshot's (checked) bandit section, after the store restored the
        training counters: they go into the posterior, the saved weights come back in force
        (routing state lock held). Returns the weights."""
        weights = self.adopt(section["weights"])
        self.clear_sticky()  # draws of the replaced epochs
        return weights

    def adopt(self, w: Mapping[str, Any]) -> Weights:
        """Put weights saved by :meth:`saved_state` (a snapshot's, or another worker's in the
        shared routing record) in force, with the store's training counters (routing state
        lock held). Returns the weights."""
        weights = Weights(tuple(w["probabilities"]), tuple(w["p_best"]), int(w["epoch"]),
                          float(w["created_at"]), str(w["policy"]), float(w["min_share"]),
                          tuple(bool(a) for a in w["active"]))
        self.allocator.restore(self.ctx.store.peek_training(), weights)
        return weights

    def negligible(self, current: Weights, new: Weights, epoch: int = 0) -> bool:
        """Whether ``new`` routes like ``current`` at routing epoch ``epoch``: same active arms
        and no share moved by :data:`NEGLIGIBLE_CHANGE` (doubled every :data:`EPOCH_BUDGET`
        epochs) or more."""
        threshold = NEGLIGIBLE_CHANGE * 2.0 ** min(epoch // EPOCH_BUDGET, 16)
        return current.active == new.active and all(
            abs(a - b) < threshold for a, b in zip(current.probabilities, new.probabilities))

    def keep(self, current: Weights) -> None:
        """After a refresh found no change: the allocator keeps its posterior and goes back to
        the weights in force (routing state lock held)."""
        self.allocator.restore(self.allocator.counters(), current)

    def initial_weights(self, active: Sequence[bool] | None = None) -> Weights:
        """Equal shares over every arm (``active``: over the active ones; a shadow candidate
        held at weight 0 is not), the allocator's state untouched: the start of a bandit
        whose epoch 0 must be the same in every worker (a shared store), whatever counters
        each finds when it starts."""
        a = self.allocator
        if active is None or all(active):
            w = fixed_split(len(self.ctx.names))
        else:
            w = Weights.fixed([1.0 if x else 0.0 for x in active])
        snapshot = a.posterior.copy() if a.policy.per_request else None  # the prior
        return Weights(w.probabilities, w.p_best, 0, w.created_at, a.policy.name, a.min_share,
                       w.active, snapshot)

    def status_parts(self) -> tuple[dict[str, np.ndarray], tuple[bool, ...], Weights]:
        """Counters, active arms and weights, read together (routing state lock held)."""
        return self.ctx.store.peek_training(), self.allocator.active, self.allocator.weights

    def status(self, parts: tuple[dict[str, np.ndarray], tuple[bool, ...], Weights], *,
               epoch: int, active: bool, weights: Sequence[float], draws: int = 20_000
               ) -> BanditStatus:
        """The posterior now (means, P(best), expected loss) over all arms, paused ones
        included (what each would be worth), with the weights in force."""
        counters, arms, w = parts
        posterior = self.allocator.posterior.with_counters(counters)
        summary = summarize(posterior, np.random.default_rng(self._rng.getrandbits(63)),
                            draws=draws)
        p_best = p_best_quadrature(posterior)
        return BanditStatus(
            policy=self.allocator.policy.name, active=active, epoch=epoch,
            weights=tuple(weights), bandit_weights=tuple(w.probabilities),
            p_best=tuple(p_best.tolist()), mean=tuple(summary.mean.tolist()),
            expected_loss=tuple(summary.expected_loss.tolist()),
            paused=tuple(not a for a in arms), counts=tuple(posterior.counts().tolist()),
            kind=posterior.kind, holdout=self.config.holdout, min_share=self.allocator.min_share)

    # -- the refresh worker ---------------------------------------------------------------
    def _wake(self) -> None:
        """Tracker callback (store lock held): a refresh is due; only signal the worker."""
        self._signals += 1
        self._event.set()

    def start(self) -> None:
        """Start the refresh thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=_worker, args=(weakref.ref(self), self._event, self.allocator.refresh_seconds),
            name=f"modelrouter-bandit-{self.name}", daemon=True)
        weakref.finalize(self, self._event.set)  # wake the worker so it sees we are gone
        self._thread.start()

    def _work(self) -> None:
        target = self._signals
        try:
            if self._refresh is not None:
                self._refresh()
        finally:
            with self._idle:
                self._served = max(self._served, target)
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every refresh due so far has run (tests); False on timeout."""
        target = self._signals
        if self._served >= target or self._thread is None:
            return True
        with self._idle:
            return self._idle.wait_for(lambda: self._served >= target or self._closed, timeout)

    def close(self) -> None:
        """Stop the refresh thread (it is a daemon; closing is optional)."""
        self._closed = True
        self._event.set()
        with self._idle:
            self._idle.notify_all()

    def _after_fork(self) -> None:
        self._rng.seed(os.urandom(16))
        self._np_rng = np.random.default_rng()
        self.allocator.reseed()
        started = self._thread is not None
        self._init_threading()
        if started:
            self.start()


def _worker(ref: weakref.ref[BanditRouter], event: threading.Event,
            refresh_seconds: float) -> None:
    """The single refresh thread: wakes on a due signal or every ``refresh_seconds``."""
    timeout = None if math.isinf(refresh_seconds) else refresh_seconds
    while True:
        event.wait(timeout)
        router = ref()
        if router is None or router._closed:
            return
        event.clear()
        try:
            router._work()
        except Exception:  # pragma: no cover - a failed refresh keeps the old weights
            _log.exception("bandit refresh failed; the current weights stay in force")
        del router


# the compiled twin of route (routing/bandit_c.pyx), when it was built
install(BanditRouter, "route", "modelrouter.routing.bandit_c")
_compiled = load_extension("modelrouter.routing.bandit_c")
