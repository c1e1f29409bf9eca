"""ENAS on several workers (docs/papers.md §4; the machinery shared with DARTS is in ``collective``).

Each shared-weight step trains N children, one per worker, on the step's batch,
and applies the average of their gradients (``AveragingOptimizer``): the ENAS
paper's gradient estimate with M = N sampled children instead of M = 1. Rank 0
samples the N children from the controller (so the controller's RNG lives in
one place, its checkpoint) and sends each worker its own; rank 0 alone runs the
controller phase and then hands the controller's state to the others, while they
poll the agreed stop flag in step with it. Rank 0 reports and checkpoints; a
resume hands its restored state to every worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from typing import Any

from nas_trainer.checkpoint import Progress
from nas_trainer.darts.collective import AveragingOptimizer, Collective
from nas_trainer.darts.search import AgreedStop
from nas_trainer.enas.search import EnasSearch, EpochTally
from nas_trainer.epochs import EpochLoop, TrialContext
from nas_trainer.runtime import ConfigError


class SharedResumeLoop(EpochLoop):
    """``resume`` restores on rank 0 and broadcasts the state (progress included) to the rest."""

    def __init__(self, loop: EpochLoop, collective: Collective) -> None:
        super().__init__(loop.ctx, loop.checkpointer)
        self.collective = collective
        if not collective.primary:
            self.checkpointer.directory = None

    def resume(self) -> Progress:
        progress = super().resume() if self.collective.primary else Progress()
        objects = self.checkpointer.objects
        payload = self.collective.broadcast_object({
            "progress": asdict(progress),
            "objects": {name: obj.state_dict() for name, obj in objects.items()},
        })
        if not self.collective.primary:
            for name, obj in objects.items():
                obj.load_state_dict(payload["objects"][name])
            self.progress = Progress(**payload["progress"])
        return self.progress


class WorkerEnasSearch(EnasSearch):
    """``EnasSearch`` with one child per worker per step and one controller on rank 0."""

    def __init__(self, ctx: TrialContext, collective: Collective) -> None:
        if ctx.runtime.scaler is not None and collective.world > 1:
            raise ConfigError("training.amp 'fp16' is not supported with several ENAS workers; use 'bf16'")
        self.collective = collective
        super().__init__(dataclasses.replace(ctx, stop=AgreedStop(ctx.stop, collective)))
        self.loop = SharedResumeLoop(self.loop, collective)
        self.optimizer = AveragingOptimizer(self.optimizer, collective)  # type: ignore[assignment]

    def sample(self, n: int) -> list[list[int]]:
        """One child per worker for a shared-weight step (n = 1); otherwise rank 0's samples."""
        if n != 1:
            return super().sample(n)
        children = super().sample(self.collective.world) if self.collective.primary else None
        children = self.collective.broadcast_object(children)
        return [children[self.collective.rank]]

    def controller_step(self, epoch: int, index: int, tally: EpochTally) -> None:
        if self.collective.primary:
            super().controller_step(epoch, index, tally)
        else:
            tally.controller_steps += 1
        if index == self.enas.controllerStepsPerEpoch - 1:
            state: Any = self.strategy.state_dict() if self.collective.primary else None
            state = self.collective.broadcast_object(state)
            if not self.collective.primary:
                self.strategy.load_state_dict(state)

    def run_epoch(self, epoch: int) -> dict[str, float]:
        metrics = super().run_epoch(epoch)
        metrics["children_per_step"] = float(self.collective.world)
        return metrics
