"""How a :class:`~modelrouter.ModelRouter` builds its shadows (``shadows={...}``).

A shadow is an arm held at weight 0 until promoted (routing/promotion.py), run in the
background on the served requests' inputs (routing/shadows.py, or replayed requests for
ASGI-app shadows: asgi/shadow_replay.py), its statistics kept in a
:class:`~modelrouter.store.shadows.ShadowLog` that is shared between workers through a shared
store (routing/shadow_sharing.py) or saved in the memory store's snapshots (store/extras.py).
These functions wire those pieces for the router; the shadow machinery itself is imported
only when shadows are given, so a router without shadows loads none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from modelrouter.config import RouterConfig
from modelrouter.config.rollout import Rollout
from modelrouter.exceptions import ConfigError
from modelrouter.experiment import Experiment

if TYPE_CHECKING:
    from modelrouter.routing.shadow_sharing import ShadowSharing
    from modelrouter.routing.shadows import ShadowRunner

__all__ = ["arms_with_shadows", "persist_shadows", "shadow_runner", "share_shadows"]


def arms_with_shadows(variants: Mapping[str, Any], shadows: Mapping[str, Any] | None,
                  config: RouterConfig) -> Mapping[str, Any]:
    """The experiment's arms: the variants, then every shadow (held at weight 0 until
    promoted, routing/promotion.py); the rollout's candidates checked against them."""
    names = list(variants) if isinstance(variants, Mapping) else []
    if shadows is not None and isinstance(variants, Mapping) and isinstance(shadows, Mapping):
        clash = sorted(set(shadows) & set(variants))
        if clash:
            raise ConfigError(f"shadows: {clash[0]!r} is also a variant; a shadow is never "
                              "served")
        variants = {**variants, **shadows}
    if isinstance(config.rollout, Rollout):
        shadow_names = list(shadows) if isinstance(shadows, Mapping) else []
        Rollout.parse(config.rollout.to_dict(), names, shadow_names,
                      control=config.control or (names[0] if names else None))
        served = [c.candidate for c in config.rollout.candidates if c.candidate not in
                  shadow_names]
        if served:
            raise ConfigError(f"rollout.{served[0]}: a rollout candidate must be a shadow "
                              f"(ModelRouter(..., shadows={{{served[0]!r}: model}})); "
                              "served variants change through configure()")
    return variants


def shadow_runner(shadows: Mapping[str, Any], config: RouterConfig, experiment: Experiment,
                   timer: Callable[[], float],
                   extract_prediction: Callable[[bytes], Any] | None) -> ShadowRunner:
    """The shadow runner and its log (imported only when shadows are given)."""
    from modelrouter.asgi.shadow_replay import shadow_apps
    from modelrouter.routing.shadows import ShadowRunner
    from modelrouter.store.shadows import ShadowLog

    if not isinstance(shadows, Mapping) or not shadows:
        raise ConfigError(f"shadows must map names to predictors, got {shadows!r}")
    replay = shadow_apps(shadows, extract_prediction) is not None
    cfg = config.shadow_config
    log = ShadowLog(tuple(shadows), cfg.shadow_kind, max_decisions=cfg.shadow_max_decisions)
    salt = config.salt if config.salt is not None else config.experiment
    return ShadowRunner(shadows, cfg, salt, log, unit_level=config.level != "request",
                        timer=timer, replay=replay)


def share_shadows(runner: ShadowRunner, config: RouterConfig, experiment: Experiment
                    ) -> ShadowSharing:
    """The worker's side of the shared shadow statistics, published after the store's
    flushes (at most every second, or every flush interval if longer)."""
    from modelrouter.routing.shadow_sharing import ShadowSharing

    sharing = ShadowSharing(runner.log, experiment.store, lambda: experiment.context.prefix,
                            publish_every=max(1.0, config.store_config.flush_seconds))
    experiment.store.watch(sharing.sync, experiment.context.prefix)
    return sharing


def persist_shadows(runner: ShadowRunner, experiment: Experiment) -> None:
    """Save the shadows' statistics in the memory store's snapshots, restore them with it."""
    from modelrouter.store.shadow_state import log_state, snapshot_from_state

    log = runner.log
    experiment.extras.register("shadows", lambda: log_state(log.snapshot()),
                               lambda data: log.restore(snapshot_from_state(data)))
