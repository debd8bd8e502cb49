"""The routing state: the one writer of the allocation, the epoch and the mode.

Every control-plane call (``configure``, ``pause_arm``, ``resume_arm``, a bandit refresh, the
guardrail rollback and ``resume``, a restore) is a read-modify-write of one *desired* state
under one lock, followed by the installation of the *effective* allocation derived from it:

- ``mode``: ``"ab"`` or ``"bandit"``;
- ``ab_weights``: the A/B weights last configured (what A/B mode routes by);
- ``active``: the arms the operator has not paused (shared by both modes: a pause survives a
  switch);
- ``held``: a guardrail rollback is in force. The effective allocation then sends everything
  to the control, whatever else changes; only :meth:`RoutingState.resume` lifts it. Changes
  made while held are kept in the desired state and take effect at the resume.

Installing means: next epoch number, ``store.begin_epoch`` (so any decision of the new epoch
finds its epoch recorded), then one attribute assignment of the immutable allocation, which
the request path reads without a lock. So every end state of racing calls is the end state of
some serial order of them (linearizable), and no allocation is ever a mix of two calls.

With a shared store (Redis, ``store.shared``) the desired state is also one record in the store
for every worker: installing publishes it by compare-and-set, a lost race adopts the newer
record and retries the change, and :meth:`RoutingState.sync` adopts records published
elsewhere (see :mod:`modelrouter.routing.shared`).

Thread safety: all methods may be called from any thread; they serialise on ``_lock``, which
is never taken by the request path, never held across an await (nor across I/O, but for the
shared store's control-plane round trips), and is the only lock the bandit refresh takes
before the store's (lock order: state, then store).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from modelrouter.bandit.status import BanditStatus
from modelrouter.config import Mode, RouterConfig
from modelrouter.config.rollout import Rollout
from modelrouter.exceptions import ConfigError, StoreError
from modelrouter.routing.assignment import Allocation
from modelrouter.routing.events import RollbackEvent
from modelrouter.routing.promotion import Stages, staged_weights
from modelrouter.routing.shared import RETRY_SECONDS, Conflict, make_record
from modelrouter.routing.shared_members import SharedMembers
from modelrouter.routing.stage_members import StageMembers
from modelrouter.routing.weights import effective_ab, paused_ab
from modelrouter.store.forksafe import track
from modelrouter.store.protocol import Store
from modelrouter.store.types import EpochInfo

if TYPE_CHECKING:
    from modelrouter.bandit.allocator import Weights
    from modelrouter.routing.bandit import BanditRouter

__all__ = ["RollbackEvent", "RoutingState"]  # RollbackEvent: events.py, re-exported

T = TypeVar("T")
_MODES: tuple[Mode, ...] = ("ab", "bandit")


class RoutingState(SharedMembers, StageMembers):
    """Desired routing (mode, A/B weights, active arms, rollback hold) and the effective
    :class:`Allocation` derived from it; see the module docstring."""

    def __init__(self, names: Sequence[str], control: str, config: RouterConfig, store: Store,
                 clock: Callable[[], float], bandit: BanditRouter | None = None, *,
                 candidates: Sequence[str] = ()) -> None:
        self.names = tuple(names)
        # shadows registered as arms held at weight 0 until promoted (routing/promotion.py);
        # those whose rollout plan starts with 'shadow' follow it from its stage 0
        self.candidates = tuple(candidates)
        plan = config.rollout
        self._stages = Stages.start(self.candidates, {
            c: isinstance(plan, Rollout) and c in plan and plan[c].stages[0].stage == "shadow"
            for c in self.candidates})
        self.control = control
        self._control_index = self.names.index(control)
        self._configured = dict(config.weights or {})
        self._store = store
        self._clock = clock
        self._bandit = bandit
        self._lock = threading.Lock()
        track(self, self._lock)  # a fork waits until no change is half done (forksafe.py)
        served = [n for n in self.names if n not in self.candidates]
        weights = self._with_candidates(config.weights
                                        or {n: 1.0 / len(served) for n in served})
        self._ab: dict[str, float] = RouterConfig.check_weights(weights, self.names)
        self._active = [n not in self.candidates for n in self.names]
        self._held = False
        self._events: list[RollbackEvent] = []
        self._bandit_weights: Weights | None = None
        if config.mode == "bandit" and bandit is None:
            raise ConfigError("mode ('bandit') needs a reward metric: set "
                              "RouterConfig(reward=<a declared metric>)")
        self.mode: Mode = config.mode
        self.shared = store.shared  # the routing state is a record in the store (shared.py)
        self._record: dict[str, Any] | None = None  # the shared record in force, if any
        self._updates = 0.0  # the shared training updates last read
        self._skipped: tuple[float, float] | None = None  # last refresh without a change
        self._stored = 0  # the epoch of the shared record last read (0: none)
        if self.shared and bandit is not None and self.mode == "bandit":
            # epoch 0 must mean the same weights in every worker: equal shares to start
            self._bandit_weights = bandit.initial_weights(self._active)
        self.allocation: Allocation = self._derive(0, recompute=not self.shared)
        store.begin_epoch(0, self.mode, self.allocation.propensities)

    # -- reading (no lock: immutable values swapped whole) ---------------------------------
    @property
    def rolled_back(self) -> bool:
        """Whether a rollback holds all traffic on the control."""
        return self._held

    @property
    def events(self) -> tuple[RollbackEvent, ...]:
        """Rollbacks and resumes so far, oldest first."""
        return tuple(self._events)

    # -- control plane ----------------------------------------------------------------------
    def configure(self, *, weights: Mapping[str, float] | None = None,
                  mode: str | None = None) -> Allocation:
        """Set the mode and/or weights; starts a new epoch. Returns the new allocation.

        A/B: ``weights`` become the A/B weights (without ``weights`` the last A/B weights
        stay, so a switch back from bandit restores them). Bandit: ``weights`` only say which
        arms take part (0 pauses, > 0 activates); the bandit sets the shares.
        """
        def change() -> Allocation:
            new_mode = self.mode if mode is None else mode
            if new_mode not in _MODES:
                raise ConfigError(f"mode ({new_mode!r}) must be one of 'ab', 'bandit'")
            if new_mode == "bandit" and self._bandit is None:
                raise ConfigError("mode ('bandit') needs a reward metric: set "
                                  "RouterConfig(reward=<a declared metric>)")
            if new_mode == "bandit" and any(s.stage in ("canary", "ab")
                                            for s in self._stages.current.values()):
                raise ConfigError("mode ('bandit'): a shadow candidate is being rolled out "
                                  "(canary or ab stage); finish or roll back its rollout first")
            checked = None if weights is None else RouterConfig.check_weights(
                self._with_candidates(weights), self.names)
            if checked is not None and new_mode == "ab":
                self._ab = checked
            elif checked is not None:
                self._active = [checked[n] > 0 for n in self.names]
            if new_mode == "bandit" and self.mode != "bandit" and self._bandit is not None:
                self._bandit.clear_sticky()  # units drawn under A/B draw again
            self.mode = new_mode
            return self._install()

        return self._change(change)

    def set_arm(self, variant: str, active: bool) -> Allocation:
        """Pause (``active=False``) or resume an arm from a new epoch on (see the module
        docstring: the pause holds in both modes). A no-op returns the current allocation."""
        def change() -> Allocation:
            if variant not in self.names:
                raise ConfigError(f"variant ({variant!r}) must be one of {list(self.names)!r}")
            if variant in self.candidates:
                raise ConfigError(f"variant ({variant!r}) is a shadow candidate: promote() "
                                  "and its rollout set its share")
            i = self.names.index(variant)
            mask = list(self._active)
            mask[i] = active
            if not active and not any(mask) and self.mode == "bandit":
                raise ConfigError(f"variant ({variant!r}) is the last active arm; it cannot be "
                                  "paused")
            ab = self._ab  # A/B: the share moves too (weights.py)
            if self.mode == "ab":
                ab = paused_ab(ab, mask, variant, active, self._configured)
                for st in self._stages.current.values():  # a candidate keeps its stage's share
                    if st.share > 0:
                        ab = staged_weights(ab, st.candidate, st.share, self.control)
            if mask == self._active and ab == self._ab:
                return self.allocation  # already so
            self._active, self._ab = mask, ab
            return self._install()

        return self._change(change)

    def rollback(self, reasons: Sequence[str]) -> RollbackEvent | None:
        """Hold all traffic on the control until :meth:`resume`; None if already held."""
        def change() -> RollbackEvent | None:
            if self._held:
                return None
            before = dict(self.allocation.weights)
            self._held = True
            return self._install_event("rollback", tuple(reasons), before)

        return self._change(change)

    def resume(self, reason: str) -> RollbackEvent | None:
        """Lift a rollback: route by the desired state again; None if not rolled back."""
        def change() -> RollbackEvent | None:
            if not self._held:
                return None
            before = dict(self.allocation.weights)
            self._held = False
            return self._install_event("resume", (reason,), before)

        return self._change(change)

    def refresh_bandit(self, *, force: bool = False) -> Weights | None:
        """Recompute the bandit's weights and install them as a new epoch, if in bandit mode
        and the schedule says so (or ``force``); never on the request path."""
        if self.shared:  # the shared schedule decides (sync); a forced refresh publishes
            if not force or self._bandit is None:
                return None

            def refresh() -> Weights | None:
                if self.mode != "bandit":
                    return None
                self._install()
                return self._bandit_weights

            return self._change(refresh)
        with self._lock:
            bandit = self._bandit
            if self.mode != "bandit" or bandit is None:
                return None  # A/B mode: the counters keep accumulating for later
            if force:
                self._install()
            elif bandit.refresh_due():
                self._scheduled_refresh()
            else:
                return None
            return self._bandit_weights

    def _scheduled_refresh(self) -> Allocation:
        """A refresh by the schedule (lock held): a new epoch with the new weights, unless no
        arm's share moves by :data:`~modelrouter.routing.bandit.NEGLIGIBLE_CHANGE` or more;
        then the weights in force stay, in their epoch (epochs, and the per-epoch sums the
        analysis keeps, grow only when routing really changes)."""
        bandit = self._bandit
        assert bandit is not None
        current = self._bandit_weights
        new = bandit.compute(self._effective_active())
        if current is not None and bandit.negligible(current, new, self.allocation.epoch):
            bandit.keep(current)
            self._skipped = (self._updates, self._clock())
            return self.allocation
        self._bandit_weights = new
        return self._install(recompute=False)

    def _change(self, change: Callable[[], T]) -> T:
        """Run ``change`` under the lock, all or nothing; with a shared store, on the newest
        shared state, retried when another worker published first."""
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        while True:
            try:
                with self._writing():
                    if self.shared:
                        self._adopt(self._store.read_control())
                    return change()
            except Conflict:
                attempt += 1
                if time.monotonic() > deadline:
                    raise StoreError(f"the shared routing state changed {attempt} times in "
                                     f"{RETRY_SECONDS:g} s while this change was being made; "
                                     "it was not applied (try again)") from None
                time.sleep(random.uniform(0.0, 0.002 * min(attempt, 10)))  # lock released

    def save(self, dump: Callable[[], T]
             ) -> tuple[T, dict[str, Any] | None, dict[str, Any]]:
        """Run ``dump`` (a copy of the store's state) under the lock, with the snapshot's
        bandit section (None without a bandit) and routing section (rollback hold, events)."""
        with self._lock:
            section = None if self._bandit is None else self._bandit.saved_state(self._active)
            routing = {"held": self._held, "events": [e.to_dict() for e in self._events],
                       "stages": self._stages.to_data()}
            return dump(), section, routing

    def restore(self, load: Callable[[], T],
                bandit_of: Callable[[T], Mapping[str, Any] | None] | None = None,
                routing_of: Callable[[T], Mapping[str, Any] | None] | None = None) -> T:
        """Run ``load`` (which replaces the store's contents, epochs included) under the lock,
        then continue routing after the restored epochs: in the last one if it has the
        current weights and mode, else in a new epoch after it.

        ``bandit_of(result)``: the restored bandit section, if any (see
        :meth:`BanditRouter.restore <modelrouter.routing.bandit.BanditRouter.restore>`): the
        bandit's weights and the active arms become the saved ones before that decision, so a
        bandit router continues in the restored epoch with the restored weights.
        ``routing_of(result)``: the saved rollback hold and events (a restart must not
        resume a rolled-back treatment)."""
        with self._lock:
            result = load()
            routing = None if routing_of is None else routing_of(result)
            if routing is not None:
                self._held = bool(routing.get("held", False)) or self._held
                self._events = [RollbackEvent.from_dict(e) for e in routing.get("events", ())]
                self._stages = Stages.from_data(routing.get("stages"), self._stages)
                for c, st in self._stages.current.items():  # the stage's weights, again
                    self._ab = staged_weights(self._ab, c, st.share, self.control)
                    self._active[self.names.index(c)] = st.share > 0
            section = None if bandit_of is None else bandit_of(result)
            if section is not None and self._bandit is not None:
                self._bandit_weights = self._bandit.restore(section)
                self._active = [bool(a) for a in section["active"]]
            epochs: tuple[EpochInfo, ...] = self._store.epochs()
            if epochs:
                last = epochs[-1]
                alloc = self._derive(last.epoch, recompute=False)  # restored bandit weights
                if last.weights != alloc.propensities or last.mode != self.mode:
                    alloc = self._derive(max(e.epoch for e in epochs) + 1, recompute=False)
                    self._store.begin_epoch(alloc.epoch, self.mode, alloc.propensities)
                self.allocation = alloc
            elif section is not None:
                self.allocation = self._derive(self.allocation.epoch, recompute=False)
            return result

    def bandit_status(self) -> BanditStatus | None:
        """The bandit's posterior, weights and arms now; None without a reward metric."""
        bandit = self._bandit
        if bandit is None:
            return None
        with self._lock:  # one consistent reading of the counters, weights and mode
            parts = bandit.status_parts()
            alloc, mode = self.allocation, self.mode
        return bandit.status(parts, epoch=alloc.epoch, active=mode == "bandit",
                             weights=alloc.propensities)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The lock, and all or nothing: if a change fails half way (a bad value, a failed
        bandit computation), the desired state is put back as it was."""
        with self._lock:
            saved = (self.mode, self._ab, list(self._active), self._held, list(self._events),
                     self._bandit_weights, self._stages)
            try:
                yield
            except BaseException:
                (self.mode, self._ab, self._active, self._held, self._events,
                 self._bandit_weights, self._stages) = saved
                raise

    # -- deriving the effective allocation (lock held) ---------------------------------------
    def _install(self, event: Callable[[Allocation], object] | None = None, *,
                 recompute: bool = True) -> Allocation:
        # with a shared store: after every epoch this worker or the store has seen (a store
        # that lost its data, e.g. a Redis restarted without persistence, holds none)
        alloc = self._derive(max(self.allocation.epoch, self._stored) + 1, recompute=recompute)
        if event is not None:  # an event naming the new weights, published with them
            event(alloc)
        if self.shared:  # compare-and-set: refused if another worker published meanwhile
            bandit = None
            if self.mode == "bandit" and self._bandit is not None:
                bandit = self._bandit.saved_state(self._active)["weights"]
            record = make_record(epoch=alloc.epoch, mode=self.mode, ab=self._ab,
                                 active=self._active, held=self._held, bandit=bandit,
                                 propensities=alloc.propensities,
                                 events=[e.to_dict() for e in self._events], at=self._clock(),
                                 updates=self._updates)
            record["stages"] = self._stages.to_data()  # promotion.py: read with .get
            if not self._store.publish_control(record, self._stored):
                raise Conflict
            self._record = record
        self._store.begin_epoch(alloc.epoch, self.mode, alloc.propensities)
        self.allocation = alloc  # one assignment: the request path sees old or new
        return alloc

    def _install_event(self, kind: Literal["rollback", "resume"], reasons: tuple[str, ...],
                       before: Mapping[str, float]) -> RollbackEvent:
        """:meth:`_install` with a rollback or resume event recorded with it."""
        made: list[RollbackEvent] = []

        def add(alloc: Allocation) -> None:
            made.append(RollbackEvent(kind, self._clock(), reasons, dict(before),
                                      dict(alloc.weights)))
            self._events.append(made[0])

        self._install(add)
        return made[0]

    def _effective_active(self) -> list[bool]:
        if self._held:
            return [i == self._control_index for i in range(len(self.names))]
        return self._active

    def _derive(self, epoch: int, *, recompute: bool = True) -> Allocation:
        active = self._effective_active()
        if self.mode == "bandit" and self._bandit is not None:
            if recompute or self._bandit_weights is None:
                self._bandit_weights = self._bandit.compute(active)
            return self._bandit.allocation_for(self._bandit_weights, epoch)
        return Allocation(self.names, effective_ab(self._ab, active, self.control),
                          self.control, epoch=epoch)
