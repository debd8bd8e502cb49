"""The cost of sequential looks: inflation factor and operating characteristics of a design.

A group-sequential design with the same alpha and power as a fixed-sample test needs
``inflation_factor`` times its sample size (Jennison & Turnbull, "Group Sequential Methods with
Applications to Clinical Trials", 2000, sec. 2.6; rpact's ``getDesignCharacteristics``). The
planning helpers of :mod:`modelrouter.stats.power` multiply by it when given ``sequential=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtri

from modelrouter.stats.sequential import SequentialDesign

__all__ = ["DesignCharacteristics", "check_power", "design_characteristics", "inflation_factor"]


def check_power(power: float) -> float:
    """``power`` as a float in (0, 1); ValueError repeating the bad value otherwise."""
    if not (isinstance(power, (int, float)) and 0.0 < float(power) < 1.0):
        raise ValueError(f"power ({power!r}) must be in (0, 1)")
    return float(power)


@dataclass(frozen=True, eq=False)
class DesignCharacteristics:
    """Operating characteristics of a sequential design at a target power.

    Sample sizes are relative to the fixed-sample design with the same alpha and power.
    """

    inflation_factor: float
    power: float
    drift: float
    rejection_probabilities: np.ndarray
    expected_sample_size_h0: float
    expected_sample_size_h1: float

    def __repr__(self) -> str:
        rp = ", ".join(f"{p:.4g}" for p in self.rejection_probabilities)
        return (f"DesignCharacteristics(inflation_factor={self.inflation_factor:.5f}, "
                f"power={self.power:g}, drift={self.drift:.5f}, rejection_probabilities=[{rp}], "
                f"expected_sample_size_h0={self.expected_sample_size_h0:.4f}, "
                f"expected_sample_size_h1={self.expected_sample_size_h1:.4f})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields."""
        return {"inflation_factor": self.inflation_factor, "power": self.power,
                "drift": self.drift,
                "rejection_probabilities": self.rejection_probabilities.tolist(),
                "expected_sample_size_h0": self.expected_sample_size_h0,
                "expected_sample_size_h1": self.expected_sample_size_h1}


def _expected_rate(design: SequentialDesign, drift: float) -> float:
    """E[information rate at stopping] under the given drift."""
    up, lo = design.exit_probabilities(drift)
    stop = up + lo
    stop[-1] = 1.0 - stop[:-1].sum()
    return float(stop @ design.information_rates)


def design_characteristics(design: SequentialDesign, power: float = 0.8) -> DesignCharacteristics:
    """Inflation factor, per-look rejection probabilities and expected sample sizes.

    Power counts rejections through the upper boundary only (as rpact's default and the fixed
    formula ``z_(1-alpha/sided) + z_power``), so the inflation factor is a ratio of drifts squared.
    """
    if not isinstance(design, SequentialDesign):
        raise ValueError(f"design ({type(design).__name__}) must be a SequentialDesign")
    pw = check_power(power)
    fixed = float(ndtri(1.0 - design.alpha / design.sided) + ndtri(pw))
    drift = float(brentq(lambda d: design.power(d) - pw, 0.0, 40.0, xtol=1e-10, rtol=1e-12))
    t_max = float(design.information_rates[-1])
    inflation = t_max * (drift / fixed) ** 2
    scale = inflation / t_max  # information rate -> multiple of the fixed sample size
    return DesignCharacteristics(
        inflation_factor=inflation, power=pw, drift=drift,
        rejection_probabilities=design.exit_probabilities(drift)[0],
        expected_sample_size_h0=_expected_rate(design, 0.0) * scale,
        expected_sample_size_h1=_expected_rate(design, drift) * scale)


def inflation_factor(design: SequentialDesign, power: float = 0.8) -> float:
    """Maximum sample size of ``design`` divided by the fixed design's, at equal alpha and power."""
    return design_characteristics(design, power).inflation_factor
