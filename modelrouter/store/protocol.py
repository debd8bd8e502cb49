"""The store protocol: everything the routing core, the middleware and the analysis call on a
store, and :class:`BaseStore`, the base class of every store.

:class:`Store` lists every member, so callers never probe a store with ``getattr``/``hasattr``:
optional behaviour exists on :class:`BaseStore` as a no-op or a clear refusal (the httpx
transport pattern). ``start``/``flush``/``close`` do nothing for a store without background
work; ``stats`` returns a dict (empty here); ``expose_unit`` chooses from the unit's hash bucket
then calls ``expose`` (stores with a bucket cache override it); the bandit members raise
:class:`~modelrouter.exceptions.ConfigError` on a store that cannot track decisions
(``supports_bandit`` is False), so routing calls ``track_decisions`` unconditionally.

:class:`~modelrouter.store.memory.MemoryStore` is the reference implementation;
:class:`~modelrouter.store.redis.store.RedisStore` implements the same protocol with a local
buffer on the request path and Redis as the shared, merged state (a :class:`RemoteStore`).
Hot-path methods (``segment_codes``, ``expose``, ``expose_unit``, ``uncounted``,
``record_seq``, ``record_auto``, ``record_unit``, ``expose_decision``) are O(1), do no I/O and
never block on the network; ``snapshot`` may be slow (it is called off the request path).

Thread safety: every store method may be called from any thread; each store guards its state
with its own lock (see its module). :class:`BaseStore` holds only immutable configuration.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from modelrouter.config.limits import MAX_SEGMENT_CAP, MAX_VARIANTS
from modelrouter.config.metrics import covariate_names
from modelrouter.exceptions import ConfigError
from modelrouter.store.looks import Look
from modelrouter.store.losses import REFUSAL_REASONS, loss_notes
from modelrouter.store.types import EpochInfo, Snapshot
from modelrouter.store.unshared import Unshared

if TYPE_CHECKING:
    import numpy as np

    from modelrouter.config import MetricSpec
    from modelrouter.store.decisions import DecisionTracker
    from modelrouter.store.journal import AutoJournal

__all__ = ["REFUSAL_REASONS", "BaseStore", "Chooser", "RemoteStore", "Store", "loss_notes",
           "metric_specs", "reward_counters"]  # REFUSAL_REASONS, loss_notes: from losses.py


class Chooser(Protocol):
    """What a store needs of an allocation to route a unit (routing's ``Allocation``)."""

    @property
    def propensities(self) -> Sequence[float]:
        """Probability of each variant under this allocation."""

    @property
    def epoch(self) -> int:
        """The epoch the allocation belongs to."""

    def choose(self, u: float) -> int:
        """The variant index of hash bucket ``u`` in ``[0, 1)``."""


@runtime_checkable
class Store(Protocol):
    """Exact sufficient statistics of one experiment (see DESIGN.md, "Store data model")."""

    variants: tuple[str, ...]
    metrics: dict[str, MetricSpec]
    metric_names: tuple[str, ...]
    metric_index: dict[str, int]
    covariate_names: tuple[str, ...]
    level: str
    unit_level: bool
    segment_dims: tuple[str, ...]
    max_pending: int
    supports_bandit: bool
    shared: bool

    # -- epochs and segments ----------------------------------------------------------------
    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        """Record that routing weights changed."""

    def epochs(self) -> tuple[EpochInfo, ...]:
        """Every epoch recorded (by this process, for remote stores), oldest first."""

    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        """Codes of segment values (capped cardinality)."""

    # -- hot path ---------------------------------------------------------------------------
    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = (), now: float | None = None) -> int:
        """Count one routed request; return its decision handle (sequence number)."""

    def expose_unit(self, unit: str, bucket: Callable[[str], float], alloc: Chooser,
                    segment: tuple[int, ...], now: float) -> tuple[int, int]:
        """Choose ``unit``'s variant from its hash bucket and :meth:`expose` it; returns
        ``(seq, variant index)``."""

    def uncounted(self) -> None:
        """Count a request served but left out of the experiment."""

    def record_seq(self, seq: int, metric: int, value: float, *, window: bool = True) -> None:
        """Add a validated value to the decision ``seq``."""

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Record the automatic metrics of a finished request."""

    # The journal ``record_auto`` appends to (store/journal.py), or None: the request path may
    # append ``(seq, latency_ms, error)`` to its ``entries`` itself and call
    # :meth:`fold_journal` once they reach its ``threshold``, as ``record_auto`` would.
    journal: AutoJournal | None

    def fold_journal(self) -> None:
        """Fold the journal's entries now (no-op without a journal)."""

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Add a validated value to a unit (unit level only)."""

    def record_covariate(self, unit: str, index: int, value: float, now: float) -> None:
        """Keep a unit's validated pre-exposure covariate (first value wins; store/covariates)."""

    def has_unit(self, unit: str) -> bool:
        """Whether the unit is known (locally, for remote stores)."""

    # -- looks and reading ------------------------------------------------------------------
    def add_look(self, look: Look) -> None:
        """Record an official look of a sequential test (kept with the statistics)."""

    def snapshot(self) -> Snapshot:
        """A consistent copy of the (merged, for remote stores) statistics."""

    # -- bandit mode (ConfigError where ``supports_bandit`` is False) -----------------------
    def track_decisions(self, tracker: DecisionTracker) -> None:
        """Keep decision-level sums and bandit training counters from now on."""

    def expose_decision(self, unit: str | None, variant: int, propensity: float, epoch: int,
                        segment: tuple[int, ...] = (), now: float | None = None,
                        tag: int = 0) -> int:
        """:meth:`expose` a bandit decision and open it in the decision tracker."""

    def take_training(self) -> tuple[dict[str, np.ndarray], int]:
        """The bandit's training counters and the updates since the last call."""

    def peek_training(self) -> dict[str, np.ndarray]:
        """The bandit's training counters now, without starting a new refresh count."""

    # -- control plane (shared stores; no-ops or None where ``shared`` is False) -------------
    def publish_control(self, record: Mapping[str, Any], expected: int) -> bool:
        """Publish ``record`` (JSON-safe, with its ``epoch``, after ``expected``) if the newest
        published epoch is still ``expected`` (0: none); False if another process published
        first."""

    def read_control(self) -> dict[str, Any] | None:
        """The newest published routing state (with its ``epoch`` and the shared bandit
        ``updates``), None if none was published or the store is not shared."""

    def watch(self, callback: Callable[[], object], owner: str) -> None:
        """Call ``callback()`` on the store's background thread after every flush; ``owner``
        is this process's decision-id prefix (values forwarded to it are applied there)."""

    def claim(self, key: str, ttl: float) -> bool | None:
        """Claim a feedback key for ``ttl`` seconds across processes: True the first time,
        False after; None when the store is not shared (the caller de-duplicates locally)."""

    def unclaim(self, key: str) -> None:
        """Undo :meth:`claim` (the feedback could not be recorded)."""

    def forward(self, owner: str, seq: int, metric: int, value: float, full: bool) -> None:
        """Hand a value for decision ``seq`` of the process whose decision ids start with
        ``owner`` to that process (shared stores): ``full`` records it there as
        ``record_seq`` would; otherwise (the unit's value is already recorded here) only its
        bandit decision tracker takes it."""

    def publish_shadows(self, owner: str, state: str) -> None:
        """Publish this process's shadow statistics (JSON, store/shadow_state.py) under its
        decision-id prefix ``owner``, replacing its previous state (shared stores)."""

    def read_shadows(self) -> dict[str, str]:
        """Every process's published shadow statistics, ``owner -> JSON`` ({} if not shared)."""

    def push_labels(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Hand ground-truth labels ``(owner, decision id, label JSON)`` for other processes'
        shadowed decisions to those processes (shared stores)."""

    def take_labels(self, owner: str) -> list[tuple[str, str]]:
        """Pop the labels other processes handed to ``owner``: ``(decision id, label JSON)``."""

    # -- lifecycle (no-ops for stores without background work) ------------------------------
    def start(self) -> None:
        """Start background work (idempotent)."""

    def flush(self) -> None:
        """Write every buffered delta now; StoreError if the backend cannot be reached."""

    def close(self) -> None:
        """Stop background work and flush what is left."""

    def stats(self) -> dict[str, object]:
        """This process's view of the store's own state (no I/O)."""


@runtime_checkable
class RemoteStore(Store, Protocol):
    """A store whose shared state lives elsewhere (Redis): the hot path only buffers."""

    url: str

    def event_counters(self, metric: str) -> dict[str, np.ndarray]:
        """Global per-variant ``n``/``sum``/``sumsq`` of every recorded event of ``metric``."""


class BaseStore(Unshared, abc.ABC):
    """Shared configuration and the optional members' defaults of every store (see the module
    docstring); subclasses implement the abstract methods."""

    supports_bandit: bool = False
    journal: AutoJournal | None = None  # no journal: automatic metrics through record_auto
    shared: bool = False  # several processes share the state (and the routing control plane)

    def __init__(self, variants: Sequence[str], metrics: Mapping[str, MetricSpec], *,
                 level: str = "user", max_pending: int = 1_000_000,
                 attribution_window: float = 86_400.0, segment_dims: Sequence[str] = (),
                 segment_cap: int = 50, clock: Callable[[], float] = time.time) -> None:
        self.variants = tuple(variants)
        if len(self.variants) > MAX_VARIANTS:  # a unit's variant is a signed byte
            raise ConfigError(f"variants: {len(self.variants)} variants; at most "
                              f"{MAX_VARIANTS} (a unit's variant is stored as a signed byte)")
        if not 2 <= int(segment_cap) <= MAX_SEGMENT_CAP:  # segment codes are 16-bit
            raise ConfigError(f"segment_cap ({segment_cap!r}) must be in [2, "
                              f"{MAX_SEGMENT_CAP}]: segment values are stored as 16-bit codes")
        self.metrics = dict(metrics)
        self.metric_names = tuple(self.metrics)
        self.metric_index = {m: i for i, m in enumerate(self.metric_names)}
        self.covariate_names = covariate_names(self.metrics)  # one column each (covariates.py)
        self.level = level
        self.unit_level = level != "request"
        self.max_pending = int(max_pending)
        self.attribution_window = float(attribution_window)
        self.segment_dims = tuple(segment_dims)
        self.segment_cap = int(segment_cap)
        self.clock = clock
        # per metric: whether x is a 0/1 flag (a max) rather than a sum
        self.any_flags = tuple(self.metrics[m].aggregate == "any" for m in self.metric_names)

    @property
    def pending_capacity(self) -> int:
        """How many decisions can wait for feedback at once (per process)."""
        return self.max_pending

    # -- required ---------------------------------------------------------------------------
    @abc.abstractmethod
    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        """Record that routing weights changed."""

    @abc.abstractmethod
    def epochs(self) -> tuple[EpochInfo, ...]:
        """Every epoch recorded, oldest first."""

    @abc.abstractmethod
    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        """Codes of segment values (capped cardinality)."""

    @abc.abstractmethod
    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = (), now: float | None = None) -> int:
        """Count one routed request; return its decision handle."""

    @abc.abstractmethod
    def uncounted(self) -> None:
        """Count a request served but left out of the experiment."""

    @abc.abstractmethod
    def record_seq(self, seq: int, metric: int, value: float, *, window: bool = True) -> None:
        """Add a validated value to the decision ``seq``."""

    @abc.abstractmethod
    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Record the automatic metrics of a finished request."""

    @abc.abstractmethod
    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Add a validated value to a unit."""

    @abc.abstractmethod
    def has_unit(self, unit: str) -> bool:
        """Whether the unit is known."""

    @abc.abstractmethod
    def add_look(self, look: Look) -> None:
        """Record an official look of a sequential test."""

    @abc.abstractmethod
    def snapshot(self) -> Snapshot:
        """A consistent copy of the statistics."""

    # -- defaults ---------------------------------------------------------------------------
    def expose_unit(self, unit: str, bucket: Callable[[str], float], alloc: Chooser,
                    segment: tuple[int, ...], now: float) -> tuple[int, int]:
        """Choose from ``bucket(unit)``, then :meth:`expose` (for stores without a bucket
        cache); returns ``(seq, variant index)``."""
        i = alloc.choose(bucket(unit))
        return self.expose(unit, i, alloc.propensities[i], alloc.epoch, segment, now), i

    def record_covariate(self, unit: str, index: int, value: float, now: float) -> None:
        """Refused: this store keeps no covariates (ConfigError naming it)."""
        raise ConfigError(f"{type(self).__name__} keeps no covariates: record_covariate needs "
                          "a memory or redis store")

    def track_decisions(self, tracker: DecisionTracker) -> None:
        """Refused: this store cannot track bandit decisions (ConfigError)."""
        raise self._no_bandit(tracker)

    def expose_decision(self, unit: str | None, variant: int, propensity: float, epoch: int,
                        segment: tuple[int, ...] = (), now: float | None = None,
                        tag: int = 0) -> int:
        """Refused: this store cannot track bandit decisions (ConfigError)."""
        raise self._no_bandit(None)

    def take_training(self) -> tuple[dict[str, np.ndarray], int]:
        """Refused: this store cannot track bandit decisions (ConfigError)."""
        raise self._no_bandit(None)

    def peek_training(self) -> dict[str, np.ndarray]:
        """Refused: this store cannot track bandit decisions (ConfigError)."""
        raise self._no_bandit(None)

    def _no_bandit(self, tracker: DecisionTracker | None) -> ConfigError:
        training = tracker.training if tracker is not None else None
        reward = (f"reward ({self.metric_names[training.reward]!r}): "
                  if training is not None else "")
        return ConfigError(f"{reward}bandit mode needs a store that tracks decisions (memory "
                           f"or redis); got a {type(self).__name__}")

    def fold_journal(self) -> None:  # noqa: B027 - an optional member: a no-op by design
        """No journal to fold."""

    def start(self) -> None:  # noqa: B027 - an optional member: a no-op by design
        """Nothing to start."""

    def flush(self) -> None:  # noqa: B027 - an optional member: a no-op by design
        """Nothing buffered."""

    def close(self) -> None:  # noqa: B027 - an optional member: a no-op by design
        """Nothing to stop."""

    def stats(self) -> dict[str, object]:
        """Nothing to report."""
        return {}


def reward_counters(snapshot: Snapshot, metric: str) -> dict[str, np.ndarray]:
    """Additive per-variant counters of a metric's per-unit values, for bandit posteriors.

    Every unit counts (a unit without a value has value 0, as in the analysis), except for
    ``aggregate="mean"`` metrics, where a unit's value is its mean and only units with values
    count. Returns ``n``, ``sum``, ``sumsq`` of the per-unit values (the conversion flag for
    ``aggregate="any"``) and ``successes`` / ``failures`` (for binary metrics). They come from
    the snapshot, so with the Redis store they are the global counters of every worker.
    """
    import numpy as np

    k = len(snapshot.variants)
    spec = snapshot.metrics[metric]
    n: np.ndarray[Any, Any]
    s: np.ndarray[Any, Any]
    ss: np.ndarray[Any, Any]
    if snapshot.units is not None:
        codes, x, y = snapshot.units.variant, snapshot.units.x[metric], snapshot.units.y[metric]
        if spec.aggregate == "any":
            x = (x > 0).astype(np.float64)
        elif spec.aggregate == "mean":
            has = y > 0
            codes, x = codes[has], x[has] / y[has]
        n = np.bincount(codes, minlength=k).astype(np.float64)
        s = np.bincount(codes, weights=x, minlength=k)
        ss = np.bincount(codes, weights=x * x, minlength=k)
    else:  # request level: per-group moments of per-request x merge by addition
        n, s, ss = np.zeros(k), np.zeros(k), np.zeros(k)
        for (variant, _epoch, _seg), (_count, per_metric) in snapshot.groups.items():
            m = per_metric[metric]
            n[variant] += m.n
            s[variant] += m.mean_x * m.n
            ss[variant] += m.m2_x + m.n * m.mean_x * m.mean_x
    return {"n": n, "sum": s, "sumsq": ss, "successes": s.copy(), "failures": n - s}


def metric_specs(metrics: Mapping[str, MetricSpec]) -> dict[str, tuple[str, str]]:
    """(kind, aggregate) per metric: what two stores must agree on to be merged."""
    return {name: (m.kind, str(m.aggregate)) for name, m in metrics.items()}
