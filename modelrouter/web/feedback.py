"""Feedback by signed token: verify, validate, de-duplicate, record.

:class:`TokenFeedback` is what ``POST {prefix}/feedback`` and ``ModelRouter.record_token`` use.
Validation (:meth:`TokenFeedback.check`) is separate from recording (:meth:`TokenFeedback.commit`)
so a batch is checked as a whole before anything is recorded.

Idempotency: each ``(decision id, metric)`` is claimed in a :class:`~modelrouter.routing.seen.
SeenSet` (a bounded local set whose entries live for the attribution window, the time a token
is accepted, sized by ``RouterConfig.max_seen_feedback``; with a shared store (Redis) also
claimed in the store, so a replay to any worker of any host counts once). That is one Redis
round trip per feedback item with Redis (the HTTP surface runs it off the event loop), and a
store that cannot be reached refuses the feedback (503) rather than risk counting it twice.
Thread-safe (one lock around the counts).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import NamedTuple

from modelrouter.exceptions import FeedbackError, UnknownMetricError
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.seen import SeenSet
from modelrouter.routing.tokens import Signer, TokenPayload
from modelrouter.routing.values import check_value
from modelrouter.store.forksafe import LEAF, track

__all__ = ["CheckedFeedback", "TokenFeedback"]

_AUTOMATIC = frozenset({"latency_ms", "error"})


class CheckedFeedback(NamedTuple):
    """One verified, validated feedback item, ready to record."""

    payload: TokenPayload
    metric: str
    value: float


class TokenFeedback:
    """Verifies decision tokens and records their feedback exactly once."""

    def __init__(self, experiment: Experiment, secret: str) -> None:
        self.experiment = experiment
        self.signer = Signer(secret, experiment.config.experiment)
        self._window = experiment.config.attribution_window
        self.seen = SeenSet(experiment.store, self._window, experiment.config.max_seen_feedback,
                            experiment.clock)
        self._lock = threading.Lock()
        track(self, self._lock, LEAF)  # a fork waits for a count being written (forksafe.py)
        self.counts: Counter[tuple[str, str]] = Counter()  # (metric, result) -> n

    def check(self, token: object, metric: object, value: object) -> CheckedFeedback:
        """Verify the token and validate metric and value; record nothing.

        Raises :class:`~modelrouter.exceptions.TokenError` (forged, tampered, malformed),
        :class:`~modelrouter.exceptions.ExpiredTokenError` (past the attribution window) or a
        :class:`~modelrouter.exceptions.FeedbackError` naming the field.
        """
        payload = self.signer.verify(token, now=self.experiment.clock(), max_age=self._window)
        config = self.experiment.config
        if payload.experiment != config.experiment:
            raise FeedbackError(f"token: issued for experiment {payload.experiment!r}, this "
                                f"router runs {config.experiment!r}")
        if not isinstance(metric, str):
            raise FeedbackError(f"metric: must be a string, got {type(metric).__name__}")
        spec = config.metrics.get(metric)
        if spec is None or metric in _AUTOMATIC:
            declared = sorted(set(config.metrics) - _AUTOMATIC)
            why = "is recorded automatically" if metric in _AUTOMATIC else "is not declared"
            raise UnknownMetricError(f"metric: {metric[:100]!r} {why}; feedback metrics are "
                                     f"{declared}")
        try:
            v = check_value(spec, value)
        except FeedbackError as exc:
            raise type(exc)(f"value: {exc}") from None
        return CheckedFeedback(payload, metric, v)

    def commit(self, item: CheckedFeedback) -> bool:
        """Record a checked item unless its (decision, metric) was seen; True if recorded."""
        key = f"{item.payload.decision_id}|{item.metric}"
        if not self.seen.claim(key):  # here, or by any worker with a shared store
            with self._lock:
                self.counts[item.metric, "duplicate"] += 1
            return False
        try:
            self.experiment.record_token(item.payload, item.metric, item.value)
        except BaseException:
            self.seen.release(key)
            raise
        with self._lock:
            self.counts[item.metric, "recorded"] += 1
        return True

    def submit(self, token: object, metric: object, value: object) -> bool:
        """:meth:`check` then :meth:`commit`: True if recorded, False if a duplicate."""
        return self.commit(self.check(token, metric, value))

    def rejected(self, metric: object) -> None:
        """Count a refused item (for the Prometheus endpoint)."""
        name = metric if isinstance(metric, str) and metric in self.experiment.config.metrics \
            else "unknown"
        with self._lock:
            self.counts[name, "rejected"] += 1
