"""Analysis of an experiment: comparisons, sequential and always-valid tests, segments,
guardrails, sample-ratio checks, the bandit, verdicts and reports.

Every question is a function of one frozen :class:`AnalysisData` (see ``data.py``);
:class:`Analysis` is the facade that asks them.
"""

from modelrouter.analysis.always_valid import AlwaysValidAnalysis
from modelrouter.analysis.analysis import Analysis
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import GuardrailResult
from modelrouter.analysis.results import ComparisonResult, PhaseEstimate, VariantSummary
from modelrouter.analysis.segments import Heterogeneity, SegmentAnalysis, SegmentResult
from modelrouter.analysis.sequential import Crossing, SequentialAnalysis
from modelrouter.analysis.srm import SampleRatioCheck
from modelrouter.analysis.verdict import Verdict

__all__ = [
    "AlwaysValidAnalysis",
    "Analysis",
    "AnalysisData",
    "ComparisonResult",
    "Crossing",
    "GuardrailResult",
    "Heterogeneity",
    "PhaseEstimate",
    "SampleRatioCheck",
    "SegmentAnalysis",
    "SegmentResult",
    "SequentialAnalysis",
    "VariantSummary",
    "Verdict",
]
