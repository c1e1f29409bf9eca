"""objective.constraints in the search loop: nothing over a limit is ever launched.

The loop counts every proposal in the real counting process (``nas_trainer.count_server``,
children built on the meta device); this test counts every launched architecture again,
in this process, and checks it against the limits.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from controller_policy.contract import DatasetSpec, ModelSpec
from nas_operator.ledger import FinishedTrial, TrialState
from nas_operator.loop.events import EventReason
from nas_operator.testing import constant_behaviour
from nas_trainer.measure import Counter
from tests.support.loop_harness import Harness, make_search

MODEL = {"cellsPerStage": 1, "filters": 8}
SPACES: dict[str, dict[str, Any]] = {
    # small spaces, so that thousands of proposals repeat genotypes (counted once each)
    "enas-macro": {"layers": 1},
}


def constrained(space: str, options: dict[str, Any], max_flops: int, trials: int) -> Any:
    return make_search(
        searchSpace={"type": space, "options": options},
        budget={"maxTrials": trials, "parallelism": 2},
        objective={"constraints": {"maxFlops": max_flops, "maxConsecutiveInfeasible": 100_000}},
        trial={"dataset": {"name": "digits"}, "training": {"model": MODEL}},
    )


async def run(h: Harness, timeout: float) -> Any:
    try:
        return await h.run(timeout)
    finally:
        await h.close()


@pytest.mark.parametrize("space", sorted(SPACES))
async def test_a_constrained_search_never_launches_an_architecture_over_its_limit(space: str) -> None:
    options = SPACES[space]
    counter = Counter(space, options, DatasetSpec(name="digits"), ModelSpec(**MODEL))
    rng = random.Random(0)
    macs = sorted(counter.count(counter.space.sample(rng)).macs for _ in range(40))
    limit = macs[1]  # the cheapest operation or two fit
    h = Harness(constrained(space, options, limit, trials=100), constant_behaviour(0.5))
    status = await run(h, timeout=240)
    assert status.phase == "Succeeded", status.message
    assert status.trials.total == 100 == len(h.launcher.launched)
    assert status.trials.infeasible >= 100  # more proposals refused than trained
    for req in h.launcher.launched:
        assert counter.count(list(req.document.architecture.tokens)).macs <= limit
    infeasible = h.reasons(EventReason.TRIAL_INFEASIBLE)
    assert len(infeasible) == status.trials.infeasible
    assert "maxFlops" in infeasible[0].message
    # every proposal was told once: the infeasible ones with the penalty (0)
    assert len(h.strategy.told) == 100 + status.trials.infeasible
    stored = [t for t in h.loop.ledger.trials["search"]
              if isinstance(t, FinishedTrial) and t.state is TrialState.INFEASIBLE]
    assert len(stored) == status.trials.infeasible and all(t.reward == 0 for t in stored)


async def test_a_space_where_nothing_fits_fails_naming_the_limit() -> None:
    search = make_search(
        searchSpace={"type": "enas-macro", "options": {"layers": 1}},
        objective={"constraints": {"maxParams": 1, "maxConsecutiveInfeasible": 50}},
        trial={"dataset": {"name": "digits"}, "training": {"model": MODEL}},
    )
    h = Harness(search, constant_behaviour(0.5))
    status = await run(h, timeout=120)
    assert status.phase == "Failed" and status.reason == "NothingFeasible"
    assert "50 proposals in a row" in status.message and "maxParams 1" in status.message
    assert h.launcher.launched == []


def test_the_counting_process_is_started_early_only_for_a_search_that_counts() -> None:
    """prestart: spawned at once (not waited for) for a constrained search whose strategy
    proposes; an unconstrained or a weight-sharing search starts nothing."""
    import sys

    from nas_operator.loop.limits import CountingProcess, prestart

    process = CountingProcess((sys.executable, "-c", "import sys; sys.stdin.read()"))
    try:
        assert not prestart(make_search().spec, process) and process._proc is None
        enas = make_search(strategy={"type": "enas"}, budget={"maxTrials": 1, "parallelism": 1},
                           objective={"constraints": {"maxParams": 10}})
        assert not prestart(enas.spec, process) and process._proc is None
        limited = make_search(objective={"constraints": {"maxParams": 10}})
        assert prestart(limited.spec, process)
        child = process._proc
        assert child is not None and child.poll() is None
        process.start()  # idempotent: the same child
        assert process._proc is child
    finally:
        process.close()
    assert child.poll() is not None
