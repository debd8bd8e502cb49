"""`ModelRouter`: the composition root. It builds the experiment, the request path and the
HTTP surface, and offers the public API (feedback, control plane, analysis, persistence).

The request path itself lives in :mod:`modelrouter.asgi.middleware`; this module is the only
one that knows every layer, so nothing below it imports upwards.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.asgi.middleware import RoutingMiddleware
from modelrouter.asgi.types import ASGIApp
from modelrouter.config import RouterConfig
from modelrouter.config.rollout import Rollout
from modelrouter.config.store import redact_url
from modelrouter.exceptions import (
    AnalysisError,
    ConfigError,
    InvalidValueError,
    UnknownDecisionError,
)
from modelrouter.experiment import Experiment
from modelrouter.routing.decision import Decision
from modelrouter.routing.seen import SeenSet
from modelrouter.shadow_setup import (
    arms_with_shadows,
    persist_shadows,
    shadow_runner,
    share_shadows,
)

if TYPE_CHECKING:  # loaded when used: importing the router must stay cheap (no scipy)
    import numpy as np

    from modelrouter.analysis import Analysis, GuardrailResult
    from modelrouter.routing.shadow_sharing import ShadowSharing
    from modelrouter.routing.shadows import ShadowRunner
    from modelrouter.store.looks import Look
    from modelrouter.store.persistence import SnapshotInfo
    from modelrouter.web.surface import HTTPSurface

__all__ = ["ModelRouter"]

# a decision id as Experiment issues it: the process prefix (8 hex digits and "-") and the
# sequence number in hex without leading zeros (routing/experiment.py, seq_of)
_DECISION_ID = re.compile(r"[0-9a-f]{8}-(0|[1-9a-f][0-9a-f]*)")


class ModelRouter(RoutingMiddleware):
    """Pure ASGI middleware routing each HTTP request of ``app`` to one of ``variants``.

    ``variants`` maps names to predictors (any object: a scikit-learn estimator, a callable) or
    to ASGI apps (wrap them in :class:`ASGIVariant`; Starlette/FastAPI apps are detected). The
    first variant is the control unless ``config.control`` names another.

    ``shadows`` maps names to models evaluated on live traffic and never served: predictors
    (``decision.predict(X)`` hands them the same ``X``: routing/shadows.py) or, all of them,
    ASGI apps, to which each shadowed request is replayed after its response was sent; then
    ``extract_prediction(body: bytes)`` reads the prediction out of each response body, the
    served one and the shadows' (asgi/shadow_replay.py).
    """

    experiment: Experiment  # the routing core with monitoring and looks
    surface: HTTPSurface | None  # the HTTP surface (the request path sees an ASGI app)
    shadows: ShadowRunner | None  # shadow evaluation (routing/shadows.py), None without shadows

    def __init__(self, app: ASGIApp, variants: Mapping[str, Any],
                 config: RouterConfig | Mapping[str, Any] | None = None, *,
                 timer: Callable[[], float] = time.perf_counter,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 segment_dims: Sequence[str] = (),
                 shadows: Mapping[str, Any] | None = None,
                 extract_prediction: Callable[[bytes], Any] | None = None) -> None:
        if config is None:
            config = RouterConfig()
        elif isinstance(config, Mapping):  # the [router] table of a TOML file, as a dict
            config = RouterConfig.from_dict(config)
        elif not isinstance(config, RouterConfig):
            raise ConfigError(f"config ({type(config).__name__}) must be a RouterConfig or a "
                              "mapping of its fields")
        arms = arms_with_shadows(variants, shadows, config)  # shadows: arms held at weight 0
        experiment = Experiment(arms, config, clock=clock, rng=rng, segment_dims=segment_dims,
                                candidates=() if shadows is None else tuple(shadows))
        super().__init__(app, experiment, timer=timer)
        self._seen: SeenSet | None = None  # record(idempotency_key=...): built on first use
        self._shadow_sharing: ShadowSharing | None = None  # shadows across workers
        self.rollout: RolloutMonitor | None = None
        if shadows is not None:  # evaluated, never served: decision.predict feeds them
            runner = self.shadows = shadow_runner(shadows, config, self.experiment, timer,
                                                   extract_prediction)
            if runner.replay:  # ASGI-app shadows: the middleware replays the requests
                from modelrouter.asgi.shadow_replay import ShadowReplay, shadow_apps

                apps = shadow_apps(shadows, extract_prediction)
                assert apps is not None and extract_prediction is not None
                self.replay = ShadowReplay(apps, runner, extract_prediction)
            # at shutdown: refuse new shadow work, drop what is queued (never waits for it)
            self.lifecycle.closers.append(lambda: runner.shutdown(wait=False))
            if self.experiment.store.shared:  # then publish this worker's statistics
                sharing = self._shadow_sharing = share_shadows(runner, config,
                                                                 self.experiment)
                self.lifecycle.closers.append(sharing.close)
            else:  # memory: the statistics go into the snapshot file (store/extras.py)
                persist_shadows(runner, self.experiment)
        elif extract_prediction is not None:
            raise ConfigError("extract_prediction needs shadows that are ASGI apps "
                              "(ModelRouter(..., shadows={name: app}))")
        if isinstance(config.rollout, Rollout):  # the automatic rollout, woken by events
            from modelrouter.rollout_monitor import RolloutMonitor

            monitor = self.rollout = RolloutMonitor(
                self.experiment, config.rollout, self.analysis,
                every=config.guardrail_check_every)
            self.experiment.subscribe(monitor.tick)
        # HTTP surface under the prefix (feedback, admin API, dashboard, metrics): only when
        # configured, so an unconfigured router pays nothing for it on the routed path
        if config.secret or config.admin_token or config.metrics_public:
            from modelrouter.web.surface import HTTPSurface

            self.surface = HTTPSurface(self)

    def __repr__(self) -> str:
        c = self.config
        return (f"ModelRouter(experiment={c.experiment!r}, mode={self.experiment.mode!r}, "
                f"variants={list(self.experiment.names)!r}, level={c.level!r}, "
                f"store={redact_url(c.store)!r})")

    # -- public API (delegates to the routing core) -----------------------------------------
    @classmethod
    def from_config(cls, path: str, app: ASGIApp | None = None,
                    variants: Mapping[str, Any] | None = None) -> ModelRouter:
        """Build from a TOML file: ``[router]`` is the config, ``[variants]`` maps names to
        ``"package.module:attribute"`` import paths (or pass ``variants``/``app`` directly)."""
        from modelrouter.config import load_toml
        from modelrouter.loader import import_object

        data = load_toml(path)
        config = RouterConfig.from_toml(path)
        if variants is None:
            spec = data.get("variants")
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{path}: [variants] table is missing; pass variants=")
            variants = {name: import_object(f"variants.{name}", target)
                        for name, target in spec.items()}
        if app is None:
            target = data.get("app")
            if not isinstance(target, str):
                raise ConfigError(f"{path}: app ('package.module:attribute') is missing; "
                                  "pass app=")
            app = import_object("app", target)
        return cls(app, variants, config)

    def record(self, decision: str | Decision, metric: str, value: object, *,
               idempotency_key: str | None = None) -> bool:
        """Record feedback for a decision (its id or the Decision), also long after the
        response (within the attribution window). Returns True when recorded.

        Without ``idempotency_key`` every call counts (two calls for the same decision and
        metric add two values, as two events should). With one, a key already recorded within
        the attribution window is not counted again and the call returns False: by this
        process, or with a shared store (Redis) by any worker (the key is claimed there, one
        round trip). The same set makes token feedback idempotent (routing/seen.py).
        """
        if idempotency_key is None:
            self.experiment.record(decision, metric, value)
            return True
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 256:
            raise ConfigError(f"idempotency_key ({str(idempotency_key)[:60]!r}) must be a "
                              "string of 1 to 256 characters")
        key = "record|" + idempotency_key
        seen = self._seen
        if seen is None:
            cfg = self.experiment.config
            seen = self._seen = SeenSet(self.experiment.store, cfg.attribution_window,
                                        cfg.max_seen_feedback, self.experiment.clock)
        if not seen.claim(key):
            return False
        try:
            self.experiment.record(decision, metric, value)
        except BaseException:
            seen.release(key)
            raise
        return True

    def record_unit(self, unit_id: str, metric: str, value: object) -> None:
        """Record feedback for a unit id (user- or session-level experiments)."""
        self.experiment.record_unit(unit_id, metric, value)

    def record_covariate(self, unit_id: str, name: str, value: object) -> None:
        """Record a unit's pre-exposure covariate (declared by a metric's ``covariates``), for
        CUPED-adjusted comparisons; first value wins, and one recorded after the unit's first
        exposure is not used (routing/covariates.py, docs/statistics.md)."""
        self.experiment.record_covariate(unit_id, name, value)

    def record_token(self, token: str, metric: str, value: object) -> bool:
        """Record feedback by a signed decision token, as ``POST {prefix}/feedback`` does
        (any process with the secret); False when this (decision, metric) was already seen."""
        if self.surface is None or self.surface.feedback is None:
            raise ConfigError("record_token needs a secret: RouterConfig(secret=...) or "
                              "$MODELROUTER_SECRET")
        return bool(self.surface.feedback.submit(token, metric, value))

    def configure(self, *, weights: Mapping[str, float] | None = None,
                  mode: str | None = None) -> None:
        """Change weights or mode atomically while requests are in flight."""
        self.experiment.configure(weights=weights, mode=mode)

    def reload(self, path: str) -> None:
        """Apply ``mode``, ``weights`` and rotated secrets from the ``[router]`` table of a TOML
        file, all of it or nothing (the run-time switch through the config file).

        ``secret`` and ``admin_token`` (from the file, or the environment when the file has
        none) may be rotated: when ``reload`` returns, the new values are in force and the old
        ones are refused everywhere (the old admin token as bearer or dashboard cookie: 403;
        tokens signed with the old secret: 403, so feedback on responses served before the
        rotation is lost; responses carry tokens signed with the new secret). Adding or removing
        one (None <-> a value) would add or remove endpoints: refused, restart. Every other
        field needs a restart and is refused (ConfigError naming it) when it differs from the
        running config; a refused reload changes nothing.
        """
        from modelrouter.config import load_toml

        data = load_toml(path)
        table = data.get("router", data)
        fresh = RouterConfig.from_dict({k: v for k, v in table.items() if k != "variants"})
        runtime = ("mode", "weights", "secret", "admin_token")  # secrets: compared below
        live = {k: v for k, v in fresh.as_dict().items() if k not in runtime}
        running = {k: v for k, v in self.config.as_dict().items() if k not in runtime}
        changed = sorted(k for k in live if live[k] != running.get(k))
        if changed:
            raise ConfigError(f"{path}: {changed[0]} differs from the running config; only "
                              "mode, weights, secret and admin_token can change at run time "
                              "(restart for the rest)")
        rotated: dict[str, str] = {}
        for name in ("secret", "admin_token"):
            old, new = getattr(self.config, name), getattr(fresh, name)
            if (old is None) != (new is None):
                raise ConfigError(f"{path}: {name} is {'set' if old is None else 'not set'} "
                                  f"but the running config has {'none' if old is None else 'one'}"
                                  f"; adding or removing it turns endpoints on or off: restart "
                                  f"to apply it")
            if new is not None and new != old:
                rotated[name] = new
        new_config = self.config.replace(**rotated) if rotated else self.config
        self.experiment.configure(weights=fresh.weights, mode=fresh.mode)  # may refuse: no change
        if rotated:  # nothing below can fail: the values are validated
            if self.surface is not None:
                self.surface.rotate(**rotated)
            if "secret" in rotated:
                self.rotate_secret(rotated["secret"])
            self.config = self.experiment.config = new_config

    def pause_arm(self, variant: str) -> None:
        """Stop routing to ``variant`` (its share goes to the others); see :meth:`resume_arm`."""
        self.experiment.pause_arm(variant)

    def resume_arm(self, variant: str) -> None:
        """Route to a paused ``variant`` again."""
        self.experiment.resume_arm(variant)

    def promote(self, name: str, stage: str = "canary", share: float | None = None) -> None:
        """Serve shadow ``name`` at ``share`` from a new epoch on (``stage``: canary, ab or
        ship); see :meth:`Experiment.promote <modelrouter.experiment.Experiment.promote>`
        and docs in modelrouter/routing/promotion.py. ConfigError, and no change, when
        refused (unknown shadow, share outside (0, 1), already there, bandit mode, held)."""
        self.experiment.promote(name, stage, share)

    def check_guardrails(self) -> tuple[GuardrailResult, ...]:
        """Run the guardrails now; with ``rollback=True`` a failing one moves all traffic to
        the control. Also runs automatically every ``guardrail_check_every`` feedback events,
        in a background thread."""
        return self.experiment.check_guardrails()

    def resume(self, reason: str = "resumed by an explicit call") -> None:
        """Undo an automatic rollback: restore the weights in force before it."""
        self.experiment.resume(reason)

    def flush(self) -> None:
        """Write every buffered delta to the shared store now (Redis); no-op in memory.
        Also done every ``flush_seconds`` in the background and on lifespan shutdown."""
        self.experiment.flush()

    def save(self, path: str) -> SnapshotInfo:
        """Snapshot the in-memory statistics to ``path`` atomically; returns SnapshotInfo."""
        return self.experiment.save(path)

    def restore(self, path: str) -> SnapshotInfo:
        """Replace the statistics with the snapshot at ``path``; StoreError (and no change)
        if it is corrupted, truncated or belongs to another experiment."""
        return self.experiment.restore(path)

    @classmethod
    def load(cls, path: str, app: ASGIApp, variants: Mapping[str, Any],
             config: RouterConfig | None = None, *,
             timer: Callable[[], float] = time.perf_counter,
             clock: Callable[[], float] = time.time, rng: random.Random | None = None,
             segment_dims: Sequence[str] = ()) -> ModelRouter:
        """A new router whose statistics are restored from the snapshot at ``path``."""
        router = cls(app, variants, config, timer=timer, clock=clock, rng=rng,
                     segment_dims=segment_dims)
        router.restore(path)
        return router

    def reward_counters(self, metric: str) -> dict[str, np.ndarray]:
        """Global per-variant additive counters of ``metric`` (``n``, ``sum``, ``sumsq``,
        ``successes``, ``failures``): every worker's data when the store is Redis."""
        from modelrouter.store.protocol import reward_counters

        return reward_counters(self.experiment.store.snapshot(), metric)

    def record_look(self, metric: str | None = None, *, variant: str | None = None) -> Look:
        """Record an official look of the plan's sequential test (see
        :meth:`Experiment.record_look`); later boundaries account for it."""
        return self.experiment.record_look(metric, variant=variant)

    def analysis(self) -> Analysis:
        """An :class:`~modelrouter.analysis.Analysis` of a consistent snapshot of the store
        (and of the shadows' statistics: ``analysis().shadow(name)``)."""
        from modelrouter.analysis import Analysis

        analysis = Analysis.from_experiment(self.experiment)
        if self.shadows is not None:  # every worker's shadows with a shared store
            sharing = self._shadow_sharing
            analysis.shadow_data = (self.shadows.log.snapshot() if sharing is None
                                    else sharing.snapshot())
            analysis.stages = self.experiment.stages
        return analysis

    def record_label(self, decision: str | Decision, y_true: object) -> bool:
        """The ground truth of a shadowed decision (its id, its signed token or the
        Decision), also hours later: it pairs the served and the shadows' outputs with it
        for ``analysis().shadow(name)``. True when attached; False, and counted, for a
        decision that is not among the recent shadowed ones (not shadowed, evicted, another
        process) or already labelled. With a shared store, a label for another worker's
        decision is handed to that worker (True: forwarded; routing/shadow_sharing.py). A
        malformed id or a bad token raises."""
        if self.shadows is None:
            raise ConfigError("record_label needs shadows: ModelRouter(..., shadows={...})")
        if isinstance(decision, Decision):
            decision_id = decision.decision_id
        elif isinstance(decision, str) and _DECISION_ID.fullmatch(decision):
            decision_id = decision  # this process's or another's: an unknown one is counted
        elif self._signer is not None:  # a signed token (TokenError when it is not one)
            decision_id = self._signer.verify(decision).decision_id
        else:
            raise UnknownDecisionError(f"decision {str(decision)[:80]!r} is malformed (not a "
                                       "decision id; tokens need a secret)")
        target = self._shadow_sharing or self.shadows.log
        try:
            attached = target.label(decision_id, y_true)
        except AnalysisError as exc:
            raise InvalidValueError(str(exc)) from None
        if self.experiment.tick is not None:  # a label is evidence: the monitors count it
            self.experiment.tick()
        return attached
