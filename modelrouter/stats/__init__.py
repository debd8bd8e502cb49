"""Pure numerics: two-sample tests, power, sequential designs, corrections, SRM, IPW.

Names load when first used (PEP 562), so that importing one light submodule (``moments``,
``results``: what the store and the routing core need) does not import scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelrouter.stats.adjusted import lin_regression
    from modelrouter.stats.adjusted_result import AdjustedResult
    from modelrouter.stats.always_valid import (
        AlwaysValidResult,
        always_valid_test,
        mixing_variance,
        msprt_pvalues,
    )
    from modelrouter.stats.cuped import ArmSums, cuped_from_sums, cuped_mean, cuped_ratio
    from modelrouter.stats.ipw import IPWDifference, IPWEstimate, ipw_difference, ipw_means
    from modelrouter.stats.moments import Moments
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
        mde_ratio,
        ratio_unit_variance,
        sample_size_means,
        sample_size_proportions,
        sample_size_ratio,
    )
    from modelrouter.stats.power_adjusted import (
        AdjustedSampleSize,
        adjust_sample_size,
        sample_size_means_adjusted,
        sample_size_proportions_adjusted,
        sample_size_ratio_adjusted,
    )
    from modelrouter.stats.results import ConfidenceInterval
    from modelrouter.stats.sequential import (
        SequentialDesign,
        classic_boundaries,
        exit_probabilities,
        spending_boundaries,
        spending_function,
    )
    from modelrouter.stats.sequential_futility import (
        FutilityDesign,
        futility_bounds,
        futility_design,
    )
    from modelrouter.stats.sequential_inference import (
        StagewiseInference,
        repeated_confidence_intervals,
        stagewise_exceedance,
        stagewise_inference,
    )
    from modelrouter.stats.srm import (
        SequentialSRMResult,
        SRMResult,
        sequential_srm_test,
        srm_log_bayes_factor,
        srm_test,
    )

_LAZY = {
    "AdjustedResult": "modelrouter.stats.adjusted_result",
    "AdjustedSampleSize": "modelrouter.stats.power_adjusted",
    "ArmSums": "modelrouter.stats.cuped",
    "adjust_sample_size": "modelrouter.stats.power_adjusted",
    "cuped_mean": "modelrouter.stats.cuped",
    "cuped_from_sums": "modelrouter.stats.cuped",
    "cuped_ratio": "modelrouter.stats.cuped",
    "lin_regression": "modelrouter.stats.adjusted",
    "sample_size_means_adjusted": "modelrouter.stats.power_adjusted",
    "sample_size_proportions_adjusted": "modelrouter.stats.power_adjusted",
    "sample_size_ratio_adjusted": "modelrouter.stats.power_adjusted",
    "ConfidenceInterval": "modelrouter.stats.results",
    "Moments": "modelrouter.stats.moments",
    "AlwaysValidResult": "modelrouter.stats.always_valid",
    "DesignCharacteristics": "modelrouter.stats.power",
    "DetectableEffect": "modelrouter.stats.power",
    "FutilityDesign": "modelrouter.stats.sequential_futility",
    "StagewiseInference": "modelrouter.stats.sequential_inference",
    "futility_bounds": "modelrouter.stats.sequential_futility",
    "futility_design": "modelrouter.stats.sequential_futility",
    "repeated_confidence_intervals": "modelrouter.stats.sequential_inference",
    "stagewise_exceedance": "modelrouter.stats.sequential_inference",
    "stagewise_inference": "modelrouter.stats.sequential_inference",
    "IPWDifference": "modelrouter.stats.ipw",
    "IPWEstimate": "modelrouter.stats.ipw",
    "SRMResult": "modelrouter.stats.srm",
    "SampleSize": "modelrouter.stats.power",
    "SequentialDesign": "modelrouter.stats.sequential",
    "SequentialSRMResult": "modelrouter.stats.srm",
    "SequentialTestResult": "modelrouter.stats.monitoring",
    "adjust_pvalues": "modelrouter.stats.multiple",
    "always_valid_test": "modelrouter.stats.always_valid",
    "classic_boundaries": "modelrouter.stats.sequential",
    "design_characteristics": "modelrouter.stats.power",
    "duration_days": "modelrouter.stats.power",
    "exit_probabilities": "modelrouter.stats.sequential",
    "inflation_factor": "modelrouter.stats.power",
    "ipw_difference": "modelrouter.stats.ipw",
    "ipw_means": "modelrouter.stats.ipw",
    "mde_means": "modelrouter.stats.power",
    "mde_proportions": "modelrouter.stats.power",
    "mde_ratio": "modelrouter.stats.power",
    "mixing_variance": "modelrouter.stats.always_valid",
    "msprt_pvalues": "modelrouter.stats.always_valid",
    "ratio_unit_variance": "modelrouter.stats.power",
    "sample_size_means": "modelrouter.stats.power",
    "sample_size_proportions": "modelrouter.stats.power",
    "sample_size_ratio": "modelrouter.stats.power",
    "sequential_srm_test": "modelrouter.stats.srm",
    "sequential_test": "modelrouter.stats.monitoring",
    "spending_boundaries": "modelrouter.stats.sequential",
    "spending_function": "modelrouter.stats.sequential",
    "srm_log_bayes_factor": "modelrouter.stats.srm",
    "srm_test": "modelrouter.stats.srm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelrouter.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AdjustedResult",
    "AdjustedSampleSize",
    "AlwaysValidResult",
    "ArmSums",
    "ConfidenceInterval",
    "DesignCharacteristics",
    "DetectableEffect",
    "FutilityDesign",
    "IPWDifference",
    "IPWEstimate",
    "Moments",
    "SRMResult",
    "SampleSize",
    "SequentialDesign",
    "SequentialSRMResult",
    "SequentialTestResult",
    "StagewiseInference",
    "adjust_pvalues",
    "adjust_sample_size",
    "always_valid_test",
    "classic_boundaries",
    "cuped_from_sums",
    "cuped_mean",
    "cuped_ratio",
    "design_characteristics",
    "duration_days",
    "exit_probabilities",
    "futility_bounds",
    "futility_design",
    "inflation_factor",
    "ipw_difference",
    "ipw_means",
    "lin_regression",
    "mde_means",
    "mde_proportions",
    "mde_ratio",
    "mixing_variance",
    "msprt_pvalues",
    "ratio_unit_variance",
    "repeated_confidence_intervals",
    "sample_size_means",
    "sample_size_means_adjusted",
    "sample_size_proportions",
    "sample_size_proportions_adjusted",
    "sample_size_ratio",
    "sample_size_ratio_adjusted",
    "sequential_srm_test",
    "sequential_test",
    "spending_boundaries",
    "spending_function",
    "srm_log_bayes_factor",
    "srm_test",
    "stagewise_exceedance",
    "stagewise_inference",
]
