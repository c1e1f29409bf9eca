"""The Pareto front of a multi-objective search in the NASSearch status: what it holds, and
that a restarted loop has it exactly (checkpointed with the ledger), continuing as an
uninterrupted search would."""

from __future__ import annotations

import random

import pytest

from controller_policy.pareto import hypervolume, pareto_front
from nas_operator.checkpoint import MemoryCheckpointStore
from nas_operator.testing import SimulatedOutcome
from tests.support.loop_harness import Harness, make_search, wait_until

OBJECTIVE = {"objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                            {"metric": "latency_ms", "direction": "minimize", "target": 5.0}]}


def measured(tokens: list[int]) -> tuple[float, float]:
    """A trade-off: more tokens set, more accuracy and more latency (plus per-architecture noise)."""
    rng = random.Random(str(tokens))
    load = sum(tokens) / (5.0 * len(tokens))
    return round(0.3 + 0.6 * load + rng.uniform(0, 0.1), 4), round(1.0 + 8.0 * load
                                                                   + rng.uniform(0, 1.0), 3)


def device_of(trial: str) -> str:
    """Where a trial's latency was timed: the front keeps it beside the figure."""
    return "cuda:1 (NVIDIA H200)" if int(trial[-4:]) % 3 == 0 else "cpu"


def trainer(hang_from: int | None = None):
    def behave(req):
        acc, lat = measured(req.document.architecture.tokens)
        hang = hang_from is not None and int(req.trial[-4:]) >= hang_from
        return SimulatedOutcome(hang=hang, metrics=[{"val_accuracy": acc, "latency_ms": lat}],
                                device=device_of(req.trial))
    return behave


def multi_search(strategy: str = "evolution", trials: int = 24, parallelism: int = 2):
    config = {"populationSize": 6, "sampleSize": 3} if strategy == "evolution" else {}
    return make_search(objective=OBJECTIVE,
                       budget={"maxTrials": trials, "parallelism": parallelism},
                       strategy={"type": strategy, "seed": 3, "config": config})


def front_of(status):
    return [(m.trial, m.objectives["val_accuracy"], m.objectives["latency_ms"], m.reward)
            for m in status.front.members]


async def test_the_front_in_the_status_is_the_non_dominated_trials():
    h = Harness(multi_search(), trainer())
    try:
        status = await h.run()
    finally:
        await h.close()
    assert status.phase == "Succeeded" and status.trials.succeeded == 24
    results = {r.trial: measured(r.document.architecture.tokens) for r in h.launcher.launched}
    names = sorted(results)
    points = [(results[n][0], -results[n][1]) for n in names]
    expected = {names[i] for i in pareto_front(points)}
    front = status.front
    assert front.objectives == ["maximize val_accuracy", "minimize latency_ms"]
    assert front.referencePoint == {"val_accuracy": 0.0, "latency_ms": 10.0}
    assert front.size == len(expected) and {m.trial for m in front.members} == expected
    for m in front.members:  # values as reported, genotype for export, reward = MnasNet's
        acc, lat = results[m.trial]
        assert m.objectives == {"val_accuracy": acc, "latency_ms": lat}
        assert m.genotype and m.tokens
        assert m.reward == pytest.approx(acc * (lat / 5.0) ** -0.07)
    accs = [m.objectives["val_accuracy"] for m in front.members]
    assert accs == sorted(accs, reverse=True)
    assert front.hypervolume == pytest.approx(hypervolume(points, (0.0, -10.0)))
    assert status.best.trial == max(results, key=lambda n: results[n][0]
                                    * (results[n][1] / 5.0) ** -0.07)
    # the evolution strategy was told every objective point, and selected on the front
    assert sorted(h.strategy.points) == list(range(24))
    assert h.strategy.inner.config.selection == "pareto"
    assert h.strategy.inner.mutation_asks > 0


async def test_a_single_objective_search_has_no_front():
    h = Harness(make_search(budget={"maxTrials": 3, "parallelism": 3}))
    try:
        status = await h.run()
    finally:
        await h.close()
    assert status.front is None
    assert "front" not in h.loop.ledger.to_state()


@pytest.mark.parametrize("strategy", ["evolution", "random"])
async def test_the_front_survives_a_restart_exactly(strategy):
    """One trial at a time, so that the order results reach the strategy (which evolution's
    next proposals depend on) is the same with and without the restart."""
    search = multi_search(strategy, trials=16, parallelism=1)
    straight = Harness(search, trainer())
    try:
        expected = await straight.run()
    finally:
        await straight.close()

    store = MemoryCheckpointStore()
    first = Harness(search, trainer(hang_from=9), store=store)
    await first.loop.start()
    await wait_until(lambda: first.loop.status().trials.succeeded == 9
                     and first.launcher.running == 1)
    before = first.loop.status().front
    await first.loop.stop()
    await first.close()

    second = Harness(search, trainer(), store=store, key=first.loop.key)
    try:
        assert await second.loop._restore()  # what a restarted operator reads first
        assert second.loop.status().front == before  # devices included
        assert before.size >= 1 and before.hypervolume > 0
        assert all(m.device == device_of(m.trial) for m in before.members)
        await second.loop.stop()
    finally:
        await second.close()

    third = Harness(search, trainer(), store=store, key=first.loop.key)
    try:
        status = await third.run()
    finally:
        await third.close()
    assert status.trials.succeeded == 16
    assert front_of(status) == front_of(expected)
    assert status.front == expected.front
