"""What the HTTP surface needs from the router that mounts it: :class:`RouterHandle`.

The router (:class:`~modelrouter.ModelRouter`, the composition root) builds the surface with
``HTTPSurface(self)``. The web layer sits below the root, so it must not import the router;
it names the four members it uses in this protocol instead, and any object that has them (the
router, or a test double) can serve the surface and the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # types only: importing the web layer must not load the analysis (scipy)
    from modelrouter.analysis import Analysis
    from modelrouter.config import RouterConfig
    from modelrouter.routing.experiment import Experiment
    from modelrouter.store.looks import Look

__all__ = ["RouterHandle"]


class RouterHandle(Protocol):
    """The router as the HTTP surface sees it: its config and experiment, a fresh analysis,
    and recording an official look of the sequential test."""

    @property
    def config(self) -> RouterConfig:
        """The router's configuration (prefix, secrets, declared metrics)."""
        ...

    @property
    def experiment(self) -> Experiment:
        """The experiment the router routes for (allocation, mode, store, feedback)."""
        ...

    def analysis(self) -> Analysis:
        """An analysis of a consistent snapshot of the experiment's store."""
        ...

    def record_look(self, metric: str | None = None, *, variant: str | None = None) -> Look:
        """Record an official look of the plan's sequential test (see ``POST /looks``)."""
        ...
