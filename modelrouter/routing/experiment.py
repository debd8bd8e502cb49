"""The routing core: assign units to variants, record feedback. Knows nothing of ASGI.

:class:`Experiment` is what :class:`~modelrouter.ModelRouter` calls on every request;
it can be used on its own (a gRPC server, a batch job, a test) the same way.

Thread safety: :meth:`Experiment.assign`, :meth:`Experiment.record` and
:meth:`Experiment.record_unit` may be called at once from the event loop and from worker
threads; the store's lock makes every update exact. :meth:`Experiment.configure` swaps the
allocation as one immutable object, so a concurrent ``assign`` sees the old or the new weights,
never a mix.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelrouter.bandit.status import BanditStatus
from modelrouter.config import MetricSpec, RouterConfig
from modelrouter.exceptions import (
    ConfigError,
    FeedbackError,
    InvalidValueError,
    StoreError,
    UnitIdError,
    UnknownDecisionError,
    UnknownMetricError,
)
from modelrouter.monitor import GuardrailMonitor
from modelrouter.routing.assignment import Allocation, Bucketer
from modelrouter.routing.decision import Decision
from modelrouter.routing.state import RollbackEvent
from modelrouter.routing.tokens import TokenPayload
from modelrouter.store.factory import open_remote_store
from modelrouter.store.looks import Look
from modelrouter.store.memory import MemoryStore
from modelrouter.store.persistence import SnapshotInfo, restore_store, save_store

__all__ = ["Experiment", "check_value"]

_new_decision = tuple.__new__
_EXACT_INT = 2**53  # ints up to here convert to float exactly (larger ones: check_value)


def check_value(spec: MetricSpec, value: object) -> float:
    """Validate a feedback value for a metric; return it as a float or raise InvalidValueError."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)):
        raise InvalidValueError(f"value for metric {spec.name!r} must be a number, "
                                f"got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond the float range (JSON allows 1 followed by 400 zeros)
        raise InvalidValueError(f"value for metric {spec.name!r} must be finite, got an "
                                "integer too large for a float") from None
    if not math.isfinite(v):
        raise InvalidValueError(f"value for metric {spec.name!r} must be finite, got {v!r}")
    if spec.kind == "binary" and v not in (0.0, 1.0):
        raise InvalidValueError(f"value for binary metric {spec.name!r} must be 0 or 1, "
                                f"got {value!r}")
    return v


class Experiment:
    """Variants, the current allocation and the store of one experiment."""

    def __init__(self, variants: Mapping[str, Any], config: RouterConfig | None = None, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 segment_dims: Sequence[str] = ()) -> None:
        config = RouterConfig() if config is None else config
        if not isinstance(variants, Mapping) or len(variants) < 2:
            raise ConfigError(f"variants must map at least two names to predictors, got "
                              f"{variants!r}")
        for name in variants:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"variants: name ({name!r}) must be a non-empty string")
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
        self._config_lock = threading.Lock()
        self._look_lock = threading.Lock()  # one record_look at a time (never the hot path)
        self._unit_level = config.level != "request"
        self.segment_dims = tuple(segment_dims) or tuple(config.segments)
        self.store = MemoryStore(self.names, config.metrics, level=config.level,
                                 max_pending=config.max_pending,
                                 attribution_window=config.attribution_window,
                                 segment_dims=self.segment_dims,
                                 segment_cap=config.segment_cap, clock=clock)
        if config.store != "memory":  # shared state in Redis; a local buffer is the hot path
            self.store = open_remote_store(config, self.names, self.segment_dims, clock)
        self._metric_info = {m: (self.store.metric_index[m], spec, spec.kind == "binary")
                             for m, spec in config.metrics.items()}
        # the memory store routes a split unit in one lock with its bucket cached per row
        self._expose_unit = getattr(self.store, "expose_unit", self._expose_unit_uncached)
        self.guard = GuardrailMonitor(self, every=config.guardrail_check_every,
                                      enabled=config.rollback)
        # the hot path ticks the monitor only when automatic rollback is on
        self.tick: Callable[[], None] | None = self.guard.tick if config.rollback else None
        weights = config.weights or {n: 1.0 / len(self.names) for n in self.names}
        weights = RouterConfig.check_weights(weights, self.names)
        self.allocation = Allocation(self.names, weights, self.control, epoch=0)
        self.mode = config.mode
        # bandit mode (bandit/router.py): available when the config names a reward metric
        self.bandit: Any = None
        if config.reward is not None:
            from modelrouter.routing.bandit import BanditRouter

            self.bandit = BanditRouter(self)  # in bandit mode, epoch 0 gets its weights
        self.store.begin_epoch(0, self.mode, self.allocation.propensities)

    # -- routing --------------------------------------------------------------------------
    def assign(self, unit: str | None, segment: Sequence[str] = ()) -> Decision:
        """Route one request of ``unit`` (None: no unit id) and count its exposure."""
        return self.route(unit, segment)[0]

    def route(self, unit: str | None, segment: Sequence[str] = ()) -> tuple[Decision, int]:
        """:meth:`assign`, also returning the store handle (-1 when not counted)."""
        alloc = self.allocation  # one read: the whole decision uses one allocation
        if type(alloc) is not Allocation:  # bandit mode: a BanditAllocation (bandit/router.py)
            return self.bandit.route(unit, segment, alloc)  # type: ignore[no-any-return]
        now = self.clock()
        if unit is not None and self._unit_level:  # the hot path: a split unit
            codes = self.store.segment_codes(segment) if segment else ()
            seq, i = self._expose_unit(unit, self._bucket, alloc, codes, now)
            p = alloc.propensities[i]
            # tuple.__new__ skips NamedTuple's Python-level __new__ (half the cost)
            return _new_decision(Decision, (
                self._prefix + format(seq, "x"), self.names[i], self.models[i], unit, p,
                alloc.epoch, "ab", now, True,
                segment if type(segment) is tuple else tuple(segment))), seq
        if self._unit_level:  # a split experiment, but this request has no unit id
            policy = self.config.missing_unit
            if policy == "reject":
                raise UnitIdError("request has no unit id "
                                  f"(looked in {self._unit_sources()})")
            self.store.uncounted()
            i = alloc.choose(self._rng.random()) if policy == "random" else \
                self.names.index(self.control)
            p = alloc.propensities[i] if policy == "random" else 1.0
            return Decision("", self.names[i], self.models[i], None, p, alloc.epoch, "ab", now,
                            False, tuple(segment)), -1
        # request level: every request is its own unit, randomised
        i = alloc.choose(self._rng.random())
        codes = self.store.segment_codes(segment) if segment else ()
        seq = self.store.expose(None, i, alloc.propensities[i], alloc.epoch, codes, now)
        return Decision(f"{self._prefix}{seq:x}", self.names[i], self.models[i], None,
                        alloc.propensities[i], alloc.epoch, "ab", now, True,
                        tuple(segment)), seq

    def _expose_unit_uncached(self, unit: str, bucket: Callable[[str], float],
                              alloc: Allocation, codes: tuple[int, ...], now: float
                              ) -> tuple[int, int]:
        """:meth:`MemoryStore.expose_unit` for stores without a bucket cache (Redis)."""
        i = alloc.choose(bucket(unit))
        return self.store.expose(unit, i, alloc.propensities[i], alloc.epoch, codes, now), i

    def _unit_sources(self) -> str:
        c = self.config
        parts = [f"header {c.unit_header!r}" if c.unit_header else "",
                 f"cookie {c.unit_cookie!r}" if c.unit_cookie else "",
                 f"query parameter {c.unit_query!r}" if c.unit_query else "",
                 "the unit_id callable" if c.unit_id else ""]
        return ", ".join(p for p in parts if p)

    # -- feedback -------------------------------------------------------------------------
    def _metric(self, metric: str) -> tuple[int, MetricSpec]:
        try:
            return self.store.metric_index[metric], self.config.metrics[metric]
        except KeyError:
            raise UnknownMetricError(f"metric {metric!r} is not declared; declared metrics are "
                                     f"{sorted(self.config.metrics)}") from None

    def seq_of(self, decision_id: str) -> int:
        """The store sequence number of one of this process's decision ids."""
        if type(decision_id) is not str or not decision_id.startswith(self._prefix):
            raise UnknownDecisionError(f"decision {decision_id!r} was not issued by this router "
                                       "(feedback from other processes needs the signed token)")
        digits = decision_id[len(self._prefix):]
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
        index, spec, binary = info  # type: ignore[misc]
        t = type(value)  # fast paths for plain finite floats and ints; bool and the rest below
        if t is float and value - value == 0.0 and (  # type: ignore[operator]
                not binary or value == 0.0 or value == 1.0):
            v: float = value  # type: ignore[assignment]
        elif t is int and (value == 0 or value == 1 or (
                not binary and -_EXACT_INT <= value <= _EXACT_INT)):  # type: ignore[operator]
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
        index, spec = self._metric(metric)
        v = check_value(spec, value)
        self.store.record_unit(unit, index, v)
        if self.tick is not None:
            self.tick()

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
        elif not unit_level or payload.unit_id is None:
            raise UnknownDecisionError(f"decision {payload.decision_id!r} was issued by another "
                                       "process; request-level feedback must reach the process "
                                       "that routed it (or use a shared store)")
        else:
            self.store.record_unit(payload.unit_id, index, v)
        if self.tick is not None:
            self.tick()

    # -- guardrails and rollback ----------------------------------------------------------
    def check_guardrails(self) -> Sequence[Any]:
        """Run the guardrails now (synchronously); roll back if one fails and rollback is on."""
        return self.guard.check()

    def resume(self, reason: str = "resumed by an explicit call") -> None:
        """Undo an automatic rollback: restore the weights in force before it."""
        self.guard.resume(reason)

    def bandit_status(self) -> BanditStatus | None:
        """The bandit's posterior, weights and arms now; None without a reward metric."""
        return self.bandit.status() if self.bandit is not None else None

    @property
    def rollback_events(self) -> tuple[RollbackEvent, ...]:
        """Rollbacks and resumes so far, oldest first."""
        return tuple(self.guard.events)

    # -- durability and scale-out (modelrouter/store/factory.py) --------------------------
    def flush(self) -> None:
        """Write every buffered delta to the shared store now (no-op in memory)."""
        flush = getattr(self.store, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Stop background flushing and flush what is left (no-op in memory)."""
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def _memory_store(self, verb: str) -> MemoryStore:
        if not isinstance(self.store, MemoryStore):
            raise StoreError(f"{verb} works on the in-memory store; this experiment uses "
                             f"{type(self.store).__name__} (Redis persists itself: RDB or AOF)")
        return self.store

    def save(self, path: str | os.PathLike[str]) -> SnapshotInfo:
        """Snapshot the in-memory statistics to ``path`` (atomic; see store/persistence.py)."""
        return save_store(self._memory_store("save()"), path, experiment=self.config.experiment)

    def restore(self, path: str | os.PathLike[str]) -> SnapshotInfo:
        """Replace the statistics with a snapshot's (all or nothing; StoreError if refused).

        Routing continues from the restored epochs: if the current weights and mode equal
        those of the last restored epoch, in that epoch; otherwise a new epoch starts after it.
        """
        store = self._memory_store("restore()")
        with self._config_lock:
            info = restore_store(store, path, experiment=self.config.experiment)
            epochs = store.epochs()
            last = epochs[-1] if epochs else None
            if last is not None and (last.weights != self.allocation.propensities
                                     or last.mode != self.mode):
                new = self._allocation_at(max(e.epoch for e in epochs) + 1)
                store.begin_epoch(new.epoch, self.mode, new.propensities)
                self.allocation = new
            elif last is not None:
                self.allocation = self._allocation_at(last.epoch)
        return info

    def _allocation_at(self, epoch: int) -> Allocation:
        """The current weights at ``epoch`` (config lock held); in bandit mode the bandit's
        own allocation, so routing stays bandit routing."""
        if self.mode == "bandit" and self.bandit is not None:
            return self.bandit.at_epoch(epoch)  # type: ignore[no-any-return]
        return Allocation(self.names, self.allocation.weights, self.control, epoch=epoch)

    # -- sequential looks -----------------------------------------------------------------
    def record_look(self, metric: str | None = None, *, variant: str | None = None) -> Look:
        """Record an official look of the plan's sequential test and return it.

        The look (time, information rate, z, boundary given the earlier looks, alpha spent,
        decision) becomes part of the store's state, so later boundaries account for it.
        ``metric`` defaults to the config's primary; raises AnalysisError without a plan or
        when nothing changed since the last look. Off the hot path: it snapshots the store.
        """
        from modelrouter.analysis import Analysis
        from modelrouter.analysis.sequential import make_look

        with self._look_lock:
            look = make_look(Analysis.from_experiment(self), metric, variant, self.clock())
            self.store.add_look(look)
        return look

    # -- configuration --------------------------------------------------------------------
    def configure(self, *, weights: Mapping[str, float] | None = None,
                  mode: str | None = None) -> Allocation:
        """Swap weights (and mode) atomically; starts a new epoch. Returns the new allocation.

        In bandit mode ``weights`` only pause (0) or resume (> 0) arms, the bandit sets the
        shares (see :meth:`BanditRouter.configure`); switching to A/B without ``weights``
        restores the last A/B weights. Requests in flight finish under the epoch they started
        in, so no decision is lost or counted twice.
        """
        new_mode = self.mode if mode is None else mode
        if new_mode == "bandit":
            if self.bandit is None:
                raise ConfigError("mode ('bandit') needs a reward metric: set "
                                  "RouterConfig(reward=<a declared metric>)")
            return self.bandit.configure(weights)  # type: ignore[no-any-return]
        with self._config_lock:
            new_mode = self.mode if mode is None else mode  # again, under the lock
            if new_mode not in ("ab", "bandit"):
                raise ConfigError(f"mode ({new_mode!r}) must be one of 'ab', 'bandit'")
            base = self.allocation.weights if self.mode == "ab" else self.bandit.ab_weights
            w = base if weights is None else RouterConfig.check_weights(weights, self.names)
            alloc = Allocation(self.names, w, self.control, epoch=self.allocation.epoch + 1)
            self.store.begin_epoch(alloc.epoch, new_mode, alloc.propensities)
            self.allocation = alloc
            if self.bandit is not None:  # A/B routing from now on (a plain Allocation)
                self.bandit.deactivate()
            self.mode = new_mode  # type: ignore[assignment]  # validated above
            return alloc

    def pause_arm(self, variant: str) -> Allocation:
        """Route nothing to ``variant`` from a new epoch on. A/B: its share goes to the others
        in proportion; bandit: the arm leaves the allocation (and stays out after a switch)."""
        return self._set_arm(variant, False)

    def resume_arm(self, variant: str) -> Allocation:
        """Undo :meth:`pause_arm`. A/B: the arm gets back its configured share, the others
        shrinking in proportion; bandit: the arm rejoins the allocation."""
        return self._set_arm(variant, True)

    def _set_arm(self, variant: str, active: bool) -> Allocation:
        if variant not in self.names:
            raise ConfigError(f"variant ({variant!r}) must be one of {list(self.names)!r}")
        if self.mode == "bandit" and self.bandit is not None:
            self.bandit.set_active(variant, active)
            return self.allocation
        w = dict(self.allocation.weights)
        if (w[variant] > 0) == active:
            return self.allocation  # already so
        rest = math.fsum(x for v, x in w.items() if v != variant)
        if not active and rest <= 0:
            raise ConfigError(f"variant ({variant!r}) is the only one with traffic; it cannot "
                              "be paused")
        if active and w[variant] <= 0:
            share = (self.config.weights or {}).get(variant) or 1.0 / len(self.names)
            w = {v: share if v == variant else x * (1.0 - share) / rest for v, x in w.items()}
        elif not active:
            w = {v: 0.0 if v == variant else x / rest for v, x in w.items()}
        total = math.fsum(w.values())
        alloc = self.configure(weights={v: x / total for v, x in w.items()}, mode="ab")
        if self.bandit is not None:
            self.bandit.set_active(variant, active)
        return alloc
