"""Pareto geometry on hand-made points: dominance, fronts, crowding, bounded fronts,
hypervolume (every expected value worked out by hand in the table's comment)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from controller_policy.pareto import (
    ParetoError,
    bounded_front,
    crowding_distance,
    dominates,
    hypervolume,
    non_dominated_sort,
    orient,
    pareto_front,
    rank_and_crowding,
    ranks,
)

INF = math.inf


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((1, 1), (0, 0), True),      # better everywhere
    ((1, 1), (1, 0), True),      # tie on one, better on the other
    ((1, 0), (0, 1), False),     # a trade-off: neither dominates
    ((0, 1), (1, 0), False),
    ((1, 1), (1, 1), False),     # a duplicate never dominates its twin
    ((0, 0), (1, 1), False),
    ((2, 2, 2), (2, 2, 1), True),
    ((2, 2, 2), (3, 1, 2), False),
])
def test_dominance(a, b, expected):
    assert dominates(a, b) is expected


def test_orient_negates_minimized_metrics():
    assert orient([0.9, 12.5], ["maximize", "minimize"]) == (0.9, -12.5)
    with pytest.raises(ParetoError, match="direction"):
        orient([1.0], ["up"])
    with pytest.raises(ParetoError, match="1 values for 2 directions"):
        orient([1.0], ["maximize", "minimize"])


# A=(3,1) B=(2,2) C=(1,3) D=B again, E=(1,1) F=(0,0) G=(2,1): A..D trade off (front 0);
# G is dominated only by A; E by G; F by everything.
SORT_CASES = [
    ([(3, 1), (2, 2), (1, 3), (2, 2), (1, 1), (0, 0), (2, 1)],
     [[0, 1, 2, 3], [6], [4], [5]]),
    ([(1, 2), (1, 3)], [[1], [0]]),                       # tie on x, y decides
    ([(5, 5), (5, 5), (5, 5)], [[0, 1, 2]]),              # all duplicates: one front
    ([(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)], [[0, 1, 2, 3, 4]]),
    ([(1,), (3,), (2,), (3,)], [[1, 3], [2], [0]]),       # one objective: a ranking with ties
    ([(1, 1, 1), (2, 2, 2), (2, 1, 3)], [[1, 2], [0]]),
    ([], []),
]


@pytest.mark.parametrize(("points", "fronts"), SORT_CASES)
def test_non_dominated_sort_and_ranks(points, fronts):
    assert non_dominated_sort(points) == fronts
    expected_ranks = [next(r for r, f in enumerate(fronts) if i in f) for i in range(len(points))]
    assert ranks(points) == expected_ranks
    assert pareto_front(points) == (fronts[0] if fronts else [])


def test_sort_agrees_with_the_definition_on_random_points():
    """Front r = points dominated only by points of fronts < r, and by at least one of front r-1."""
    rng = random.Random(3)
    for _ in range(30):
        pts = [(rng.randint(0, 4), rng.randint(0, 4), rng.randint(0, 4)) for _ in range(15)]
        rank = ranks(pts)
        for i, p in enumerate(pts):
            doms = [rank[j] for j, q in enumerate(pts) if dominates(q, p)]
            assert all(r < rank[i] for r in doms)
            assert rank[i] == (max(doms) + 1 if doms else 0)


CROWDING_CASES = [
    # three on a line: the ends inf; middle (3-1)/2 on x plus (3-1)/2 on y
    ([(3, 1), (2, 2), (1, 3)], [INF, 2.0, INF]),
    # x: p1 (3-0)/4, p2 (4-1)/4; y (values 4,2,1,0): p1 (4-1)/4, p2 (2-0)/4
    ([(0, 4), (1, 2), (3, 1), (4, 0)], [INF, 1.5, 1.25, INF]),
    # duplicates in the middle: on each axis one neighbour is the twin
    ([(0, 2), (1, 1), (1, 1), (2, 0)], [INF, 1.0, 1.0, INF]),
    # y is the same for all: only x counts
    ([(0, 5), (1, 5), (3, 5)], [INF, 1.0, INF]),
    # all duplicates: no objective has a range, nothing is crowded-apart
    ([(1, 1), (1, 1), (1, 1)], [0.0, 0.0, 0.0]),
    ([(1, 1), (2, 0)], [INF, INF]),
    ([(1, 1)], [INF]),
    ([], []),
]


@pytest.mark.parametrize(("points", "expected"), CROWDING_CASES)
def test_crowding_distance(points, expected):
    assert crowding_distance(points) == pytest.approx(expected)


def test_rank_and_crowding_is_per_front():
    # front 0 = (3,1),(2,2),(1,3); front 1 = (2,1),(1,2)
    key = rank_and_crowding([(3, 1), (2, 2), (1, 3), (2, 1), (1, 2)])
    assert key == [(0, INF), (0, 2.0), (0, INF), (1, INF), (1, INF)]


@pytest.mark.parametrize(("points", "limit", "expected"), [
    # five evenly spread: inner crowding 1 each, the later index goes first (3); then p1 has
    # 0.5+0.5 against p2's 0.75+0.75, so p1 goes: the ends and the middle stay
    ([(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)], 3, [0, 2, 4]),
    ([(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)], 5, [0, 1, 2, 3, 4]),
    ([(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)], 2, [0, 4]),
    # dominated points never enter; duplicates can both be on the front
    ([(1, 1), (2, 2), (2, 2), (0, 3)], 20, [1, 2, 3]),
    ([], 20, []),
])
def test_bounded_front(points, limit, expected):
    assert bounded_front(points, limit) == expected


def test_bounded_front_refuses_a_zero_limit():
    with pytest.raises(ParetoError, match=">= 1"):
        bounded_front([(1, 1)], 0)


HV_CASES = [
    # staircase 3x1 + 2x(2-1) + 1x(3-2)
    ([(3, 1), (2, 2), (1, 3)], (0, 0), 6.0),
    # a duplicate and a dominated point add nothing
    ([(3, 1), (2, 2), (1, 3), (2, 2), (1, 1)], (0, 0), 6.0),
    # against (1,1) only (2,2) reaches beyond the reference in both: 1x1
    ([(3, 1), (2, 2), (1, 3)], (1, 1), 1.0),
    # a point not beyond the reference in one coordinate adds nothing
    ([(-1, 5), (0, 5)], (0, 0), 0.0),
    ([(0.9, -5.0)], (0.0, -10.0), 0.9 * 5.0),      # accuracy vs negated latency (target 5, ref 10)
    ([], (0, 0), 0.0),
    ([(4,), (2,)], (1,), 3.0),
    ([(1, 2, 3)], (0, 0, 0), 6.0),
    ([(2, 1, 1), (1, 2, 1)], (0, 0, 0), 3.0),              # 2 + 2 - overlap 1
    ([(2, 1, 1), (1, 2, 1), (1, 1, 2)], (0, 0, 0), 4.0),   # 6 - 3 + 1
    ([(1, 1, 1), (2, 2, 2)], (0, 0, 0), 8.0),
    ([(1, 1, 1, 1), (2, 1, 1, 1)], (0, 0, 0, 0), 2.0),
]


@pytest.mark.parametrize(("points", "reference", "expected"), HV_CASES)
def test_hypervolume(points, reference, expected):
    assert hypervolume(points, reference) == pytest.approx(expected)


def _inclusion_exclusion(points, ref):
    """Union volume of the boxes [ref, p] by inclusion-exclusion (an independent check)."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = [min(c) for c in zip(*subset, strict=True)]
            vol = math.prod(max(0.0, c - r) for c, r in zip(corner, ref, strict=True))
            total += vol if size % 2 else -vol
    return total


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_agrees_with_inclusion_exclusion(k):
    rng = random.Random(k)
    for _ in range(20):
        pts = [tuple(rng.uniform(-1, 3) for _ in range(k)) for _ in range(rng.randint(1, 7))]
        assert hypervolume(pts, (0.0,) * k) == pytest.approx(_inclusion_exclusion(pts, (0.0,) * k))


@pytest.mark.parametrize(("call", "words"), [
    (lambda: non_dominated_sort([(1, 2), (1,)]), "different dimensions"),
    (lambda: hypervolume([(1, 2)], (0,)), "reference point has 1"),
    (lambda: hypervolume([(1, math.nan)], (0, 0)), "not finite"),
    (lambda: hypervolume([(1, 1)], (0, math.inf)), "not finite"),
    (lambda: crowding_distance([()]), "at least one"),
])
def test_bad_points_are_refused(call, words):
    with pytest.raises(ParetoError, match=words):
        call()
