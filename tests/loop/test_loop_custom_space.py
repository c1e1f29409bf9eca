"""A search on a custom space (repeats, input selection, conditions) through the real loop
with the simulated launcher: every strategy finishes it with members of the space only, and
an operator restart mid-search (one trial running) continues bit-for-bit: the same
architectures per trial and the same strategy state as a search never stopped."""

from __future__ import annotations

import pytest

from controller_policy.spaces import make_space
from nas_operator.checkpoint import MemoryCheckpointStore
from nas_operator.testing import SimulatedOutcome
from tests.support.loop_harness import Harness, make_search, wait_until
from tests.support.strategies_state import assert_same_state

OPTIONS = {"decisions": [
    {"name": "stem", "choices": [16, 24, 32]},
    {"name": "blocks", "range": {"low": 1, "high": 4}},
    {"name": "stage", "repeat": 3, "decisions": [
        {"name": "kernel", "choices": [3, 5, 7]},
        {"name": "width", "choices": [32, 64, 128]},
        {"name": "inputs", "inputs": {"maxInputs": 2}},
        {"name": "dilation", "choices": [1, 2], "when": {"kernel": [3]}},
    ]},
]}
STRATEGIES = {
    "random": {},
    "evolution": {"populationSize": 4, "sampleSize": 2},
    "reinforce": {"hiddenSize": 16, "learningRate": 0.05},
    "ppo": {"hiddenSize": 16, "learningRate": 0.05},
}


def search_for(kind: str):
    strategy = {"type": kind, "seed": 3, "config": STRATEGIES[kind]}
    if kind in ("reinforce", "ppo"):
        strategy["batchSize"] = 3
    return make_search(searchSpace={"type": "custom", "options": OPTIONS}, strategy=strategy,
                       budget={"maxTrials": 10, "parallelism": 1})


def accuracy(req) -> float:
    """A reward that depends on the architecture, so learning strategies react to it."""
    genotype = req.document.architecture.genotype
    wide = sum(entry["width"] for entry in genotype["stage"]) / (3 * 128)
    return round(0.2 + 0.5 * wide + 0.02 * genotype["blocks"], 6)


def finishing(req):
    return SimulatedOutcome(metrics=[{"val_accuracy": accuracy(req)}])


def gated(hang_from: int):
    def behave(req):
        return SimulatedOutcome(hang=int(req.trial[-4:]) >= hang_from,
                                metrics=[{"val_accuracy": accuracy(req)}])
    return behave


@pytest.mark.parametrize("kind", list(STRATEGIES))
async def test_every_strategy_searches_a_custom_space_and_survives_a_restart(kind: str) -> None:
    search = search_for(kind)
    straight = Harness(search, finishing)
    try:
        status = await straight.run()
    finally:
        await straight.close()
    assert status.phase == "Succeeded" and status.trials.succeeded == 10
    space = make_space("custom", OPTIONS)
    expected = {}
    for r in straight.launcher.launched:
        arch = r.document.architecture
        assert space.encode(arch.genotype) == arch.tokens  # a member, exactly
        expected[r.trial] = arch.tokens
    assert len(set(map(tuple, expected.values()))) > 1

    store = MemoryCheckpointStore()
    first = Harness(search, gated(6), store=store)
    await first.loop.start()
    await wait_until(lambda: first.loop.status().trials.succeeded == 6
                     and first.launcher.running == 1)
    await first.loop.stop()  # the operator goes away with trial 6 running
    await first.close()  # and its pod dies with the node: relaunched after the restart
    second = Harness(search, finishing, store=store, key=first.loop.key)
    try:
        status = await second.run()
    finally:
        await second.close()
    assert status.phase == "Succeeded" and status.trials.succeeded == 10
    got = {r.trial: r.document.architecture.tokens
           for r in first.launcher.launched + second.launcher.launched}
    assert got == expected
    told = sorted(first.strategy.told) + sorted(second.strategy.told)
    assert sorted(told) == list(range(10))  # each reward told once, across the restart
    assert_same_state(straight.strategy.state_dict(), second.strategy.state_dict())
    if kind in ("reinforce", "ppo"):
        assert second.strategy.inner.updates == 3  # updates before and after the restart
