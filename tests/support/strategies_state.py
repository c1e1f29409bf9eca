"""Strategies driven through a seeded, reproducible sequence of asks and tells: shared by the
state tests and the child process they start to check a checkpoint survives a restart."""

from __future__ import annotations

import random
from typing import Any

import torch

from controller_policy.spaces import make_space
from controller_policy.strategies import make_strategy

# Each strategy on a space that exercises something different: skip anchors and
# the skip KL (enas-macro), shared heads of several widths (nasnet), two cells
# (enas-micro), and the recurrent-cell encoding (zoph-le-rnn).
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "reinforce": ("enas-macro", {"batchSize": 5, "learningRate": 0.01, "hiddenSize": 32}),
    "ppo": ("nasnet", {"batchSize": 4, "learningRate": 0.01, "hiddenSize": 32, "failureReward": 0.0}),
    "evolution": ("enas-micro", {"populationSize": 8, "sampleSize": 3}),
    "random": ("zoph-le-rnn", {}),
}
TIMING_KEYS = {"last_update_seconds"}


def build(kind: str, seed: int = 11):
    space_type, settings = CASES[kind]
    return make_strategy(kind, make_space(space_type), {"seed": seed, **settings})


def drive(strategy, env: random.Random, in_flight: list[int], proposals: int) -> list[dict[str, Any]]:
    """Ask ``proposals`` proposals (alternating single and batched asks) and answer some."""
    log: list[dict[str, Any]] = []
    asked = 0
    while asked < proposals:
        batch = [strategy.ask()] if asked % 2 == 0 else strategy.ask_batch(min(3, proposals - asked))
        asked += len(batch)
        for p in batch:
            log.append({"id": p.id, "tokens": p.architecture.tokens, "extras": p.extras})
            in_flight.append(p.id)
        while len(in_flight) > 5:
            pid = in_flight.pop(env.randrange(len(in_flight)))
            if env.random() < 0.1:
                strategy.tell_failure(pid)
            else:
                strategy.tell(pid, env.random())
            log.append({k: v for k, v in strategy.summary().items() if k not in TIMING_KEYS})
    return log


def assert_same_state(a: Any, b: Any, path: str = "state") -> None:
    """Recursive equality with bitwise tensor comparison; wall-clock timings are skipped."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            if k not in TIMING_KEYS:
                assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
