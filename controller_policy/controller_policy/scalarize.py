"""Scalar rewards from several objectives, for strategies that learn from one number.

The RL controllers (REINFORCE, PPO) need a scalar reward; these turn a quality
(accuracy) and cost measures (latency, FLOPs, parameters) into one.

MnasNet (Tan et al. 2019) [recalled, see docs/multi-objective.md]: reward =
ACC(m) x (LAT(m) / T)^w with w = alpha when LAT(m) <= T and beta otherwise. The
soft constraint is alpha = beta = -0.07 (a model twice as slow must be about 5%
more accurate to tie); the hard constraint is alpha = 0, beta = -1 (no reward for
being faster than the target, a steep penalty past it). With several measures the
factors multiply.

Pure functions, no torch: the loop, the strategies and the benchmark share them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller_policy.pareto import Direction

MNASNET_W = -0.07
"""MnasNet's soft-constraint exponent (alpha = beta)."""
MNASNET_HARD = (0.0, -1.0)
"""MnasNet's hard-constraint exponents (alpha under or at the target, beta over it)."""


class ScalarizeError(ValueError):
    """Values from which no scalar reward can be made (non-positive measure or target)."""


def mnasnet_factor(measure: float, target: float, alpha: float, beta: float) -> float:
    """(measure / target)^w with w = alpha when measure <= target, else beta."""
    if not (math.isfinite(target) and target > 0):
        raise ScalarizeError(f"a target must be a positive number, got {target!r}")
    if not (math.isfinite(measure) and measure > 0):
        raise ScalarizeError(f"a measure must be a positive number, got {measure!r}")
    w = alpha if measure <= target else beta
    return (measure / target) ** w


def mnasnet_reward(
    quality: float,
    measures: Sequence[tuple[float, float]],
    alpha: float = MNASNET_W,
    beta: float = MNASNET_W,
) -> float:
    """quality x prod (measure / target)^w over ``measures`` as (measure, target) pairs."""
    if not math.isfinite(quality):
        raise ScalarizeError(f"the quality must be finite, got {quality!r}")
    reward = float(quality)
    for measure, target in measures:
        reward *= mnasnet_factor(measure, target, alpha, beta)
    return reward


def mnasnet_hard_reward(quality: float, measures: Sequence[tuple[float, float]]) -> float:
    """MnasNet's hard constraint: w = 0 at or under the target, -1 over it."""
    return mnasnet_reward(quality, measures, *MNASNET_HARD)


def weighted_sum(
    values: Sequence[float],
    directions: Sequence[Direction],
    weights: Sequence[float],
    scales: Sequence[float | None],
) -> float:
    """sum of weight x value / scale, minimized values counted negatively.

    ``scales`` (each objective's target, or None for 1) put values of different units
    (accuracy in [0, 1], latency in ms, FLOPs in millions) on comparable footing.
    """
    if not len(values) == len(directions) == len(weights) == len(scales):
        raise ScalarizeError(
            f"{len(values)} values, {len(directions)} directions, {len(weights)} weights "
            f"and {len(scales)} scales must be as many"
        )
    total = 0.0
    for v, d, w, s in zip(values, directions, weights, scales, strict=True):
        if not math.isfinite(v):
            raise ScalarizeError(f"a value must be finite, got {v!r}")
        if s is not None and not (math.isfinite(s) and s > 0):
            raise ScalarizeError(f"a scale must be a positive number, got {s!r}")
        term = w * v / (s if s is not None else 1.0)
        total += term if d == "maximize" else -term
    return total
