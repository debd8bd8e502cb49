"""The routing core: assign units to variants, record feedback. Knows nothing of ASGI.

:class:`Experiment` is what :class:`~modelrouter.ModelRouter` calls on every request (or alone).

Thread safety: :meth:`Experiment.assign`, :meth:`Experiment.record` and
:meth:`Experiment.record_unit` may be called at once from the event loop and from worker
threads; the store's lock makes every update exact. :meth:`Experiment.configure` swaps the
allocation as one immutable object, so a concurrent ``assign`` sees the old or the new weights,
never a mix. Control-plane calls are linearizable: the :class:`RoutingState` applies each one
as a read-modify-write under its lock.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.bandit.status import BanditStatus
from modelrouter.config import MetricSpec, Mode, RouterConfig
from modelrouter.config.extensions import CoreMirror, install, load_extension
from modelrouter.config.limits import check_variant_names
from modelrouter.config.unit_ids import check_unit_id
from modelrouter.exceptions import (
    ConfigError,
    FeedbackError,
    UnknownDecisionError,
    UnknownMetricError,
)
from modelrouter.routing.assignment import Allocation, Bucketer
from modelrouter.routing.covariates import record_covariate
from modelrouter.routing.decision import Decision
from modelrouter.routing.policies import RouteContext, unit_sources
from modelrouter.routing.snapshot_members import SnapshotMembers
from modelrouter.routing.state import RollbackEvent, RoutingState
from modelrouter.routing.tokens import TokenPayload
from modelrouter.routing.values import check_value, value_range
from modelrouter.store.extras import SnapshotExtras
from modelrouter.store.factory import open_store
from modelrouter.store.forksafe import renew
from modelrouter.store.protocol import Store

if TYPE_CHECKING:
    from modelrouter.routing.bandit import BanditRouter

_compiled = load_extension("modelrouter.routing.experiment_c")

__all__ = ["Experiment"]

_new_decision = tuple.__new__

class Experiment(SnapshotMembers, CoreMirror):
    """Variants, the routing state and the store of one experiment: the routing core.

    It routes (:meth:`route`), records feedback (:meth:`record`, :meth:`record_unit`,
    :meth:`record_token`) and takes control-plane calls, which it hands to its
    :class:`~modelrouter.routing.state.RoutingState`, the one writer of the allocation, epoch
    and mode. It knows nothing of ASGI or of the analysis; :class:`modelrouter.Experiment` adds
    the guardrail monitor and sequential looks on top. ``tick`` is the feedback hook: called
    after every recorded feedback event when set (see :meth:`subscribe`)."""

    def __init__(self, variants: Mapping[str, Any], config: RouterConfig | None = None, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 segment_dims: Sequence[str] = (), candidates: Sequence[str] = ()) -> None:
        config = RouterConfig() if config is None else config
        if not isinstance(variants, Mapping) or len(variants) < 2:
            raise ConfigError(f"variants must map at least two names to predictors, got "
                              f"{variants!r}")
        for name in variants:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"variants: name ({name!r}) must be a non-empty string")
        check_variant_names(tuple(variants), experiment=config.experiment,
                            token_unit_id_length=config.max_unit_id_length if config.secret
                            else None)
        self.config = config
        self.names: tuple[str, ...] = tuple(variants)
        self.models: tuple[Any, ...] = tuple(variants.values())
        self.control = config.control if config.control is not None else self.names[0]
        if self.control not in self.names:
            raise ConfigError(f"control ({self.control!r}) is not a variant; variants are "
                              f"{list(self.names)!r}")
        self.clock = clock
        self._rng = rng if rng is not None else random.Random(os.urandom(16))
        self._bucket = Bucketer(config.salt or "")
        self._prefix = os.urandom(4).hex() + "-"
        self._unit_level = config.level != "request"
        self._max_unit = config.max_unit_id_length
        self.segment_dims = tuple(segment_dims) or tuple(config.segments)
        self.extras = SnapshotExtras()  # snapshot parts of the layers above (store/extras.py)
        self.store: Store
        self.store = open_store(config, self.names, self.segment_dims, clock)
        # metric -> (store index, spec, low, high, tiny): what record()'s fast paths check
        self._metric_info = {m: (self.store.metric_index[m], spec, *value_range(spec))
                             for m, spec in config.metrics.items()}
        self._expose_unit = self.store.expose_unit  # bound once: the A/B hot path
        self.context = RouteContext(self.names, self.models, self.names.index(self.control),
                                    self._prefix, self.store, clock, self._unit_level,
                                    config.missing_unit, unit_sources(config))
        self.tick: Callable[[], None] | None = None  # the feedback hook (see subscribe)
        # bandit mode (routing/bandit.py): available when the config names a reward metric
        self.bandit: BanditRouter | None = None
        if config.reward is not None:  # loaded only then: the bandit brings numpy and scipy
            from modelrouter.routing.bandit import BanditRouter

            seeds = [self._rng.getrandbits(63) for _ in range(3)]  # reproducible, seeded rng
            self.bandit = BanditRouter(config.bandit_config, self.context, seeds,
                                       name=config.experiment)
        self.state = RoutingState(self.names, self.control, config, self.store, clock,
                                  self.bandit, candidates=candidates)  # shadows, held
        if self.bandit is not None:
            self.bandit.bind(self.state.refresh_bandit)
            if self.state.mode == "bandit":
                self.bandit.start()
        if self.store.shared:  # every worker follows the shared routing state (shared.py)
            self.store.watch(self.state.sync, self._prefix)
        # what the compiled route_checked reads (routing/experiment_c.pyx), when it was built
        self._core = None if _compiled is None else _compiled.new_core(self)
        renew(self, Experiment._after_fork)

    def _after_fork(self) -> None:
        """A forked child (gunicorn --preload) issues decision ids of its own: the parent's
        would collide between workers (feedback and forwarded values to the wrong one)."""
        self._prefix = os.urandom(4).hex() + "-"
        self.context = dataclasses.replace(self.context, prefix=self._prefix)
        if self.bandit is not None:
            self.bandit.ctx = self.context
        if self.store.shared:
            self.store.watch(self.state.sync, self._prefix)

    def subscribe(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` after every feedback event (the guardrail monitor's tick). It runs
        on the caller's thread, so it must be O(1) and never block."""
        previous = self.tick
        if previous is None:
            self.tick = hook
        else:
            def both() -> None:
                previous()
                hook()
            self.tick = both

    @property
    def allocation(self) -> Allocation:
        """The allocation in force (immutable; replaced whole by the routing state)."""
        return self.state.allocation

    @property
    def mode(self) -> Mode:
        """``"ab"`` or ``"bandit"``: how units are routed now."""
        return self.state.mode

    # -- routing --------------------------------------------------------------------------
    def assign(self, unit: str | None, segment: Sequence[str] = ()) -> Decision:
        """Route one request of ``unit`` (None: no unit id) and count its exposure."""
        return self.route(unit, segment)[0]

    def route(self, unit: str | None, segment: Sequence[str] = ()) -> tuple[Decision, int]:
        """:meth:`assign`, also returning the store handle (-1 when not counted).

        ``unit`` must be a valid unit id (:func:`~modelrouter.config.unit_ids.check_unit_id`:
        at most ``max_unit_id_length`` characters, no control, surrogate, format or line
        separator character, no surrounding space), else :class:`UnitIdError`."""
        if unit is not None and (  # printable ASCII within the bound skips the full check
                type(unit) is not str or not 0 < len(unit) <= self._max_unit
                or not unit.isascii() or not unit.isprintable()
                or unit[0] == " " or unit[-1] == " "):
            unit = check_unit_id(unit, self._max_unit)
        return self.route_checked(unit, segment)

    def route_checked(self, unit: str | None, segment: Sequence[str] = ()
                      ) -> tuple[Decision, int]:
        """:meth:`route` for a unit id already validated by the same rule (the ASGI readers
        check it as they read it): the request path does not check it twice."""
        alloc = self.state.allocation  # one read: the whole decision uses one allocation
        if type(alloc) is not Allocation:  # bandit mode: a BanditAllocation (routing/bandit.py)
            return self.bandit.route(unit, segment, alloc)  # type: ignore[union-attr,arg-type]
        now = self.clock()
        if unit is not None and self._unit_level:  # the hot path: a split unit
            codes = self.store.segment_codes(segment) if segment else ()
            seq, i = self._expose_unit(unit, self._bucket, alloc, codes, now)
            p = alloc.propensities[i]
            # tuple.__new__ skips NamedTuple's Python-level __new__ (half the cost)
            return _new_decision(Decision, (
                f"{self._prefix}{seq:x}", self.names[i], self.models[i], unit, p,
                alloc.epoch, "ab", now, True,
                segment if type(segment) is tuple else tuple(segment))), seq
        return self._route_other(unit, segment, alloc, now)

    def _route_other(self, unit: str | None, segment: Sequence[str], alloc: Allocation,
                     now: float) -> tuple[Decision, int]:
        """:meth:`route_checked` in A/B mode off the hot path: a request without a unit id, or
        a request-level experiment (shared by the compiled twin, ``experiment_c.pyx``)."""
        if self._unit_level:  # a split experiment, but this request has no unit id
            def draw() -> tuple[int, float]:
                i = alloc.choose(self._rng.random())
                return i, alloc.propensities[i]
            return self.context.missing(draw, alloc.epoch, "ab", segment, now)
        # request level: every request is its own unit, randomised
        i = alloc.choose(self._rng.random())
        codes = self.store.segment_codes(segment) if segment else ()
        seq = self.store.expose(None, i, alloc.propensities[i], alloc.epoch, codes, now)
        return Decision(f"{self._prefix}{seq:x}", self.names[i], self.models[i], None,
                        alloc.propensities[i], alloc.epoch, "ab", now, True,
                        tuple(segment)), seq

    # -- feedback -------------------------------------------------------------------------
    def _metric(self, metric: str) -> tuple[int, MetricSpec]:
        try:
            return self.store.metric_index[metric], self.config.metrics[metric]
        except KeyError:
            raise UnknownMetricError(f"metric {metric!r} is not declared; declared metrics are "
                                     f"{sorted(self.config.metrics)}") from None

    def seq_of(self, decision_id: str, prefix: str | None = None) -> int:
        """The store sequence number of one of this process's decision ids (of the process
        whose ids start with ``prefix``, when given)."""
        prefix = self._prefix if prefix is None else prefix
        if type(decision_id) is not str or not decision_id.startswith(prefix):
            raise UnknownDecisionError(f"decision {decision_id!r} was not issued by this router "
                                       "(feedback from other processes needs the signed token)")
        digits = decision_id[len(prefix):]
        # ASCII hex digits only (case-insensitive), without the sign, spaces, "_", "0x" or
        # leading zeros that int() would accept: one decision has one spelling
        if not digits.isalnum() or not digits.isascii() or (digits[0] == "0" and len(digits) > 1):
            raise UnknownDecisionError(f"decision {decision_id!r} is malformed")
        try:
            return int(digits, 16)
        except ValueError:
            raise UnknownDecisionError(f"decision {decision_id!r} is malformed") from None

    def record(self, decision: str | Decision, metric: str, value: object) -> None:
        """Record ``value`` of ``metric`` for a decision (its id or the Decision itself)."""
        info = self._metric_info.get(metric)
        if info is None:
            self._metric(metric)  # raises the precise UnknownMetricError
        index, spec, low, high, tiny = info  # type: ignore[misc]
        # fast paths for plain floats and ints in the metric's range (in_range inlined; NaN
        # fails every comparison); bool, numpy scalars and everything refused: check_value
        t = type(value)
        if t is float and (tiny <= value <= high or value == 0.0  # type: ignore[operator]
                           or low <= value <= -tiny):  # type: ignore[operator]
            v: float = value  # type: ignore[assignment]
        elif t is int and (tiny <= value <= high or value == 0  # type: ignore[operator]
                           or low <= value <= -tiny):  # type: ignore[operator]
            v = float(value)  # type: ignore[arg-type]
        else:
            v = check_value(spec, value)
        decision_id = decision.decision_id if isinstance(decision, Decision) else decision
        self.store.record_seq(self.seq_of(decision_id), index, v)
        if self.tick is not None:
            self.tick()

    def record_unit(self, unit: str, metric: str, value: object) -> None:
        """Record ``value`` of ``metric`` for a unit id (user- or session-level experiments)."""
        if not self._unit_level:
            raise FeedbackError("record_unit needs a unit-level experiment; this one "
                                     "randomises requests (level='request'): use record()")
        unit = check_unit_id(unit, self._max_unit)
        index, spec = self._metric(metric)
        v = check_value(spec, value)
        self.store.record_unit(unit, index, v)
        if self.tick is not None:
            self.tick()

    record_covariate = record_covariate  # a unit's pre-exposure value (routing/covariates.py)

    def record_token(self, payload: TokenPayload, metric: str, value: object) -> None:
        """Record feedback for a verified decision token (see :mod:`modelrouter.routing.tokens`).

        Attributed to the decision itself when it is one of this process's and still pending,
        else (user- and session-level experiments) to the token's unit id, so any process
        holding the secret can take the feedback. The token's age is the caller's check.
        """
        if payload.experiment != self.config.experiment:
            raise FeedbackError(f"token is for experiment {payload.experiment!r}, not "
                                f"{self.config.experiment!r}")
        index, spec = self._metric(metric)
        v = check_value(spec, value)
        unit_level = self._unit_level
        if payload.decision_id.startswith(self._prefix):
            try:
                self.store.record_seq(self.seq_of(payload.decision_id), index, v, window=False)
            except UnknownDecisionError:
                if not unit_level or payload.unit_id is None:
                    raise
                self.store.record_unit(payload.unit_id, index, v)
        elif self.store.shared:  # another worker's decision: its pending ring is there
            owner = payload.decision_id[:len(self._prefix)]
            seq = self.seq_of(payload.decision_id, owner)
            if unit_level and payload.unit_id is not None:
                self.store.record_unit(payload.unit_id, index, v)  # the unit's value, here
                if self.bandit is not None:  # its decision's sums and training, there
                    self.store.forward(owner, seq, index, v, False)
            else:
                self.store.forward(owner, seq, index, v, True)
        elif not unit_level or payload.unit_id is None:
            raise UnknownDecisionError(f"decision {payload.decision_id!r} was issued by another "
                                       "process; request-level feedback must reach the process "
                                       "that routed it (or use a shared store)")
        else:
            self.store.record_unit(payload.unit_id, index, v)
        if self.tick is not None:
            self.tick()

    # -- rollback (the guardrail monitor decides; the routing state holds it) ----------------
    @property
    def rolled_back(self) -> bool:
        """Whether a rollback holds all traffic on the control (until :meth:`resume`)."""
        return self.state.rolled_back

    def rollback(self, reasons: Sequence[str]) -> RollbackEvent | None:
        """Send all traffic to the control until :meth:`resume` (None if already held)."""
        return self.state.rollback(reasons)

    def resume(self, reason: str = "resumed by an explicit call") -> None:
        """Undo a rollback: route by the weights, mode and arms configured (changed ones too)."""
        self.state.resume(reason)

    @property
    def rollback_events(self) -> tuple[RollbackEvent, ...]:
        """Rollbacks and resumes so far, oldest first."""
        return self.state.events

    def bandit_status(self) -> BanditStatus | None:
        """The bandit's posterior, weights and arms now; None without a reward metric."""
        return self.state.bandit_status()

    # -- durability and scale-out ---------------------------------------------------------
    def flush(self) -> None:
        """Write every buffered delta to the shared store now (no-op in memory)."""
        self.store.flush()

    def close(self) -> None:
        """Stop the bandit's refresh thread (which would otherwise read the store again, on
        a connection nothing closes) and background flushing, and flush what is left."""
        if self.bandit is not None:
            self.bandit.close()
        self.store.close()

    # -- configuration (the routing state applies it atomically) --------------------------
    def configure(self, *, weights: Mapping[str, float] | None = None,
                  mode: str | None = None) -> Allocation:
        """Swap weights (and mode) atomically; starts a new epoch. Returns the new allocation.

        In bandit mode ``weights`` only pause (0) or resume (> 0) arms, the bandit sets the
        shares; switching to A/B without ``weights`` restores the last A/B weights. Requests
        in flight finish under the epoch they started in, so no decision is lost or counted
        twice. During a rollback the change is kept and applies at :meth:`resume`.
        """
        alloc = self.state.configure(weights=weights, mode=mode)
        if self.bandit is not None and self.state.mode == "bandit":
            self.bandit.start()
        return alloc

    def pause_arm(self, variant: str) -> Allocation:
        """Route nothing to ``variant`` from a new epoch on. A/B: its share goes to the others
        in proportion; bandit: the arm leaves the allocation (and stays out after a switch)."""
        return self.state.set_arm(variant, False)

    def resume_arm(self, variant: str) -> Allocation:
        """Undo :meth:`pause_arm`: A/B, the arm's configured share back; bandit, it rejoins."""
        return self.state.set_arm(variant, True)


# the compiled twins of route_checked (routing/experiment_c.pyx) and record
# (routing/feedback_c.pyx), when they were built
install(Experiment, "route_checked", "modelrouter.routing.experiment_c")
install(Experiment, "record", "modelrouter.routing.feedback_c")
