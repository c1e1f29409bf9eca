"""What several workers of one weight-sharing search agree on, through ``torch.distributed``.

Every worker holds the same weights and alpha; each computes gradients on its
own shard of the global batch and ``mean_`` averages them (one flat all-reduce),
so every worker applies the same update and the replicas never drift: this is
data parallelism with an explicit all-reduce (docs/papers.md §8, distributed
weight sharing). ``any`` makes a stop request on one worker a stop on all, at
the same step. With one worker every call is a no-op, so the single-process
search runs the very same code.

The world comes from the standard variables ``WORLD_SIZE``, ``RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` (set by the operator's Indexed Job, by
``torchrun`` or by ``workers`` for local processes); gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_MASTER_ADDR = "MASTER_ADDR"
ENV_MASTER_PORT = "MASTER_PORT"
TIMEOUT = timedelta(seconds=float(os.environ.get("KUBENAS_COLLECTIVE_TIMEOUT_SECONDS", "300")))
"""How long a worker waits for a lost peer before failing the attempt."""


def world_from_env() -> tuple[int, int]:
    """(world size, rank) from the environment; (1, 0) when unset."""
    try:
        world = int(os.environ.get(ENV_WORLD_SIZE, "1"))
        rank = int(os.environ.get(ENV_RANK, "0"))
    except ValueError as exc:
        raise ValueError(f"${ENV_WORLD_SIZE} and ${ENV_RANK} must be integers: {exc}") from exc
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"${ENV_RANK}={rank} is not a rank of ${ENV_WORLD_SIZE}={world}")
    return world, rank


class Collective:
    """All-reduce, broadcast and agreement among ``world`` workers (a no-op for one)."""

    def __init__(self, world: int = 1, rank: int = 0, device: torch.device | None = None) -> None:
        self.world = world
        self.rank = rank
        self.device = device or torch.device("cpu")

    @classmethod
    def join(cls, device: torch.device) -> Collective:
        """Join the process group the environment describes (or none, for a single worker)."""
        world, rank = world_from_env()
        if world == 1:
            return cls()
        if not dist.is_initialized():
            for name in (ENV_MASTER_ADDR, ENV_MASTER_PORT):
                if not os.environ.get(name):
                    raise ValueError(f"${name} is required when ${ENV_WORLD_SIZE}={world}")
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
        return cls(world, rank, device)

    @property
    def primary(self) -> bool:
        """Rank 0: the worker that reports and checkpoints."""
        return self.rank == 0

    def mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average ``tensors`` in place across workers, in one flat all-reduce."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over workers (float64, for epoch tallies)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def any(self, flag: bool) -> bool:
        """True on every worker when it is true on any (a stop request, say)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every worker (checkpointed state after a resume)."""
        if self.world == 1:
            return obj
        box = [obj if self.primary else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class AveragingOptimizer:
    """An optimizer whose ``step`` first averages every gradient over the workers.

    For ENAS, where each worker trains its own child: a weight no child touched keeps
    ``grad = None`` (so weight decay leaves it alone, as in one process); the others get
    the sum of the workers' gradients divided by the world size, the Monte Carlo
    average over N children of the ENAS paper's gradient (docs/papers.md §4). Clipping,
    done by the caller before ``step``, applies per child.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, collective: Collective) -> None:
        self.optimizer = optimizer
        self.collective = collective

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        used = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=self.collective.device)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        self.collective.mean_([*grads, used])
        for p, g, u in zip(params, grads, used.tolist(), strict=True):
            p.grad = g if u > 0 else None
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
