"""One DARTS search as one trial (docs/papers.md §8, DARTS; the trial contract: docs/design.md §4).

Per step: the global batch (``training.batchSize``) of training images and one
validation batch are cut into per-worker shards; alpha takes one Adam step on
the validation shard (first or second order, ``bilevel``), then the weights one
SGD step on the training shard, both with gradients averaged over workers.
Batches are pure functions of (seed, epoch, step), so a resumed search sees
exactly the batches an uninterrupted one would.

Each epoch is reported through ``EpochLoop`` (rank 0 only) with the derived
cell's skip-edge counts, the collapse measure of DARTS+ / DARTS-; with
``darts.earlyStop: skip-count`` the search ends after the first epoch whose
derived normal cell holds ``skipLimit`` or more skip edges (DARTS+). Stop
requests are agreed on by all workers at the same poll, so every worker stops at
the same step; rank 0 checkpoints weights, alpha, both optimizers, the schedule
and the augmentation RNG, and on resume hands that state to the other workers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict
from typing import Any

import torch

from controller_policy.contract import DartsSpec
from controller_policy.spaces import Architecture, InvalidArchitecture, make_space
from controller_policy.spaces.enas_micro import EnasMicroSpace
from nas_trainer.checkpoint import Checkpointer, GeneratorState, Progress
from nas_trainer.child import DATA_SPLIT_SEED
from nas_trainer.darts.bilevel import Batch, Bilevel
from nas_trainer.darts.collective import Collective
from nas_trainer.darts.derive import alpha_entropy, derive_tokens, skip_edges
from nas_trainer.darts.supernet import DartsSupernet
from nas_trainer.datasets import ImageData, load_dataset
from nas_trainer.enas.tasks import VAL_BATCH_SALT
from nas_trainer.epochs import EpochLoop, TrainingFailed, TrainResult, TrialContext, trial_identity
from nas_trainer.optim import build_optimizer, build_scheduler, current_lr
from nas_trainer.runtime import ConfigError, seed_everything
from nas_trainer.train_image import epoch_permutation, evaluate_images

log = logging.getLogger("nas_trainer")

SPACE = "enas-micro"
TALLY_KEYS = ("train_loss_sum", "train_correct", "train_seen", "val_loss_sum", "val_correct", "val_seen")


class AgreedStop:
    """A stop flag every worker reads the same way at the same poll (one tiny all-reduce)."""

    def __init__(self, stop: Any, collective: Collective) -> None:
        self.stop = stop
        self.collective = collective
        self.agreed = False

    @property
    def requested(self) -> bool:
        if not self.agreed:
            self.agreed = self.collective.any(bool(self.stop.requested))
        return self.agreed

    @property
    def signal_name(self) -> str | None:
        return self.stop.signal_name or ("stop requested by another worker" if self.agreed else None)


def darts_space(space_type: str | None, options: dict[str, Any]) -> EnasMicroSpace:
    """DARTS relaxes the enas-micro cell only."""
    if space_type not in (None, SPACE):
        raise ConfigError(f"spaceType {space_type!r}: mode 'darts' searches the {SPACE} cell; set spaceType: {SPACE}")
    try:
        space = make_space(SPACE, options)
    except (InvalidArchitecture, ValueError) as exc:
        raise ConfigError(f"spaceOptions: {exc}") from exc
    assert isinstance(space, EnasMicroSpace)
    return space


class DartsSearch:
    """One DARTS search trial on ``collective``'s workers."""

    def __init__(self, ctx: TrialContext, collective: Collective | None = None) -> None:
        doc = ctx.doc
        self.collective = collective or Collective()
        self.ctx = dataclasses.replace(ctx, stop=AgreedStop(ctx.stop, self.collective))
        self.spec: DartsSpec = doc.darts or DartsSpec()
        self.training = doc.training
        self.space = darts_space(doc.spaceType, doc.spaceOptions)
        data = load_dataset(doc.dataset, DATA_SPLIT_SEED, kind="image")
        if not isinstance(data, ImageData):
            raise ConfigError("dataset: mode 'darts' needs image data")
        shards = self.collective.world * self.spec.accumulate
        self.batch = doc.training.batchSize
        if self.batch % shards:
            raise ConfigError(
                f"training.batchSize {self.batch} must be a multiple of workers x darts.accumulate = {shards}"
            )
        self.steps = len(data.train) // self.batch
        self.val_batches = len(data.val) // self.batch
        if self.steps < 1 or self.val_batches < 1:
            raise ConfigError(
                f"training.batchSize {self.batch} exceeds the training ({len(data.train)}) or validation "
                f"({len(data.val)}) split; lower it or raise dataset.validationSize"
            )
        seed_everything(doc.seed)  # initial weights and alpha depend on the trial's seed only
        model = DartsSupernet(
            nodes=self.space.num_nodes, input_shape=data.input_shape, num_classes=data.num_classes,
            filters=doc.training.model.filters, cells_per_stage=doc.training.model.cellsPerStage,
            stem_multiplier=doc.training.model.stemMultiplier,
        )
        self.model: DartsSupernet = ctx.runtime.prepare_model(model)  # type: ignore[assignment]
        self.data = data.to(ctx.runtime.device)
        self.w_opt = build_optimizer(self.model.weights(), doc.training)
        self.scheduler = build_scheduler(self.w_opt, doc.training, self.steps)
        self.bilevel = Bilevel(self.model, self.w_opt, self.spec, doc.training, self.collective)
        self.augment_rng = torch.Generator().manual_seed(doc.seed)
        self.objects: dict[str, Any] = {
            "supernet": self.model, "weight_optimizer": self.w_opt,
            "arch_optimizer": self.bilevel.a_opt, "scheduler": self.scheduler,
            "augment_rng": GeneratorState(self.augment_rng),
        }
        directory = doc.checkpointDir if self.collective.primary else None
        self.loop = EpochLoop(self.ctx, Checkpointer(directory, trial_identity(self.ctx), self.objects))

    # --- data ------------------------------------------------------------------------------------
    def _shard(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        size = self.batch // self.collective.world
        sl = slice(self.collective.rank * size, (self.collective.rank + 1) * size)
        return self.ctx.runtime.prepare_images(x[sl]), y[sl]

    def train_batch(self, order: torch.Tensor, step: int) -> Batch:
        """This worker's shard of global batch ``step`` (the whole batch is augmented on every worker)."""
        idx = order[step * self.batch : (step + 1) * self.batch]
        split = self.data.train
        images = split.images[idx]
        if self.training.augment:
            x = self.data.augment(images, self.training.cutout, self.augment_rng)
        else:
            x = self.data.normalize(images)
        return self._shard(x, split.labels[idx])

    def val_batch(self, order: torch.Tensor, step: int) -> Batch:
        b = step % self.val_batches
        idx = order[b * self.batch : (b + 1) * self.batch]
        return self._shard(self.data.normalize(self.data.val.images[idx]), self.data.val.labels[idx])

    # --- one epoch -----------------------------------------------------------------------------
    def derived(self) -> list[int]:
        tokens = derive_tokens(dict(self.model.alphas.items()), self.space.num_nodes)
        return self.space.validate_tokens(tokens)

    def run_epoch(self, epoch: int) -> dict[str, float]:
        loop = self.loop
        started = time.perf_counter()
        tally = {k: float(loop.progress.partial.get(k, 0.0)) for k in TALLY_KEYS}
        first_step = loop.progress.step

        def count(prefix: str) -> Any:
            def add(loss_sum: torch.Tensor, correct: torch.Tensor, n: int) -> None:
                tally[f"{prefix}_loss_sum"] += float(loss_sum)
                tally[f"{prefix}_correct"] += float(correct)
                tally[f"{prefix}_seen"] += n
            return add

        order = epoch_permutation(len(self.data.train), self.ctx.doc.seed, epoch).to(self.data.train.images.device)
        val_order = epoch_permutation(len(self.data.val), self.ctx.doc.seed + VAL_BATCH_SALT, epoch).to(
            self.data.val.images.device
        )
        self.model.train()
        for step in range(first_step, self.steps):
            if loop.stop_requested():
                summed = self.collective.sum([tally[k] for k in TALLY_KEYS])
                loop.interrupt(dict(zip(TALLY_KEYS, summed, strict=True)))
            train = self.train_batch(order, step)
            self.bilevel.arch_step(train, self.val_batch(val_order, step), count("val"))
            self.bilevel.weight_step(train, count("train"))
            self.scheduler.step()
            loop.advance()
            if tally["train_loss_sum"] != tally["train_loss_sum"] or abs(tally["train_loss_sum"]) == float("inf"):
                raise TrainingFailed(
                    f"DARTS training loss is not finite at epoch {epoch} step {step}: "
                    "lower training.learningRate or set training.gradClip"
                )
        seconds = time.perf_counter() - started
        totals = dict(zip(TALLY_KEYS, self.collective.sum([tally[k] for k in TALLY_KEYS]), strict=True))
        tokens = self.derived()
        half = len(tokens) // 2
        normal_skips, reduction_skips = skip_edges(tokens[:half]), skip_edges(tokens[half:])
        log.info("epoch %d derived cell %s (normal skips %d)", epoch, tokens, normal_skips)
        metrics = {
            "train_loss": totals["train_loss_sum"] / max(totals["train_seen"], 1),
            "train_accuracy": totals["train_correct"] / max(totals["train_seen"], 1),
            "val_loss": totals["val_loss_sum"] / max(totals["val_seen"], 1),
            "val_accuracy": totals["val_correct"] / max(totals["val_seen"], 1),
            "normal_skip_edges": float(normal_skips),
            "reduction_skip_edges": float(reduction_skips),
            "alpha_entropy_normal": alpha_entropy(self.model.alphas["normal"]),
            "alpha_entropy_reduction": alpha_entropy(self.model.alphas["reduction"]),
            "lr": current_lr(self.w_opt),
            "workers": float(self.collective.world),
            "steps_per_second": (self.steps - first_step) / max(seconds, 1e-9),
            "epoch_seconds": seconds,
        }
        if self.spec.earlyStop == "skip-count" and normal_skips >= self.spec.skipLimit:
            metrics["early_stopped"] = 1.0
        return metrics

    # --- resume on every worker -------------------------------------------------------------------
    def resume(self) -> None:
        """Rank 0 restores the checkpoint; the other workers take its state (their partial sums start at 0)."""
        progress = self.loop.resume() if self.collective.primary else Progress()
        if self.collective.world == 1:
            return
        payload = self.collective.broadcast_object({
            "progress": asdict(progress),
            "objects": {name: obj.state_dict() for name, obj in self.objects.items()},
        })
        if not self.collective.primary:
            for name, obj in self.objects.items():
                obj.load_state_dict(payload["objects"][name])
            self.loop.progress = Progress(**{**payload["progress"], "partial": {}})

    def evaluate(self) -> dict[str, float]:
        """The supernet's loss and accuracy on the whole validation split."""
        loss, acc = evaluate_images(self.model, self.data, self.data.val, self.ctx.runtime)
        return {"supernet_val_loss": loss, "supernet_val_accuracy": acc}

    def run(self) -> TrainResult:
        self.resume()
        for epoch in self.loop.remaining_epochs():
            history = self.loop.progress.history
            if history and history[-1].get("early_stopped"):
                break
            self.loop.end_epoch(self.run_epoch(epoch))
        history = self.loop.progress.history
        tokens = self.derived()
        architecture: Architecture = self.space.architecture(tokens)
        final = {
            **history[-1], **self.evaluate(),
            "epochs": float(len(history)),
            "params": float(sum(p.numel() for p in self.model.weights())),
        }
        log.info("derived %s: %s", SPACE, tokens)
        return TrainResult(final, history, architecture=architecture)
