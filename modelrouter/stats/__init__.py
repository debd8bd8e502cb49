"""Pure numerics: two-sample tests, power, sequential designs, corrections, SRM, IPW."""

from modelrouter.stats.always_valid import (
    AlwaysValidResult,
    always_valid_test,
    mixing_variance,
    msprt_pvalues,
)
from modelrouter.stats.ipw import IPWDifference, IPWEstimate, ipw_difference, ipw_means
from modelrouter.stats.monitoring import SequentialTestResult, sequential_test
from modelrouter.stats.multiple import adjust_pvalues
from modelrouter.stats.power import (
    DesignCharacteristics,
    DetectableEffect,
    SampleSize,
    design_characteristics,
    duration_days,
    inflation_factor,
    mde_means,
    mde_proportions,
    sample_size_means,
    sample_size_proportions,
)
from modelrouter.stats.sequential import (
    SequentialDesign,
    classic_boundaries,
    exit_probabilities,
    spending_boundaries,
    spending_function,
)
from modelrouter.stats.srm import SRMResult, srm_test

__all__ = [
    "AlwaysValidResult",
    "DesignCharacteristics",
    "DetectableEffect",
    "IPWDifference",
    "IPWEstimate",
    "SRMResult",
    "SampleSize",
    "SequentialDesign",
    "SequentialTestResult",
    "adjust_pvalues",
    "always_valid_test",
    "classic_boundaries",
    "design_characteristics",
    "duration_days",
    "exit_probabilities",
    "inflation_factor",
    "ipw_difference",
    "ipw_means",
    "mde_means",
    "mde_proportions",
    "mixing_variance",
    "msprt_pvalues",
    "sample_size_means",
    "sample_size_proportions",
    "sequential_test",
    "spending_boundaries",
    "spending_function",
    "srm_test",
]
