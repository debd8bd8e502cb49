"""The arithmetic of A/B weights under pauses: pure functions of the routing state's desired
state (:mod:`modelrouter.routing.state`), kept apart so the state module is about writing.

- :func:`paused_ab`: the A/B weights after pausing or resuming one arm. A paused arm's share
  goes to the other active arms in proportion; a resumed arm gets back its configured share
  (or ``1/K``) and the others shrink in proportion.
- :func:`effective_ab`: what A/B mode routes by: the weights of active arms, renormalised; if
  no active arm has weight, everything goes to the control.

Thread safety: pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from modelrouter.exceptions import ConfigError

__all__ = ["effective_ab", "paused_ab"]


def paused_ab(ab: Mapping[str, float], mask: Sequence[bool], variant: str, active: bool,
              configured: Mapping[str, float]) -> dict[str, float]:
    """The A/B weights once ``variant`` is paused (``active=False``) or resumed; ``mask`` is
    the active arms after the change. ConfigError if the arm is the only one with traffic."""
    names = list(ab)
    rest = math.fsum(w for n, w, a in zip(names, ab.values(), mask) if a and n != variant)
    if not active and rest <= 0:
        raise ConfigError(f"variant ({variant!r}) is the only one with traffic; it cannot be "
                          "paused")
    if not active:  # its share goes to the others in proportion
        return {n: 0.0 if n == variant else w / rest for n, w in ab.items()}
    if ab[variant] > 0:
        return dict(ab)
    share = configured.get(variant) or 1.0 / len(names)  # back at its configured share
    if rest <= 0:
        return {n: 1.0 if n == variant else 0.0 for n in ab}
    return {n: share if n == variant else w * (1.0 - share) / rest for n, w in ab.items()}


def effective_ab(ab: Mapping[str, float], active: Sequence[bool],
                 control: str) -> dict[str, float]:
    """The weights A/B mode routes by (see the module docstring)."""
    w = {n: (x if a else 0.0) for (n, x), a in zip(ab.items(), active)}
    total = math.fsum(w.values())
    if total <= 0:  # every arm with A/B weight is paused: the control serves
        return {n: 1.0 if n == control else 0.0 for n in ab}
    if total != 1.0:
        return {n: x / total for n, x in w.items()}
    return w
