"""Each learning strategy finds better architectures than random search with the same trials.

Synthetic reward: the fraction of tokens equal to a hidden target architecture,
plus N(0, 0.01) noise. Targets are the published cells (NASNet-A, ENAS micro
final arc, docs/papers.md §5): their structure (repeated separable convs, inputs
mostly from the cell inputs) is what a real search rewards, and the papers'
controller shares one softmax per decision type, so a target drawn uniformly
at random (different optimum at every position) is a needlessly adversarial
test for it. Trials are asked 8 at a time; rewards come back shuffled, some
only in the next round, and about 10% of trials fail (dropped from learning).

Test-only settings, said here as the brief asks: controller learning rate 0.01
instead of the papers' 3.5e-4 and 8 rewards per update, so that a few hundred
trials (not the papers' 20,000) show learning; evolution uses P = 20, S = 5.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from controller_policy.spaces import make_space
from controller_policy.strategies import make_strategy

NASNET_A = [int(t) for t in (
    "1,0,11,10,0, 0,0,11,10,0, 1,0,4,0,0, 0,0,4,4,0, 1,1,10,0,0,"
    "1,0,11,12,0, 1,0,5,12,0, 1,0,4,11,0, 3,2,0,4,0, 2,1,10,5,0"
).replace(" ", "").split(",")]
ENAS_MICRO_ARC = [int(t) for t in (
    "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
).split()]
TARGETS = {"nasnet": NASNET_A, "enas-micro": ENAS_MICRO_ARC}

TRIALS = 240
SEEDS = (0, 1, 2)
RL = {"learningRate": 0.01, "batchSize": 8}
SETTINGS: dict[str, dict[str, Any]] = {
    "random": {},
    "evolution": {"populationSize": 20, "sampleSize": 5},
    "reinforce": RL,
    "ppo": RL,
}


def best_reward(strategy_type: str, space_type: str, seed: int) -> float:
    """Run one asynchronous search and return the best reward any trial earned."""
    space = make_space(space_type)
    target = space.validate_tokens(TARGETS[space_type])
    strategy = make_strategy(strategy_type, space, {"seed": seed, **SETTINGS[strategy_type]})
    env = random.Random(7919 * seed + 1)
    in_flight: list = []
    best = float("-inf")
    asked = 0
    while asked < TRIALS or in_flight:
        n = min(8, TRIALS - asked)
        in_flight += strategy.ask_batch(n)
        asked += n
        env.shuffle(in_flight)
        keep = 3 if asked < TRIALS else 0  # a few rewards arrive only next round
        arriving, in_flight = in_flight[keep:], in_flight[:keep]
        for proposal in arriving:
            if env.random() < 0.1:
                strategy.tell_failure(proposal.id)
                continue
            tokens = proposal.architecture.tokens
            reward = sum(a == b for a, b in zip(tokens, target, strict=True)) / len(target)
            reward += env.gauss(0.0, 0.01)
            best = max(best, reward)
            strategy.tell(proposal.id, reward)
    assert not strategy.pending
    return best


def mean_best(strategy_type: str, space_type: str) -> float:
    return sum(best_reward(strategy_type, space_type, s) for s in SEEDS) / len(SEEDS)


# One controller strategy per space keeps the default run to seconds; the
# other pairs run with ``-m slow``.
FAST = [("evolution", "nasnet"), ("evolution", "enas-micro"), ("reinforce", "enas-micro"), ("ppo", "nasnet")]
SLOW = [("reinforce", "nasnet"), ("ppo", "enas-micro")]


@pytest.fixture(scope="module")
def random_best() -> dict[str, float]:
    return {space: mean_best("random", space) for space in TARGETS}


def _check(strategy_type: str, space_type: str, random_best: dict[str, float]) -> None:
    got = mean_best(strategy_type, space_type)
    baseline = random_best[space_type]
    assert got >= baseline + 0.05, (
        f"{strategy_type} on {space_type}: mean best reward {got:.3f} is not clearly above "
        f"random search's {baseline:.3f} after {TRIALS} trials"
    )


@pytest.mark.parametrize(("strategy_type", "space_type"), FAST)
def test_strategy_beats_random_search(strategy_type: str, space_type: str, random_best: dict[str, float]) -> None:
    _check(strategy_type, space_type, random_best)


@pytest.mark.slow
@pytest.mark.parametrize(("strategy_type", "space_type"), SLOW)
def test_strategy_beats_random_search_other_pairs(
    strategy_type: str, space_type: str, random_best: dict[str, float]
) -> None:
    _check(strategy_type, space_type, random_best)
