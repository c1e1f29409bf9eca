"""Every strategy on a custom space (repeats, input selection, conditions): each proposal is
a member of the space, the same seed gives the same search, and a checkpoint taken
mid-search (proposals in flight, rewards not yet applied) continues bit-for-bit; the
controller emits 0 for an absent decision and its probabilities stay a distribution."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from controller_policy.spaces import make_space
from controller_policy.strategies import make_strategy
from controller_policy.strategies.controller import Controller
from tests.support.custom_space import valid_token_lists
from tests.support.strategies_state import assert_same_state, drive

OPTIONS = {"decisions": [
    {"name": "depth", "choices": ["shallow", "deep"]},
    {"name": "lr_scale", "range": {"low": 1, "high": 7, "step": 3}},
    {"name": "stage", "repeat": 4, "decisions": [
        {"name": "kernel", "choices": [3, 5]},
        {"name": "width", "choices": [16, 32, 64]},
        {"name": "inputs", "inputs": {"maxInputs": 2}},
        {"name": "dilation", "choices": [1, 2], "when": {"kernel": [3]}},
        {"name": "extra", "choices": [True, False], "when": {"depth": ["deep"]}},
    ]},
]}
SETTINGS: dict[str, dict[str, Any]] = {
    "reinforce": {"batchSize": 5, "learningRate": 0.01, "hiddenSize": 32},
    "ppo": {"batchSize": 4, "learningRate": 0.01, "hiddenSize": 32, "failureReward": 0.0},
    "evolution": {"populationSize": 8, "sampleSize": 3},
    "random": {},
}


def build(kind: str, seed: int = 11):
    # make_strategy lays these over the space's controller defaults (tanh constant, entropy)
    return make_strategy(kind, make_space("custom", OPTIONS), {"seed": seed, **SETTINGS[kind]})


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_proposals_are_members_and_the_seed_decides(kind: str) -> None:
    logs = [drive(build(kind, seed), random.Random(5), [], 24) for seed in (11, 11, 12)]
    assert logs[0] == logs[1]
    tokens = [r["tokens"] for r in logs[0] if "tokens" in r]
    assert tokens != [r["tokens"] for r in logs[2] if "tokens" in r]
    space = make_space("custom", OPTIONS)
    for t in tokens:
        genotype = space.decode(t)
        assert space.encode(genotype) == t
        for entry in genotype["stage"]:
            assert ("dilation" in entry) == (entry["kernel"] == 3)
            assert ("extra" in entry) == (genotype["depth"] == "deep")
            assert len(entry["inputs"]) <= 2


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_checkpoint_mid_search_continues_bit_for_bit(kind: str) -> None:
    strategy = build(kind)
    env, in_flight = random.Random(3), []
    drive(strategy, env, in_flight, 30)
    assert strategy.pending
    if kind in ("reinforce", "ppo"):
        assert strategy.buffer and strategy.updates >= 1
    blob = strategy.to_bytes()
    env_state, flight = env.getstate(), tuple(in_flight)
    expected = drive(strategy, env, in_flight, 40)

    restored = build(kind)
    restored.load_bytes(blob)
    env2 = random.Random()
    env2.setstate(env_state)
    assert drive(restored, env2, list(flight), 40) == expected
    assert_same_state(strategy.state_dict(), restored.state_dict())


def test_the_controller_never_gives_an_absent_decision_a_value_and_sums_to_one() -> None:
    # No maxInputs: every draw is a member, and the members' probabilities add up to 1.
    space = make_space("custom", {"decisions": [
        {"name": "a", "choices": ["x", "y"]},
        {"name": "b", "choices": [1, 2, 3], "when": {"a": ["x"]}},
        {"name": "s", "repeat": 3, "decisions": [
            {"name": "w", "choices": [True, False]},
            {"name": "k", "choices": [1, 3], "when": {"b": [1, 2]}},
            {"name": "in", "inputs": {}, "when": {"w": [True]}}]}]})
    controller = Controller(space.steps, hidden_size=8, seed=3)
    tokens, log_prob, _ = controller.sample(torch.Generator().manual_seed(0), 300)
    for row in tokens.tolist():
        space.validate_tokens(row)
    scored, _ = controller.evaluate(tokens)
    assert torch.allclose(scored, log_prob, atol=1e-5)
    members = [space.encode(space.decode(t)) for t in valid_token_lists(space)]
    assert len(members) == space.size()
    total = controller.evaluate(members)[0].exp().sum().item()
    assert abs(total - 1.0) < 1e-5

