"""Scalar rewards from several objectives against hand-computed values."""

from __future__ import annotations

import math

import pytest

from controller_policy.scalarize import (
    MNASNET_W,
    ScalarizeError,
    mnasnet_hard_reward,
    mnasnet_reward,
    weighted_sum,
)


def test_the_papers_exponent():
    assert MNASNET_W == -0.07


@pytest.mark.parametrize(("quality", "measures", "expected"), [
    (0.9, [(10.0, 5.0)], 0.8573741982395436),     # 0.9 x 2^-0.07
    (0.9, [(5.0, 5.0)], 0.9),                     # at the target the factor is 1
    (0.9, [(2.5, 5.0)], 0.9 * 1.0497166836230674),  # 0.5^-0.07: faster earns a little
    (0.7, [(3.0, 6.0), (20.0, 10.0)], 0.7),       # 0.5^-0.07 x 2^-0.07 = 1
    (0.6, [], 0.6),
])
def test_mnasnet_soft(quality, measures, expected):
    assert mnasnet_reward(quality, measures) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("quality", "measures", "expected"), [
    (0.8, [(4.0, 5.0)], 0.8),     # under the target: w = 0, no bonus
    (0.8, [(5.0, 5.0)], 0.8),     # at the target counts as under
    (0.8, [(10.0, 5.0)], 0.4),    # over: w = -1, 0.8 x 5/10
    (0.8, [(10.0, 5.0), (1.0, 2.0)], 0.4),
])
def test_mnasnet_hard(quality, measures, expected):
    assert mnasnet_hard_reward(quality, measures) == pytest.approx(expected, rel=1e-12)


def test_mnasnet_custom_exponents():
    # alpha -0.5 under the target: 0.5 x (1/4)^-0.5 = 1.0
    assert mnasnet_reward(0.5, [(1.0, 4.0)], alpha=-0.5, beta=-1.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("measures", "words"), [
    ([(0.0, 5.0)], "measure must be a positive"),
    ([(-1.0, 5.0)], "measure must be a positive"),
    ([(1.0, 0.0)], "target must be a positive"),
    ([(math.inf, 5.0)], "measure must be a positive"),
])
def test_mnasnet_refuses_non_positive_values(measures, words):
    with pytest.raises(ScalarizeError, match=words):
        mnasnet_reward(0.9, measures)


@pytest.mark.parametrize(("values", "directions", "weights", "scales", "expected"), [
    ([0.9, 10.0], ["maximize", "minimize"], [1.0, 0.5], [None, 5.0], 0.9 - 0.5 * 2),
    ([0.9, 10.0], ["maximize", "minimize"], [1.0, 0.0], [None, 5.0], 0.9),
    ([0.5, 2e6, 3.0], ["maximize", "minimize", "minimize"], [2.0, 1.0, 1.0],
     [None, 1e6, None], 1.0 - 2.0 - 3.0),
])
def test_weighted_sum(values, directions, weights, scales, expected):
    assert weighted_sum(values, directions, weights, scales) == pytest.approx(expected)


def test_weighted_sum_refuses_mismatched_lengths_and_bad_scales():
    with pytest.raises(ScalarizeError, match="as many"):
        weighted_sum([1.0], ["maximize", "minimize"], [1.0], [None])
    with pytest.raises(ScalarizeError, match="scale must be a positive"):
        weighted_sum([1.0], ["maximize"], [1.0], [0.0])
