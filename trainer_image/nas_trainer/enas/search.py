"""The ENAS alternating loop and the derivation of the final architecture (docs/papers.md §4).

Per epoch:

1. omega: one pass of SGD over the training split, a freshly sampled child per
   minibatch (M = 1), through the supernet (optimizer and schedule from
   ``training``: Nesterov + SGDR for images, plain SGD + clip for PTB-like text).
2. theta: ``controllerStepsPerEpoch`` REINFORCE updates. Each samples
   ``controllerBatch`` children, scores each on the step's validation minibatch
   with the shared weights (accuracy, or c/ppl for language), and tells the
   reward for exactly that proposal; the ``reinforce`` strategy then updates the
   log-probability of exactly those token lists against its EMA baseline, with
   the entropy bonus of the space's defaults. All children of one step share the
   minibatch, so they are compared on equal terms.

Each epoch is reported like a normal trial's epoch through ``EpochLoop`` and the
supernet, its optimizer and schedule, the controller strategy and the RNGs are
checkpointed with it; a stop request is honoured between any two steps of
either phase. At the end ``deriveSamples`` children are sampled and scored on
one validation minibatch; the best is evaluated on the whole validation split
with the shared weights and returned as the trial's architecture.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from controller_policy.contract import EnasSpec
from controller_policy.spaces import Architecture
from nas_trainer.checkpoint import Checkpointer
from nas_trainer.child import DATA_SPLIT_SEED
from nas_trainer.datasets import ImageData, load_dataset
from nas_trainer.enas.build import build_strategy, build_supernet, enas_space
from nas_trainer.enas.tasks import ImageTask, LanguageTask, Task
from nas_trainer.epochs import EpochLoop, TrainingFailed, TrainResult, TrialContext, trial_identity
from nas_trainer.optim import build_optimizer, build_scheduler, current_lr
from nas_trainer.runtime import seed_everything

log = logging.getLogger("nas_trainer")


@dataclass
class EpochTally:
    """Running sums of one epoch, restorable from ``Progress.partial`` after an interruption."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    controller_steps: int = 0
    metric_sum: float = 0.0
    metric_count: int = 0
    metric_best: float | None = None
    entropy_sum: float = 0.0

    @classmethod
    def restore(cls, partial: dict[str, float], device: torch.device) -> EpochTally:
        best = partial.get("metric_best")
        return cls(
            loss_sum=torch.tensor(partial.get("loss_sum", 0.0), device=device),
            correct=torch.tensor(partial.get("correct", 0.0), device=device),
            seen=int(partial.get("seen", 0)),
            controller_steps=int(partial.get("controller_steps", 0)),
            metric_sum=float(partial.get("metric_sum", 0.0)),
            metric_count=int(partial.get("metric_count", 0)),
            metric_best=None if best is None or math.isnan(best) else float(best),
            entropy_sum=float(partial.get("entropy_sum", 0.0)),
        )

    def partial(self) -> dict[str, float]:
        return {
            "loss_sum": float(self.loss_sum), "correct": float(self.correct),
            "seen": float(self.seen), "controller_steps": float(self.controller_steps),
            "metric_sum": self.metric_sum, "metric_count": float(self.metric_count),
            "metric_best": math.nan if self.metric_best is None else self.metric_best,
            "entropy_sum": self.entropy_sum,
        }


