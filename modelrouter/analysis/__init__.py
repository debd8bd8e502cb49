"""Analysis of an experiment: comparisons, and (as they land) sequential tests, segments,
guardrails, verdicts."""

from modelrouter.analysis.always_valid import AlwaysValidAnalysis
from modelrouter.analysis.analysis import Analysis
from modelrouter.analysis.results import ComparisonResult, VariantSummary
from modelrouter.analysis.sequential import SequentialAnalysis
from modelrouter.analysis.srm import SampleRatioCheck

__all__ = [
    "AlwaysValidAnalysis",
    "Analysis",
    "ComparisonResult",
    "SampleRatioCheck",
    "SequentialAnalysis",
    "VariantSummary",
]
