"""Image-classification training of one child network (Zoph & Le, NASNet, ENAS recipes).

SGD with Nesterov momentum under a per-step schedule, pad-crop/flip/cutout
augmentation, label smoothing, an auxiliary-head loss, ScheduledDropPath,
gradient clipping, AMP on CUDA; validation accuracy every epoch. The step,
evaluation and epoch functions are separate so the ENAS loop can reuse them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from controller_policy.contract import TrainingSpec
from nas_trainer.checkpoint import Checkpointer, GeneratorState
from nas_trainer.datasets import ImageData, ImageSplit
from nas_trainer.epochs import EpochLoop, TrainingFailed, TrainResult, TrialContext, trial_identity
from nas_trainer.measure import trained_figures
from nas_trainer.optim import build_optimizer, build_scheduler, current_lr
from nas_trainer.runtime import Runtime, eval_mode

log = logging.getLogger("nas_trainer")

EVAL_BATCH_SIZE = 512
NAN_CHECK_EVERY = 20
"""Steps between finiteness checks (each one syncs a GPU); end-of-epoch metrics are always checked."""


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches only (a last batch of 1 would break BatchNorm); at least one step."""
    return max(1, n_train // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of ``epoch``: a pure function of (seed, epoch), so resumes replay it."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def classification_loss(
    output: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    training: TrainingSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits): cross-entropy with label smoothing plus the weighted auxiliary-head loss."""
    if isinstance(output, tuple):
        logits, aux = output
        loss = F.cross_entropy(logits, labels, label_smoothing=training.labelSmoothing)
        aux_loss = F.cross_entropy(aux, labels, label_smoothing=training.labelSmoothing)
        return loss + training.model.auxiliaryWeight * aux_loss, logits
    return F.cross_entropy(output, labels, label_smoothing=training.labelSmoothing), output


def set_drop_path(model: nn.Module, training: TrainingSpec, progress: float) -> None:
    """ScheduledDropPath (NASNet): the drop rate rises linearly from 0 to ``model.dropPath``."""
    if hasattr(model, "drop_path_prob"):
        model.drop_path_prob = training.model.dropPath * min(max(progress, 0.0), 1.0)


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    training: TrainingSpec,
    params: list[nn.Parameter],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a prepared batch -> (summed loss, number correct), both still on device."""
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        loss, logits = classification_loss(model(images), labels, training)
    runtime.backward_and_step(loss, optimizer, params, training.gradClip)
    with torch.no_grad():
        correct = (logits.argmax(1) == labels).sum()
    return loss.detach() * labels.shape[0], correct


def evaluate_images(
    model: nn.Module, data: ImageData, split: ImageSplit, runtime: Runtime,
    batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[float, float]:
    """(mean loss, accuracy) on ``split`` without augmentation, in eval mode."""
    n = len(split)
    if n == 0:
        raise TrainingFailed("the evaluation split is empty")
    loss_sum = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.long)
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x = runtime.prepare_images(data.normalize(split.images[start : start + batch_size]))
            y = split.labels[start : start + batch_size]
            with runtime.autocast():
                logits = model(x)
            if isinstance(logits, tuple):
                logits = logits[0]
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    return float(loss_sum) / n, float(correct) / n


def train_image(ctx: TrialContext, model: nn.Module, data: ImageData) -> TrainResult:
    """Train ``model`` on ``data`` per ``ctx.doc.training``.

    Per-epoch metrics: train_loss, train_accuracy (on augmented batches), val_loss,
    val_accuracy, lr, epoch_seconds (with evaluation), samples_per_second (training
    steps only). Final metrics add best_val_accuracy, epochs, what the child costs
    (params, flops, latency_ms, latency_batch: ``nas_trainer.measure``) and, when
    ``reportTestAccuracy`` is set, test_loss and test_accuracy.
    """
    training = ctx.doc.training
    rt = ctx.runtime
    model = rt.prepare_model(model)
    data = data.to(rt.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, training)
    n_train = len(data.train)
    steps = steps_per_epoch(n_train, training.batchSize)
    scheduler = build_scheduler(optimizer, training, steps)
    aug_gen = torch.Generator().manual_seed(ctx.doc.seed)
    objects: dict[str, Any] = {
        "model": model, "optimizer": optimizer, "scheduler": scheduler,
        "augment_rng": GeneratorState(aug_gen),
    }
    if rt.scaler is not None:
        objects["scaler"] = rt.scaler
    loop = EpochLoop(ctx, Checkpointer(ctx.doc.checkpointDir, trial_identity(ctx), objects))
    loop.resume()
    total_steps = steps * training.epochs
    model.train()

    for epoch in loop.remaining_epochs():
        started = time.perf_counter()
        part = loop.progress.partial
        loss_sum = torch.tensor(part.get("loss_sum", 0.0), device=rt.device)
        correct = torch.tensor(int(part.get("correct", 0)), device=rt.device)
        seen = int(part.get("seen", 0))
        order = epoch_permutation(n_train, ctx.doc.seed, epoch).to(rt.device)
        for step in range(loop.progress.step, steps):
            if loop.stop_requested():
                loop.interrupt({"loss_sum": float(loss_sum), "correct": float(correct), "seen": seen})
            idx = order[step * training.batchSize : (step + 1) * training.batchSize]
            images, labels = data.train.images[idx], data.train.labels[idx]
            if training.augment:
                x = data.augment(images, training.cutout, aug_gen)
            else:
                x = data.normalize(images)
            set_drop_path(model, training, loop.progress.global_step / total_steps)
            step_loss, step_correct = train_step(
                model, rt.prepare_images(x), labels, optimizer, rt, training, params
            )
            scheduler.step()
            loss_sum += step_loss
            correct += step_correct
            seen += int(labels.shape[0])
            loop.advance()
            if (step + 1) % NAN_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                raise TrainingFailed(
                    f"training loss is not finite at epoch {epoch} step {step}: training "
                    "diverged; lower training.learningRate or set training.gradClip"
                )
        train_seconds = time.perf_counter() - started
        val_loss, val_acc = evaluate_images(model, data, data.val, rt)
        metrics = {
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_accuracy": float(correct) / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": current_lr(optimizer),
            "epoch_seconds": time.perf_counter() - started,
            "samples_per_second": seen / max(train_seconds, 1e-9),
        }
        loop.end_epoch(metrics)

    final = final_image_metrics(ctx, model, data, loop)
    cost, device = trained_figures(
        model, "image", {"input_shape": data.input_shape, "num_classes": data.num_classes}, rt.device
    )
    final.update(cost)
    return TrainResult(final, loop.progress.history, device=device)


def final_image_metrics(
    ctx: TrialContext, model: nn.Module, data: ImageData, loop: EpochLoop
) -> dict[str, float]:
    history = loop.progress.history
    final = dict(history[-1])
    final["best_val_accuracy"] = max(h["val_accuracy"] for h in history)
    final["epochs"] = float(len(history))
    if ctx.doc.training.reportTestAccuracy:
        if data.test is None:
            raise TrainingFailed(f"dataset {data.name} has no test split")
        final["test_loss"], final["test_accuracy"] = evaluate_images(model, data, data.test, ctx.runtime)
    return final

