"""Analysis of an experiment: comparisons, and (as they land) sequential tests, segments,
guardrails, verdicts."""

from modelrouter.analysis.always_valid import AlwaysValidAnalysis
from modelrouter.analysis.analysis import Analysis
from modelrouter.analysis.guardrails import GuardrailResult
from modelrouter.analysis.results import ComparisonResult, VariantSummary
from modelrouter.analysis.segments import Heterogeneity, SegmentAnalysis, SegmentResult
from modelrouter.analysis.sequential import SequentialAnalysis
from modelrouter.analysis.srm import SampleRatioCheck
from modelrouter.analysis.verdict import Verdict

__all__ = [
    "AlwaysValidAnalysis",
    "Analysis",
    "ComparisonResult",
    "GuardrailResult",
    "Heterogeneity",
    "SampleRatioCheck",
    "SegmentAnalysis",
    "SegmentResult",
    "SequentialAnalysis",
    "VariantSummary",
    "Verdict",
]
