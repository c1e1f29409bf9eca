"""objective.constraints over thousands of proposals on every built-in space with a model builder.

The loop counts each proposal in its real counting process (``nas_trainer.count_server``:
the child built on the ``meta`` device, normalisation and activations passed through).
This test counts every genotype again, independently: the child built with real weights on
the CPU, every layer run under ``FlopCounterMode``, parameters summed here. Every launched
architecture must be within the limits, and every refused one over them, with the
figures and reason the ledger recorded.

Why a pool: counting takes 10-60 ms per genotype on this machine, so thousands of distinct
genotypes per space would take minutes. The proposals are drawn at random from 40
genotypes of each space (sampled uniformly), and both counters cache per genotype; the
decisions are per genotype, so every repeat must get the same one. The ``custom`` space is
left out: it has no model builder, and a constrained search on it is refused
(tests/trainer/test_trial_measures.py).

The two recurrent spaces have one size per model: their cells choose activations and
inputs, never widths, so every genotype has the same figures. Their limit is put just under
that size (everything refused, the search fails NothingFeasible) and at it (everything fits:
a limit is inclusive).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from controller_policy.contract import ModelSpec
from controller_policy.objective import Constraints
from controller_policy.spaces import Architecture, make_space
from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies.base import Proposal
from controller_policy.strategies.random_search import RandomSearch
from nas_operator.ledger import FinishedTrial, TrialState
from nas_operator.testing import SimulatedOutcome
from nas_trainer.measure import example_input, input_signature
from nas_trainer.models import build_model
from tests.support.loop_harness import Harness, make_search

MODEL = {"cellsPerStage": 1, "filters": 8, "embeddingSize": 16, "hiddenSize": 16}
SPACES: dict[str, tuple[dict[str, Any], str]] = {
    "zoph-le-cnn": ({"layers": 2}, "digits"),
    "zoph-le-rnn": ({}, "synthetic"),
    "nasnet": ({"blocks": 1}, "digits"),
    "enas-macro": ({"layers": 2}, "digits"),
    "enas-micro": ({"nodes": 1}, "digits"),
    "enas-rnn": ({"nodes": 3}, "synthetic"),
}
POOL = 40
PROPOSALS = 2000
"""At least this many proposals per space (launched and refused together)."""


class PoolSearch(RandomSearch):
    """Random search over a fixed pool of genotypes (so counts repeat and stay cheap)."""

    def __init__(self, space: SearchSpace, pool: list[tuple[int, ...]], seed: int) -> None:
        super().__init__(space, {"seed": seed})
        self.pool = pool

    def ask(self) -> Proposal:
        tokens = list(self.rng.choice(self.pool))
        arch = Architecture(space=self.space.type_name, tokens=tokens,
                            genotype=self.space.to_genotype(tokens))
        return Proposal(id=self.ledger.open(tokens), architecture=arch)


def real_figures(space: SearchSpace, options: dict[str, Any], dataset: str,
                 tokens: tuple[int, ...]) -> tuple[int, int]:
    """(params, multiply-adds) of the child with real weights, every layer run."""
    from controller_policy.contract import DatasetSpec

    inputs = input_signature(DatasetSpec(name=dataset), space.kind)
    arch = Architecture(space=space.type_name, tokens=list(tokens),
                        genotype=space.to_genotype(list(tokens)))
    model = build_model(arch, ModelSpec(**MODEL), space_options=options, **inputs).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(example_input(space.kind, inputs, device="cpu"))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, flops.get_total_flops() // 2


def choose_limits(real: dict[tuple[int, ...], tuple[int, int]]) -> dict[str, int]:
    """maxParams and maxFlops, each an actual figure of the pool (the inclusive edge is hit),
    letting about a tenth of the pool through, each limit alone refusing some genotypes."""
    target = max(1, len(real) // 10)

    def score(limits: tuple[int, int]) -> tuple[int, bool]:
        p, m = limits
        fits = sum(a <= p and b <= m for a, b in real.values())
        only_p = any(a > p and b <= m for a, b in real.values())
        only_m = any(a <= p and b > m for a, b in real.values())
        return abs(fits - target) + (fits == 0) * len(real), not (only_p and only_m)

    p, m = min(((a, b) for a, _ in real.values() for _, b in real.values()), key=score)
    return {"maxParams": p, "maxFlops": m}


class Run:
    """One constrained search's harness, final status, and what its ledger recorded as
    infeasible (tokens, figures, reason), seen as it was recorded: compacted afterwards."""

    def __init__(self, h: Harness, status: Any, refused: list[tuple[tuple[int, ...], dict[str, float], str]]) -> None:
        self.h, self.status, self.refused = h, status, refused


async def constrained_run(space_type: str, limits: dict[str, int], pool: list[tuple[int, ...]],
                          trials: int, consecutive: int) -> Run:
    options, dataset = SPACES[space_type]
    space = make_space(space_type, options)
    metric, reward, value = (("val_accuracy", "cube", 0.5) if space.kind == "image"
                             else ("val_perplexity", "inverse-square", 90.0))
    search = make_search(
        searchSpace={"type": space_type, "options": options},
        budget={"maxTrials": trials, "parallelism": 4},
        objective={"metric": metric, "reward": reward,
                   "constraints": {**limits, "maxConsecutiveInfeasible": consecutive}},
        trial={"dataset": {"name": dataset}, "training": {"model": MODEL}},
    )
    h = Harness(search, lambda _: SimulatedOutcome(metrics=[{metric: value}]),
                inner=PoolSearch(space, pool, seed=7))
    ledger = h.loop.ledger
    recorded: list[tuple[tuple[int, ...], dict[str, float], str]] = []
    add_infeasible = ledger.add_infeasible

    def spy(seed: int, pid: int | None, space: str | None, tokens: list[int],
            figures: dict[str, float], penalty: float, reason: str, now: float) -> Any:
        recorded.append((tuple(tokens), dict(figures), reason))
        return add_infeasible(seed, pid, space, tokens, figures, penalty, reason, now)

    ledger.add_infeasible = spy  # type: ignore[method-assign]
    try:
        status = await h.run(timeout=300)
    finally:
        await h.close()
    stored = [t for t in ledger.trials["search"]
              if isinstance(t, FinishedTrial) and t.state is TrialState.INFEASIBLE]
    assert len(stored) == len(recorded) == status.trials.infeasible
    return Run(h, status, recorded)


@pytest.mark.parametrize("space_type", sorted(SPACES))
async def test_thousands_of_proposals_launch_only_what_fits(space_type: str) -> None:
    options, dataset = SPACES[space_type]
    space = make_space(space_type, options)
    rng = random.Random(11)
    pool = sorted({tuple(space.sample(rng)) for _ in range(POOL)})
    real = {g: real_figures(space, options, dataset, g) for g in pool}

    if len(set(real.values())) == 1:  # one size for the whole space (the recurrent cells)
        (size, cost), = set(real.values())
        run = await constrained_run(space_type, {"maxParams": size - 1}, pool, 10, PROPOSALS)
        assert run.status.phase == "Failed" and run.status.reason == "NothingFeasible"
        assert run.h.launcher.launched == []
        told = run.h.strategy.told
        assert sum(told.values()) == len(told) == PROPOSALS  # each told the penalty, once
        assert all(run.h.strategy.rewards[p] == 0 for p in told)
        over = f"params {size:,} > maxParams {size - 1:,}"
        assert {(f["params"], f["flops"], why) for _, f, why in run.refused} == {(size, cost, over)}
        run = await constrained_run(space_type, {"maxParams": size, "maxFlops": cost}, pool, 20, 1)
        assert run.status.phase == "Succeeded" and len(run.h.launcher.launched) == 20
        assert run.refused == []
        return

    # a few genotypes of the pool within both limits, the rest over one or both, so that the
    # budget of launches is reached after about PROPOSALS proposals
    limits = choose_limits(real)
    check = Constraints(**limits)
    fits = [g for g in pool if check.over(*real[g]) is None]
    assert 0 < len(fits) < len(pool)
    trials = max(10, round(PROPOSALS * len(fits) / len(pool) * 1.1))
    run = await constrained_run(space_type, limits, pool, trials, PROPOSALS)
    assert run.status.phase == "Succeeded", run.status.message
    launched = [tuple(r.document.architecture.tokens) for r in run.h.launcher.launched]
    assert len(launched) == trials == run.status.trials.total
    for g in launched:
        assert check.over(*real[g]) is None
    assert len(run.refused) + trials == len(run.h.strategy.told) >= PROPOSALS
    for g, figures, reason in run.refused:
        assert figures == {"params": real[g][0], "flops": real[g][1]}  # the meta count agrees
        assert reason == check.over(*real[g]) is not None
    # every genotype of the pool came up, each with one decision throughout
    assert set(launched) == set(fits)
    assert {g for g, _, _ in run.refused} == set(pool) - set(fits)
