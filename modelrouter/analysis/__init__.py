"""Analysis of an experiment: comparisons, and (as they land) sequential tests, segments,
guardrails, verdicts."""

from modelrouter.analysis.analysis import Analysis
from modelrouter.analysis.results import ComparisonResult, VariantSummary

__all__ = ["Analysis", "ComparisonResult", "VariantSummary"]
