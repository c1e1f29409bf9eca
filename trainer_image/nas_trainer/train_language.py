"""Word-level language modelling of one recurrent child (Zoph & Le PTB, ENAS RNN recipes).

The corpus is cut into ``batchSize`` parallel streams (batchify) and trained
with truncated backpropagation through time: windows of ``bptt`` tokens, the
hidden state carried across windows but detached, gradients clipped.
Validation perplexity is reported every epoch.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from controller_policy.contract import TrainingSpec
from nas_trainer.checkpoint import Checkpointer
from nas_trainer.datasets import TextData
from nas_trainer.epochs import EpochLoop, TrainingFailed, TrainResult, TrialContext, trial_identity
from nas_trainer.measure import trained_figures
from nas_trainer.optim import build_optimizer, build_scheduler, current_lr
from nas_trainer.runtime import ConfigError, Runtime, eval_mode

log = logging.getLogger("nas_trainer")

EVAL_BATCH_SIZE = 10
DEFAULT_LM_CLIP = 0.25
"""ENAS's clip for PTB; recurrent training without clipping diverges at SGD lr 20."""
NAN_CHECK_EVERY = 20
"""Steps between finiteness checks (each one syncs a GPU); end-of-epoch metrics are always checked."""
Hidden = Any
"""A tensor or a (nested) tuple/list of tensors, whatever the model's ``init_hidden`` returns."""


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """1-D ids -> [batch_size, T] streams (tail dropped), each row a contiguous text stretch."""
    n = ids.numel() // batch_size
    if n < 2:
        raise ConfigError(
            f"{ids.numel()} tokens cannot fill {batch_size} streams of at least 2 tokens; "
            "lower training.batchSize or raise dataset.maxTrainExamples / dataset.validationSize"
        )
    return ids[: n * batch_size].view(batch_size, n).contiguous()


def window_starts(length: int, bptt: int) -> list[int]:
    """Start columns of the BPTT windows over a [B, length] stream (targets are shifted by 1)."""
    return list(range(0, length - 1, bptt))


def get_window(streams: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of one window; the last one may be shorter."""
    end = min(start + bptt, streams.shape[1] - 1)
    return streams[:, start:end], streams[:, start + 1 : end + 1]


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph between windows (truncated BPTT) while keeping the values."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    if isinstance(hidden, (tuple, list)):
        return type(hidden)(detach_hidden(h) for h in hidden)
    return hidden


def hidden_to(hidden: Hidden, device: torch.device) -> Hidden:
    if isinstance(hidden, torch.Tensor):
        return hidden.to(device)
    if isinstance(hidden, (tuple, list)):
        return type(hidden)(hidden_to(h, device) for h in hidden)
    return hidden


def init_hidden(model: nn.Module, batch_size: int, device: torch.device) -> Hidden:
    return hidden_to(model.init_hidden(batch_size), device)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def perplexity(loss: float) -> float:
    """exp(loss), capped so a diverged model reports a huge finite number instead of inf."""
    return math.exp(min(loss, 700.0))


def lm_train_step(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    hidden: Hidden,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    clip: float,
    params: list[nn.Parameter],
) -> tuple[torch.Tensor, Hidden]:
    """One truncated-BPTT step -> (mean loss on device, detached new hidden state)."""
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        logits, hidden = model(inputs, detach_hidden(hidden))
    loss = lm_loss(logits, targets)
    runtime.backward_and_step(loss, optimizer, params, clip)
    return loss.detach(), detach_hidden(hidden)


def evaluate_language(
    model: nn.Module, streams: torch.Tensor, bptt: int, runtime: Runtime
) -> float:
    """Mean loss per token over ``streams`` ([B, T], from ``batchify``), in eval mode."""
    total = torch.zeros((), device=runtime.device)
    count = 0
    with eval_mode(model):
        hidden = init_hidden(model, streams.shape[0], runtime.device)
        for start in window_starts(streams.shape[1], bptt):
            x, y = get_window(streams, start, bptt)
            with runtime.autocast():
                logits, hidden = model(x, hidden)
            total += lm_loss(logits, y) * y.numel()
            count += y.numel()
    return float(total) / count


def train_language(ctx: TrialContext, model: nn.Module, data: TextData) -> TrainResult:
    """Train a language model on ``data`` per ``ctx.doc.training``; returns the final metrics."""
    training: TrainingSpec = ctx.doc.training
    rt = ctx.runtime
    model = rt.prepare_model(model)
    data = data.to(rt.device)
    train_streams = batchify(data.train, training.batchSize)
    val_streams = batchify(data.valid, EVAL_BATCH_SIZE)
    starts = window_starts(train_streams.shape[1], training.bptt)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, training)
    scheduler = build_scheduler(optimizer, training, len(starts))
    clip = training.gradClip if training.gradClip is not None else DEFAULT_LM_CLIP
    objects: dict[str, Any] = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    if rt.scaler is not None:
        objects["scaler"] = rt.scaler
    loop = EpochLoop(ctx, Checkpointer(ctx.doc.checkpointDir, trial_identity(ctx), objects))
    loop.resume()
    model.train()

    for epoch in loop.remaining_epochs():
        started = time.perf_counter()
        part, carry = loop.progress.partial, loop.progress.carry
        loss_sum = torch.tensor(part.get("loss_sum", 0.0), device=rt.device)
        tokens = int(part.get("tokens", 0))
        if "hidden" in carry:
            hidden = hidden_to(carry["hidden"], rt.device)
        else:
            hidden = init_hidden(model, training.batchSize, rt.device)
        for step in range(loop.progress.step, len(starts)):
            if loop.stop_requested():
                loop.interrupt(
                    {"loss_sum": float(loss_sum), "tokens": tokens}, {"hidden": hidden_to(hidden, torch.device("cpu"))}
                )
            x, y = get_window(train_streams, starts[step], training.bptt)
            loss, hidden = lm_train_step(model, x, y, hidden, optimizer, rt, clip, params)
            scheduler.step()
            loss_sum += loss * y.numel()
            tokens += y.numel()
            loop.advance()
            if (step + 1) % NAN_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                raise TrainingFailed(
                    f"training loss is not finite at epoch {epoch} step {step}: training "
                    "diverged; lower training.learningRate or training.gradClip"
                )
        train_seconds = time.perf_counter() - started
        train_loss = float(loss_sum) / max(tokens, 1)
        val_loss = evaluate_language(model, val_streams, training.bptt, rt)
        loop.end_epoch({
            "train_loss": train_loss,
            "train_perplexity": perplexity(train_loss),
            "val_loss": val_loss,
            "val_perplexity": perplexity(val_loss),
            "lr": current_lr(optimizer),
            "epoch_seconds": time.perf_counter() - started,
            "tokens_per_second": tokens / max(train_seconds, 1e-9),
        })

    history = loop.progress.history
    final = dict(history[-1])
    final["best_val_perplexity"] = min(h["val_perplexity"] for h in history)
    final["epochs"] = float(len(history))
    if training.reportTestAccuracy:
        test_loss = evaluate_language(model, batchify(data.test, EVAL_BATCH_SIZE), training.bptt, rt)
        final["test_loss"], final["test_perplexity"] = test_loss, perplexity(test_loss)
    cost, device = trained_figures(model, "language", {"vocab_size": data.vocab_size}, rt.device)
    final.update(cost)
    return TrainResult(final, history, device=device)
