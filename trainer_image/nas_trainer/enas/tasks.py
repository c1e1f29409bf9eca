"""What the ENAS loop does with data: one shared-weight step, one child's score, a full evaluation.

The search loop (``search``) is the same for images and language; these two
adapters hold everything that differs. Both reuse the plain trainers' step and
evaluation functions on a ``SampledChild`` view of the supernet, so a
shared-weight step is the same code as a normal trial's step.

Validation minibatches are a pure function of (seed, epoch, index), so a resumed
run scores children on exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from controller_policy.contract import TrainingSpec
from nas_trainer.checkpoint import GeneratorState
from nas_trainer.datasets import ImageData, TextData
from nas_trainer.enas.shared import SampledChild
from nas_trainer.epochs import TrainingFailed
from nas_trainer.runtime import Runtime, eval_mode
from nas_trainer.train_image import epoch_permutation, evaluate_images, steps_per_epoch, train_step
from nas_trainer.train_language import (
    DEFAULT_LM_CLIP,
    EVAL_BATCH_SIZE,
    batchify,
    evaluate_language,
    get_window,
    hidden_to,
    init_hidden,
    lm_loss,
    lm_train_step,
    perplexity,
    window_starts,
)

VAL_BATCH_SALT = 7_919
"""Keeps validation-batch orders apart from the training order of the same (seed, epoch)."""


class ImageTask:
    """Classification: reward = accuracy of a child on one unaugmented validation minibatch."""

    kind = "image"
    metric = "val_accuracy"
    higher_is_better = True

    def __init__(
        self, supernet: nn.Module, data: ImageData, training: TrainingSpec, runtime: Runtime, seed: int
    ) -> None:
        self.supernet = supernet
        self.data = data
        self.training = training
        self.runtime = runtime
        self.seed = seed
        self.steps = steps_per_epoch(len(data.train), training.batchSize)
        self.val_batch = min(training.batchSize, len(data.val))
        self.val_batches = max(1, len(data.val) // self.val_batch)
        self.augment_rng = torch.Generator().manual_seed(seed)
        self._order: tuple[int, torch.Tensor] | None = None

    def state_objects(self) -> dict[str, Any]:
        return {"augment_rng": GeneratorState(self.augment_rng)}

    def start_epoch(self, epoch: int, carry: dict[str, Any]) -> None:
        order = epoch_permutation(len(self.data.train), self.seed, epoch)
        self._order = (epoch, order.to(self.runtime.device))

    def omega_step(
        self, step: int, tokens: Sequence[int], optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One SGD step of the child ``tokens`` -> (summed loss, correct, examples)."""
        assert self._order is not None
        bs = self.training.batchSize
        idx = self._order[1][step * bs : (step + 1) * bs]
        images, labels = self.data.train.images[idx], self.data.train.labels[idx]
        if self.training.augment:
            x = self.data.augment(images, self.training.cutout, self.augment_rng)
        else:
            x = self.data.normalize(images)
        child = SampledChild(self.supernet, tokens)
        loss, correct = train_step(
            child, self.runtime.prepare_images(x), labels, optimizer, self.runtime,
            self.training, params,
        )
        return loss, correct, int(labels.shape[0])

    def carry(self) -> dict[str, Any]:
        return {}

    def val_batch_at(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation minibatch ``index`` of ``epoch``'s shuffled order (cycling), normalised."""
        order = epoch_permutation(self.val_batches, self.seed + VAL_BATCH_SALT, epoch)
        b = int(order[index % self.val_batches])
        sl = slice(b * self.val_batch, (b + 1) * self.val_batch)
        x = self.data.normalize(self.data.val.images[sl])
        return self.runtime.prepare_images(x), self.data.val.labels[sl]

    def score(self, tokens: Sequence[int], batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Accuracy of the child on ``batch`` with the shared weights (BN on batch statistics)."""
        x, y = batch
        child = SampledChild(self.supernet, tokens)
        with eval_mode(child), self.runtime.autocast():
            logits = child(x)
        return float((logits.argmax(1) == y).float().mean())

    def reward(self, metric: float) -> float:
        return metric

    def evaluate(self, tokens: Sequence[int], split: str = "val") -> dict[str, float]:
        """Loss and accuracy of the child on a whole split with the shared weights."""
        target = self.data.val if split == "val" else self.data.test
        if target is None:
            raise TrainingFailed(f"dataset {self.data.name} has no {split} split")
        loss, acc = evaluate_images(SampledChild(self.supernet, tokens), self.data, target, self.runtime)
        return {f"{split}_loss": loss, f"{split}_accuracy": acc}

    def epoch_metrics(self, loss_sum: float, correct: float, seen: int) -> dict[str, float]:
        n = max(seen, 1)
        return {"train_loss": loss_sum / n, "train_accuracy": correct / n}


class LanguageTask:
    """Language modelling: reward = c / perplexity of a child on one validation window (c = 80)."""

    kind = "language"
    metric = "val_perplexity"
    higher_is_better = False

    def __init__(
        self, supernet: nn.Module, data: TextData, training: TrainingSpec, runtime: Runtime,
        seed: int, reward_constant: float,
    ) -> None:
        self.supernet = supernet
        self.data = data
        self.training = training
        self.runtime = runtime
        self.seed = seed
        self.reward_constant = reward_constant
        self.clip = training.gradClip if training.gradClip is not None else DEFAULT_LM_CLIP
        self.train_streams = batchify(data.train, training.batchSize)
        self.starts = window_starts(self.train_streams.shape[1], training.bptt)
        self.steps = len(self.starts)
        self.val_streams = batchify(data.valid, EVAL_BATCH_SIZE)
        self.val_starts = window_starts(self.val_streams.shape[1], training.bptt)
        self.hidden: Any = None

    def state_objects(self) -> dict[str, Any]:
        return {}

    def start_epoch(self, epoch: int, carry: dict[str, Any]) -> None:
        if "hidden" in carry:
            self.hidden = hidden_to(carry["hidden"], self.runtime.device)
        else:
            self.hidden = init_hidden(self.supernet, self.training.batchSize, self.runtime.device)

    def omega_step(
        self, step: int, tokens: Sequence[int], optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One truncated-BPTT step of the child ``tokens`` -> (summed loss, 0, tokens)."""
        x, y = get_window(self.train_streams, self.starts[step], self.training.bptt)
        child = SampledChild(self.supernet, tokens)
        loss, self.hidden = lm_train_step(
            child, x, y, self.hidden, optimizer, self.runtime, self.clip, params
        )
        return loss * y.numel(), torch.zeros(()), int(y.numel())

    def carry(self) -> dict[str, Any]:
        """The recurrent state carried across windows (and across sampled children, as ENAS does)."""
        return {"hidden": hidden_to(self.hidden, torch.device("cpu"))}

    def val_batch_at(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        order = epoch_permutation(len(self.val_starts), self.seed + VAL_BATCH_SALT, epoch)
        start = self.val_starts[int(order[index % len(self.val_starts)])]
        return get_window(self.val_streams, start, self.training.bptt)

    def score(self, tokens: Sequence[int], batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Perplexity of the child on one window, from a zero state, with the shared weights."""
        x, y = batch
        child = SampledChild(self.supernet, tokens)
        with eval_mode(child), self.runtime.autocast():
            logits, _ = child(x, init_hidden(child, x.shape[0], self.runtime.device))
        return perplexity(float(lm_loss(logits, y)))

    def reward(self, metric: float) -> float:
        return self.reward_constant / metric

    def evaluate(self, tokens: Sequence[int], split: str = "val") -> dict[str, float]:
        """Loss and perplexity of the child on a whole split with the shared weights."""
        ids = self.data.valid if split == "val" else self.data.test
        streams = self.val_streams if split == "val" else batchify(ids, EVAL_BATCH_SIZE)
        loss = evaluate_language(
            SampledChild(self.supernet, tokens), streams, self.training.bptt, self.runtime
        )
        return {f"{split}_loss": loss, f"{split}_perplexity": perplexity(loss)}

    def epoch_metrics(self, loss_sum: float, correct: float, seen: int) -> dict[str, float]:
        loss = loss_sum / max(seen, 1)
        return {"train_loss": loss, "train_perplexity": perplexity(loss)}


Task = ImageTask | LanguageTask
