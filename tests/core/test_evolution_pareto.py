"""Evolution's Pareto selection: the tournament goes by non-domination rank, then crowding;
the default reward selection is the algorithm it was; both restart exactly."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter

import pytest

from controller_policy.spaces import make_space
from controller_policy.strategies import make_strategy
from controller_policy.strategies.base import StrategyError
from controller_policy.strategies.evolution import RegularizedEvolution

REWARD_MODE_DIGEST = "4fb7dd66280a863056988a5690632bfe3a1a4f0489cf26b4787136c263245ccc"
"""The proposals and summary of the run below, computed with evolution.py as it was before
selection existed (commit 7ad5e84)."""


def space():
    return make_space("enas-macro", {"layers": 4})


def test_reward_selection_is_the_algorithm_it_was():
    s = RegularizedEvolution(space(), {"populationSize": 8, "sampleSize": 3, "seed": 5})
    rng = random.Random(0)
    out = []
    for _ in range(40):
        for p in s.ask_batch(2):
            out.append(p.architecture.tokens)
            s.tell(p.id, round(rng.random(), 6))
    digest = hashlib.sha256(json.dumps([out, s.summary()], sort_keys=True).encode()).hexdigest()
    assert digest == REWARD_MODE_DIGEST
    assert "points" not in s.state_dict()


def test_a_checkpoint_from_before_selection_existed_still_loads():
    s = RegularizedEvolution(space(), {"populationSize": 4, "sampleSize": 2, "seed": 1})
    p = s.ask()
    s.tell(p.id, 0.5)
    state = s.state_dict()
    del state["config"]["selection"]  # what the earlier code wrote
    fresh = RegularizedEvolution(space(), {"populationSize": 4, "sampleSize": 2, "seed": 1})
    fresh.load_state_dict(state)
    assert fresh.ask().architecture.tokens == s.ask().architecture.tokens


def parents(strategy: RegularizedEvolution, n: int) -> Counter[int]:
    return Counter(strategy.ask().extras["parent"] for _ in range(n))


@pytest.mark.parametrize(("selection", "favourite"), [("reward", 0), ("pareto", 1)])
def test_the_tournament_picks_by_reward_or_by_the_front(selection, favourite):
    """Member 0 has the higher reward but member 1 dominates it: each selection prefers its own
    (with S = 2 of P = 2, drawn with replacement, the favourite wins 3 draws in 4)."""
    s = RegularizedEvolution(space(), {"populationSize": 2, "sampleSize": 2, "seed": 7,
                                       "selection": selection})
    a, b = s.ask(), s.ask()
    s.tell_objectives(a.id, 0.9, [0.5, -5.0])
    s.tell_objectives(b.id, 0.1, [0.6, -4.0])
    counts = parents(s, 200)
    assert counts[favourite] > 130 and counts[1 - favourite] < 70


def test_crowding_breaks_ties_within_a_front():
    """Three members on one front: the two ends (crowding inf) win every tournament the
    middle one does not have to itself (P = S = 3: it wins only when drawn three times)."""
    s = RegularizedEvolution(space(), {"populationSize": 3, "sampleSize": 3, "seed": 2,
                                       "selection": "pareto"})
    ids = [s.ask().id for _ in range(3)]
    for pid, point in zip(ids, [[0.9, -9.0], [0.6, -5.0], [0.3, -1.0]], strict=True):
        s.tell_objectives(pid, 0.5, point)
    counts = parents(s, 270)
    assert counts[ids[1]] < 25 and counts[ids[0]] + counts[ids[2]] > 245
    assert s.summary()["population_front"] == 3


def test_a_member_without_a_point_ranks_last():
    s = RegularizedEvolution(space(), {"populationSize": 2, "sampleSize": 2, "seed": 3,
                                       "selection": "pareto"})
    a, b = s.ask(), s.ask()
    s.tell(a.id, 5.0)  # a reward alone, e.g. a penalty for an infeasible architecture
    s.tell_objectives(b.id, 0.1, [0.1, -9.0])
    counts = parents(s, 200)
    assert counts[b.id] > 130


def test_pareto_evolution_restarts_exactly():
    def drive(strategy, rng, rounds):
        out = []
        for _ in range(rounds):
            for p in strategy.ask_batch(2):
                out.append(p.architecture.tokens)
                acc, lat = rng.random(), rng.uniform(1, 10)
                strategy.tell_objectives(p.id, acc * (lat / 5) ** -0.07, [acc, -lat])
        return out

    config = {"populationSize": 6, "sampleSize": 3, "seed": 11, "selection": "pareto"}
    straight = make_strategy("evolution", space(), config)
    rng = random.Random(4)
    first = drive(straight, rng, 10)
    state = straight.to_bytes()
    rng_state = rng.getstate()
    rest = drive(straight, rng, 10)

    restored = make_strategy("evolution", space(), config)
    restored.load_bytes(state)
    rng2 = random.Random()
    rng2.setstate(rng_state)
    assert drive(restored, rng2, 10) == rest
    assert restored.state_dict() == straight.state_dict()
    assert len(first) == 20 and len(restored.state_dict()["points"]) == 6


@pytest.mark.parametrize("point", [[math.nan, 1.0], [1.0, math.inf], [], "ab", [True, 1.0]])
def test_a_bad_point_is_refused_before_any_change(point):
    s = RegularizedEvolution(space(), {"populationSize": 2, "sampleSize": 1, "seed": 0,
                                       "selection": "pareto"})
    p = s.ask()
    before = s.state_dict()
    with pytest.raises(StrategyError, match="objective point"):
        s.tell_objectives(p.id, 0.5, point)
    assert s.state_dict() == before and s.pending == [p.id]


def test_points_of_another_length_are_refused():
    s = RegularizedEvolution(space(), {"populationSize": 3, "sampleSize": 1, "seed": 0,
                                       "selection": "pareto"})
    a, b = s.ask(), s.ask()
    s.tell_objectives(a.id, 0.5, [0.5, -1.0])
    with pytest.raises(StrategyError, match="has 3 values"):
        s.tell_objectives(b.id, 0.5, [0.5, -1.0, 2.0])


@pytest.mark.parametrize("name", ["random", "reinforce"])
def test_other_strategies_learn_the_reward_of_a_multi_objective_trial(name):
    told = make_strategy(name, space(), {"seed": 1})
    plain = make_strategy(name, space(), {"seed": 1})
    for _ in range(4):
        a, b = told.ask(), plain.ask()
        told.tell_objectives(a.id, 0.4, [0.4, -3.0])
        plain.tell(b.id, 0.4)
    assert told.ask().architecture.tokens == plain.ask().architecture.tokens