class EnasSearch:
    """One ENAS search trial: supernet, controller, alternating training, derivation."""

    def __init__(self, ctx: TrialContext) -> None:
        doc = ctx.doc
        rt = ctx.runtime
        self.ctx = ctx
        self.enas: EnasSpec = doc.enas or EnasSpec()
        self.space = enas_space(doc)
        data = load_dataset(doc.dataset, DATA_SPLIT_SEED, kind=self.space.kind)  # type: ignore[arg-type]
        seed_everything(doc.seed)  # initial shared weights depend on the trial's seed only
        self.supernet = rt.prepare_model(build_supernet(self.space, doc.training.model, data))
        data = data.to(rt.device)
        self.task: Task
        if isinstance(data, ImageData):
            self.task = ImageTask(self.supernet, data, doc.training, rt, doc.seed)
        else:
            self.task = LanguageTask(
                self.supernet, data, doc.training, rt, doc.seed, doc.objective.constant
            )
        self.strategy = build_strategy(self.space, self.enas, doc.seed)
        self.params = [p for p in self.supernet.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, doc.training)
        self.scheduler = build_scheduler(self.optimizer, doc.training, self.task.steps)
        objects: dict[str, Any] = {
            "supernet": self.supernet, "optimizer": self.optimizer, "scheduler": self.scheduler,
            "controller": self.strategy, **self.task.state_objects(),
        }
        if rt.scaler is not None:
            objects["scaler"] = rt.scaler
        self.loop = EpochLoop(ctx, Checkpointer(doc.checkpointDir, trial_identity(ctx), objects))

    # --- sampling ---------------------------------------------------------------------
    def sample(self, n: int) -> list[list[int]]:
        """``n`` token lists from the current controller (no graph kept; the strategy's RNG)."""
        with torch.no_grad():
            tokens, _, _ = self.strategy.controller.sample(self.strategy.generator, n)
        return [self.space.validate_tokens(t) for t in tokens.tolist()]

    # --- one epoch ----------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, float]:
        loop, task, rt = self.loop, self.task, self.ctx.runtime
        started = self._clock()
        tally = EpochTally.restore(loop.progress.partial, rt.device)
        task.start_epoch(epoch, loop.progress.carry)
        check_every = 1 if rt.device.type == "cpu" else 25  # a finiteness check syncs the GPU
        self.supernet.train()
        for step in range(loop.progress.step, task.steps):
            if loop.stop_requested():
                loop.interrupt(tally.partial(), task.carry())
            loss, correct, n = task.omega_step(step, self.sample(1)[0], self.optimizer, self.params)
            self.scheduler.step()
            tally.loss_sum += loss
            tally.correct += correct
            tally.seen += n
            loop.advance()
            if (step + 1) % check_every == 0 and not torch.isfinite(tally.loss_sum):
                raise TrainingFailed(
                    f"shared-weight training loss is not finite at epoch {epoch} step {step}: "
                    "lower training.learningRate or set training.gradClip"
                )
        omega_done = self._clock()
        for index in range(tally.controller_steps, self.enas.controllerStepsPerEpoch):
            if loop.stop_requested():
                loop.interrupt(tally.partial(), task.carry())
            self.controller_step(epoch, index, tally)
        controller_done = self._clock()
        return {
            **task.epoch_metrics(float(tally.loss_sum), float(tally.correct), tally.seen),
            task.metric: tally.metric_sum / max(tally.metric_count, 1),
            f"best_sampled_{task.metric}": float(tally.metric_best or 0.0),
            "controller_entropy": tally.entropy_sum / max(tally.controller_steps, 1),
            "controller_baseline": float(self.strategy.baseline or 0.0),
            "controller_updates": float(self.strategy.updates),
            "lr": current_lr(self.optimizer),
            "omega_seconds": omega_done - started,
            "controller_seconds": controller_done - omega_done,
            "epoch_seconds": time.perf_counter() - started,
        }

    def _clock(self) -> float:
        """Wall time after the device has finished its queued work (phase timings)."""
        if self.ctx.runtime.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.runtime.device)
        return time.perf_counter()

    def controller_step(self, epoch: int, index: int, tally: EpochTally) -> None:
        """One REINFORCE update from ``controllerBatch`` children scored on one validation batch.

        The children are drawn in one batched controller pass: the update comes only after the
        last reward, so every child is sampled from the same controller either way."""
        batch = self.task.val_batch_at(epoch, index)
        updates = self.strategy.updates
        for proposal in self.strategy.ask_batch(self.enas.controllerBatch):
            metric = self.task.score(proposal.architecture.tokens, batch)
            self.strategy.tell(proposal.id, self.task.reward(metric))
            tally.metric_sum += metric
            tally.metric_count += 1
            if tally.metric_best is None or self._better(metric, tally.metric_best):
                tally.metric_best = metric
        if self.strategy.updates != updates + 1:
            raise RuntimeError("the controller did not update once per controllerBatch rewards")
        tally.entropy_sum += float(self.strategy.stats.get("last_mean_entropy") or 0.0)
        tally.controller_steps += 1

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.task.higher_is_better else a < b

    # --- derivation -------------------------------------------------------------------------
    def derive(self) -> tuple[Architecture, dict[str, float]]:
        """Sample ``deriveSamples`` children, keep the best on one validation batch, evaluate it."""
        batch = self.task.val_batch_at(self.loop.epochs, 0)
        best_tokens: list[int] | None = None
        best_score = 0.0
        for tokens in self.sample(self.enas.deriveSamples):
            score = self.task.score(tokens, batch)
            if best_tokens is None or self._better(score, best_score):
                best_tokens, best_score = tokens, score
        assert best_tokens is not None
        metrics = self.task.evaluate(best_tokens)
        metrics[f"derive_batch_{self.task.metric}"] = best_score
        metrics["derive_samples"] = float(self.enas.deriveSamples)
        if self.ctx.doc.training.reportTestAccuracy:
            metrics.update(self.task.evaluate(best_tokens, "test"))
        return self.space.architecture(best_tokens), metrics

    # --- the whole trial ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.loop.resume()
        for epoch in self.loop.remaining_epochs():
            self.loop.end_epoch(self.run_epoch(epoch))
        architecture, derived = self.derive()
        history = self.loop.progress.history
        key = f"best_sampled_{self.task.metric}"
        best_sampled = [h[key] for h in history if key in h]
        final = {
            **history[-1],
            **derived,
            "epochs": float(len(history)),
            "params": float(sum(p.numel() for p in self.params)),
        }
        if best_sampled:
            pick = max if self.task.higher_is_better else min
            final[key] = pick(best_sampled)
        log.info("derived %s: %s", architecture.space,
                 " ".join(f"{k}={v:.4g}" for k, v in derived.items()))
        return TrainResult(final, history, architecture=architecture)
