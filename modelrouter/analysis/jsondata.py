"""Plain JSON data from analysis results: :mod:`modelrouter.stats.jsondata`, re-exported under
the name the analysis modules import."""

from __future__ import annotations

from modelrouter.stats.jsondata import JSON, finite_or_none, plain

__all__ = ["JSON", "finite_or_none", "plain"]
