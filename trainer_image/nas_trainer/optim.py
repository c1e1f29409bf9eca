"""Optimizer and learning-rate schedules of the papers' child-training recipes.

Schedules are per step (a fractional epoch), so a cosine or SGDR curve is smooth
within an epoch and a resume mid-epoch lands on exactly the same learning rate.
They are expressed as ``LambdaLR`` factors: the scheduler's ``state_dict`` is
then just a step counter, which checkpoints restore exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from controller_policy.contract import TrainingSpec
from nas_trainer.runtime import ConfigError


def build_optimizer(
    params: Iterable[torch.nn.Parameter], training: TrainingSpec
) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum and L2 weight decay on every parameter (as the papers' code)."""
    nesterov = training.nesterov and training.momentum > 0
    if training.nesterov and training.momentum == 0:
        raise ConfigError("training.nesterov needs training.momentum > 0 (e.g. 0.9)")
    return torch.optim.SGD(
        params,
        lr=training.learningRate,
        momentum=training.momentum,
        nesterov=nesterov,
        weight_decay=training.weightDecay,
    )


def lr_at(training: TrainingSpec, epoch_progress: float) -> float:
    """The learning rate after ``epoch_progress`` epochs (a float; 0 = start of training)."""
    base, floor, epochs = training.learningRate, training.learningRateMin, training.epochs
    t = max(0.0, epoch_progress)
    if training.schedule == "constant":
        return base
    if training.schedule == "cosine":
        frac = min(t / epochs, 1.0)
        return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if training.schedule == "sgdr":
        period = float(training.sgdrPeriod)
        while t >= period:  # SGDR (Loshchilov & Hutter): restart, next cycle T_mul times longer
            t -= period
            period *= training.sgdrMultiplier
        return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * t / period))
    milestones = step_milestones(training)
    passed = sum(1 for m in milestones if math.floor(t + 1e-9) >= m)
    return base * training.stepFactor**passed


def step_milestones(training: TrainingSpec) -> list[int]:
    if training.stepMilestones is not None:
        bad = [m for m in training.stepMilestones if m < 1]
        if bad:
            raise ConfigError(f"training.stepMilestones must be epochs >= 1, got {bad}")
        return sorted(training.stepMilestones)
    e = training.epochs
    return sorted({max(1, e // 2), max(1, (3 * e) // 4)})


def build_scheduler(
    optimizer: torch.optim.Optimizer, training: TrainingSpec, steps_per_epoch: int
) -> LambdaLR:
    """A per-step scheduler following ``training.schedule``; call ``step()`` after each batch."""
    if steps_per_epoch < 1:
        raise ConfigError("an epoch has no training steps: the training split is empty")
    if training.schedule in ("cosine", "sgdr") and training.learningRateMin > training.learningRate:
        raise ConfigError(
            f"training.learningRateMin ({training.learningRateMin}) exceeds "
            f"training.learningRate ({training.learningRate})"
        )
    step_milestones(training)  # validate early, not at the first milestone
    base = training.learningRate
    factor: Callable[[int], float] = lambda step: lr_at(training, step / steps_per_epoch) / base  # noqa: E731
    return LambdaLR(optimizer, factor)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
