"""Bandit mode of an :class:`~modelrouter.routing.experiment.Experiment`: route by Thompson weights.

:class:`BanditRouter` is built by the experiment when the config names a ``reward``. It holds
the :class:`~modelrouter.bandit.allocator.ThompsonAllocator`, the store's
:class:`~modelrouter.store.decisions.DecisionTracker` (decision-level sums and the training
counters) and a background refresh thread.

Request path (:meth:`BanditRouter.route`): one read of an immutable :class:`BanditState`, one
uniform number from a per-process ``random.Random`` (or a posterior draw for the
``thompson-per-request`` policy), a bisection of the cumulative weights, and the store's
``expose_decision``: O(log K), no numpy, no I/O. With ``holdout=h`` a share ``h`` of decisions
goes uniformly to the active arms (tagged, never trained on); the propensity of arm i is then
``h / K_active + (1 - h) * w_i``. Sticky units (``sticky_seconds``) keep their first draw (arm,
propensity and epoch) in a bounded ``cachetools.TTLCache`` guarded by a lock.

Refresh: the tracker calls :meth:`_wake` (sets an event; under the store lock) once
``refresh_every`` training updates accumulated; the worker thread also wakes every
``refresh_seconds``. It copies the counters under the store lock, computes the new weights
outside every lock, and installs them as the experiment's next epoch under the experiment's
config lock: so at most one refresh runs at a time, never on a request. Tests make it
deterministic with :meth:`BanditRouter.wait_idle` (wait until every refresh due so far ran).

Thread safety: ``route`` may run on any thread; ``configure``, ``set_active`` and the refresh
are serialised by one refresh lock, taken before the store's and the config lock (never after).
Each process draws its own numbers: the generators are reseeded after ``fork``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from cachetools import TTLCache

from modelrouter.bandit.allocator import ThompsonAllocator, Weights
from modelrouter.bandit.policies import check_min_share, p_best_quadrature, summarize
from modelrouter.bandit.status import BanditStatus
from modelrouter.config import RouterConfig
from modelrouter.config.bandit import reward_kind
from modelrouter.exceptions import ConfigError, UnitIdError
from modelrouter.routing.assignment import Allocation
from modelrouter.routing.decision import Decision
from modelrouter.store.decisions import HOLDOUT, STICKY, DecisionTracker, Training

if TYPE_CHECKING:
    from modelrouter.routing.experiment import Experiment

__all__ = ["BanditAllocation", "BanditRouter", "BanditState"]

_log = logging.getLogger("modelrouter.bandit")
_ALIVE: weakref.WeakSet[BanditRouter] = weakref.WeakSet()
_BELOW_ONE = math.nextafter(1.0, 0.0)


class BanditAllocation(Allocation):
    """The experiment's allocation in bandit mode: the effective propensities (for the admin
    API and dashboards) plus the :class:`BanditState` the request path routes by."""

    __slots__ = ("state",)

    def __init__(self, variants: Sequence[str], weights: Mapping[str, float], control: str,
                 epoch: int, state: BanditState | None = None) -> None:
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
    allocation: BanditAllocation  # holds this state; what the experiment routes by


_new_decision = tuple.__new__


class BanditRouter:
    """Thompson-sampling routing, training and refresh for one experiment (see module doc)."""

    def __init__(self, experiment: Experiment) -> None:
        exp = self.experiment = experiment
        cfg = exp.config
        store = exp.store
        if not hasattr(store, "track_decisions"):
            raise ConfigError(f"reward ({cfg.reward!r}): bandit mode needs store='memory' for "
                              f"now, got a {type(store).__name__}")
        k = len(exp.names)
        self._unit_level = cfg.level != "request"
        check_min_share(cfg.min_share, k)  # min_share x arms <= 1, naming the field
        kind = reward_kind(cfg)
        seeds = [exp._rng.getrandbits(63) for _ in range(3)]  # reproducible with a seeded rng
        self.allocator = ThompsonAllocator.from_config(
            k, reward=kind, prior=cfg.prior, policy=cfg.bandit_policy, min_share=cfg.min_share,
            refresh_every=cfg.refresh_every, refresh_seconds=cfg.refresh_seconds, seed=seeds[0])
        self._rng = random.Random(seeds[1])
        self._np_rng = np.random.default_rng(seeds[2])
        index = store.metric_index
        costs = tuple((index[m], c) for m, c in (cfg.reward_cost or {}).items())
        assert cfg.reward is not None  # the experiment builds us only then
        training = Training(index[cfg.reward], costs, cfg.missing_reward, kind,
                            float(getattr(self.allocator.posterior, "shift", 0.0)),
                            cfg.refresh_every)
        self.tracker = DecisionTracker(k, [store.metrics[m].aggregate for m in store.metric_names],
                                       store.max_pending, training, on_due=self._wake)
        store.track_decisions(self.tracker)
        self._sticky: TTLCache[str, tuple[int, float, int, int]] | None = None
        if cfg.sticky_seconds is not None:
            self._sticky = TTLCache(cfg.sticky_max_units, cfg.sticky_seconds, timer=exp.clock)
        self.ab_weights: dict[str, float] = dict(exp.allocation.weights)
        self._init_threading()
        self._state: BanditState | None = None
        _ALIVE.add(self)
        if exp.mode == "bandit":  # starts in bandit mode: epoch 0 is a bandit epoch
            state = self._state_for(self.allocator.weights, exp.allocation.epoch)
            self._state = state
            exp.allocation = state.allocation
            self._start()

    def _init_threading(self) -> None:
        self._lock = threading.Lock()  # the sticky cache
        self._refresh_lock = threading.Lock()  # one refresh / configure / pause at a time
        self._event = threading.Event()
        self._idle = threading.Condition()
        self._signals = 0  # due signals so far (written under the store lock)
        self._served = 0  # due signals handled by the worker
        self._closed = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        st = self._state
        return (f"BanditRouter(policy={self.allocator.policy.name!r}, active={st is not None}, "
                f"epoch={None if st is None else st.epoch})")

    # -- request path ---------------------------------------------------------------------
    def route(self, unit: str | None, segment: Sequence[str] = (),
              alloc: BanditAllocation | None = None) -> tuple[Decision, int]:
        """Choose an arm for one request and count the decision (the bandit's hot path).

        ``alloc`` is the experiment's allocation as the caller read it: the decision uses that
        epoch even if a refresh or a switch to A/B happens meanwhile.
        """
        exp = self.experiment
        st = alloc.state if alloc is not None else self._state
        if st is None:
            return exp.route(unit, segment)
        now = exp.clock()
        if not self._unit_level:
            unit = None
        elif unit is None:
            return self._missing_unit(st, segment, now)
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
        store = exp.store
        codes = store.segment_codes(segment) if segment else ()
        seq = store.expose_decision(unit, i, p, epoch, codes, now, tag)
        return _new_decision(Decision, (  # tuple.__new__: see Experiment.route
            exp._prefix + format(seq, "x"), exp.names[i], exp.models[i], unit, p, epoch,
            "bandit", now, True, segment if type(segment) is tuple else tuple(segment))), seq

    def _draw(self, st: BanditState) -> tuple[int, int]:
        u = self._rng.random()
        h = st.holdout
        if u < h:  # the uniform holdout: its outcomes never train the bandit
            return st.active[min(int(u / h * len(st.active)), len(st.active) - 1)], HOLDOUT
        if st.per_request:
            return st.weights.draw(self._np_rng)[0], 0
        return st.weights.choose(min((u - h) / (1.0 - h), _BELOW_ONE))[0], 0

    def _missing_unit(self, st: BanditState, segment: Sequence[str], now: float
                      ) -> tuple[Decision, int]:
        exp = self.experiment
        policy = exp.config.missing_unit
        if policy == "reject":
            raise UnitIdError(f"request has no unit id (looked in {exp._unit_sources()})")
        exp.store.uncounted()
        if policy == "random":
            i = self._draw(st)[0]
            p = st.propensities[i]
        else:
            i, p = exp.names.index(exp.control), 1.0
        return Decision("", exp.names[i], exp.models[i], None, p, st.epoch, "bandit", now, False,
                        tuple(segment)), -1

    # -- mode switch, pause, refresh (never on the request path) --------------------------
    def configure(self, weights: Mapping[str, float] | None = None) -> Allocation:
        """Enter (or stay in) bandit mode at a new epoch with freshly computed weights.

        ``weights`` (optional, every variant, summing to 1) only says which arms take part:
        a weight of 0 pauses the arm, any other weight makes it active; the bandit sets the
        shares. So a rollback to ``{control: 1, others: 0}`` routes everything to the control.
        """
        exp = self.experiment
        active = None
        if weights is not None:
            checked = RouterConfig.check_weights(weights, exp.names)
            active = np.array([checked[n] > 0 for n in exp.names])
        with self._refresh_lock:
            if active is not None:
                self.allocator._active = active  # applied by the refresh just below
            w = self._compute()
            with exp._config_lock:
                if exp.mode != "bandit":
                    self.ab_weights = dict(exp.allocation.weights)
                    if self._sticky is not None:
                        with self._lock:
                            self._sticky.clear()
                state = self._install(w)  # from here on the experiment routes through us
                exp.mode = "bandit"
        self._start()
        return state.allocation

    def deactivate(self) -> None:
        """Called by the experiment (config lock held) when it switches to A/B mode."""
        self._state = None

    def set_active(self, variant: str, active: bool) -> None:
        """Pause (``active=False``) or resume an arm; in bandit mode from a new epoch on."""
        exp = self.experiment
        if variant not in exp.names:
            raise ConfigError(f"variant ({variant!r}) must be one of {list(exp.names)!r}")
        with self._refresh_lock:
            mask = self.allocator._active.copy()
            mask[exp.names.index(variant)] = active
            if not mask.any():
                raise ConfigError(f"variant ({variant!r}) is the last active arm; it cannot be "
                                  "paused")
            self.allocator._active = mask
            if self._state is None:
                return
            w = self._compute()
            with exp._config_lock:
                if exp.mode == "bandit":
                    self._install(w)

    def refresh_if_due(self, *, force: bool = False) -> Weights | None:
        """Recompute and install the weights if the schedule says so (or ``force``)."""
        exp = self.experiment
        with self._refresh_lock:
            if self._state is None:
                return None  # A/B mode: the counters keep accumulating for later
            if not force and not self.allocator.should_refresh(self.tracker.pending):
                return None
            w = self._compute()
            with exp._config_lock:
                if exp.mode != "bandit" or self._state is None:
                    return None
                self._install(w)
            return w

    def _compute(self) -> Weights:
        """Load the latest training counters and compute new weights (refresh lock held)."""
        counters, _ = self.experiment.store.take_training()
        self.allocator.load_counters(counters)
        return self.allocator.refresh()

    def _install(self, w: Weights) -> BanditState:
        """Make ``w`` the experiment's next epoch (config lock held)."""
        exp = self.experiment
        state = self._state_for(w, exp.allocation.epoch + 1)
        exp.store.begin_epoch(state.epoch, "bandit", state.propensities)
        self._state = state
        exp.allocation = state.allocation
        return state

    def at_epoch(self, epoch: int) -> BanditAllocation:
        """The current weights renumbered as ``epoch`` (config lock held; after a restore)."""
        w = self._state.weights if self._state is not None else self.allocator.weights
        self._state = self._state_for(w, epoch)
        return self._state.allocation

    def _state_for(self, w: Weights, epoch: int) -> BanditState:
        h = float(self.experiment.config.holdout)
        active = tuple(i for i, a in enumerate(w.active) if a)
        props = tuple((h / len(active) if i in active else 0.0) + (1.0 - h) * p
                      for i, p in enumerate(w.probabilities))
        exp = self.experiment
        alloc = BanditAllocation(exp.names, dict(zip(exp.names, props)), exp.control, epoch)
        state = BanditState(epoch, w, props, active, h, self.allocator.policy.per_request, alloc)
        alloc.state = state
        return state

    # -- the refresh worker ---------------------------------------------------------------
    def _wake(self) -> None:
        """Tracker callback (store lock held): a refresh is due; only signal the worker."""
        self._signals += 1
        self._event.set()

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=_worker, args=(weakref.ref(self), self._event, self.allocator.refresh_seconds),
            name=f"modelrouter-bandit-{self.experiment.config.experiment}", daemon=True)
        weakref.finalize(self, self._event.set)  # wake the worker so it sees we are gone
        self._thread.start()

    def _work(self) -> None:
        target = self._signals
        try:
            self.refresh_if_due()
        finally:
            with self._idle:
                self._served = max(self._served, target)
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every refresh due so far has run (tests); False on timeout."""
        target = self._signals
        if self._served >= target or self._state is None:
            return True
        with self._idle:
            return self._idle.wait_for(lambda: self._served >= target or self._closed, timeout)

    def close(self) -> None:
        """Stop the refresh thread (it is a daemon; closing is optional)."""
        self._closed = True
        self._event.set()
        with self._idle:
            self._idle.notify_all()

    # -- reading --------------------------------------------------------------------------
    def status(self, draws: int = 20_000) -> BanditStatus:
        """Posterior now (means, P(best), expected loss), weights, policy, epoch: plain data."""
        with self._refresh_lock:
            counters = self.experiment.store.peek_training()
            posterior = self.allocator.posterior.with_counters(counters)
            active = self.allocator._active.copy()
            st = self._state
            weights = self.allocator.weights
        # over all arms, paused ones included: what each would be worth
        summary = summarize(posterior, np.random.default_rng(self._rng.getrandbits(63)),
                            draws=draws)
        p_best = p_best_quadrature(posterior)
        current = st.propensities if st is not None else tuple(
            self.experiment.allocation.propensities)
        return BanditStatus(
            policy=self.allocator.policy.name, active=st is not None,
            epoch=self.experiment.allocation.epoch, weights=tuple(current),
            bandit_weights=tuple(weights.probabilities), p_best=tuple(p_best.tolist()),
            mean=tuple(summary.mean.tolist()), expected_loss=tuple(summary.expected_loss.tolist()),
            paused=tuple(not a for a in active.tolist()),
            counts=tuple(posterior.counts().tolist()), kind=posterior.kind,
            holdout=self.experiment.config.holdout, min_share=self.allocator.min_share)

    def _after_fork(self) -> None:
        self._rng.seed(os.urandom(16))
        self._np_rng = np.random.default_rng()
        self.allocator.reseed()
        self._init_threading()
        if self._state is not None:
            self._start()


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


def _after_fork_in_child() -> None:
    for router in list(_ALIVE):
        router._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
