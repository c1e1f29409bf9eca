"""DARTS's bilevel optimisation: one architecture step, then one weight step (docs/papers.md §8).

Architecture step on a validation batch:

- first order: grad_alpha L_val(w, alpha);
- second order: the unrolled one-step approximation
  grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha) -
  grad_alpha L_train(w-, alpha)) / (2 eps), where w' = w - xi * (the SGD step
  with momentum and weight decay), xi the current weight learning rate,
  w+- = w +- eps * grad_w' L_val(w', alpha) and eps = 0.01 / ||grad_w' L_val||:
  the Hessian-vector product by finite differences, as the paper does.

Weight step on a training batch: SGD (momentum, weight decay, clipping) on
grad_w L_train(w, alpha). Every gradient here is the mean over the worker's
micro-batches and then over workers (``Collective.mean_``), so N workers on
shards compute exactly what one worker computes over the combined batch with
the same micro-batches (BN statistics are per micro-batch in both cases).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from controller_policy.contract import DartsSpec, TrainingSpec
from nas_trainer.darts.collective import Collective
from nas_trainer.darts.supernet import DartsSupernet
from nas_trainer.train_image import classification_loss

Batch = tuple[torch.Tensor, torch.Tensor]


def micro_batches(batch: Batch, count: int) -> list[Batch]:
    """``count`` equal, contiguous slices of ``batch``."""
    x, y = batch
    size = x.shape[0] // count
    return [(x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(count)]


class Bilevel:
    """The two optimizers of one DARTS search and the steps that use them."""

    def __init__(
        self, model: DartsSupernet, weight_optimizer: torch.optim.SGD, spec: DartsSpec,
        training: TrainingSpec, collective: Collective,
    ) -> None:
        self.model = model
        self.weights = model.weights()
        self.alphas = model.arch_parameters()
        self.w_opt = weight_optimizer
        self.a_opt = torch.optim.Adam(
            self.alphas, lr=spec.archLearningRate, betas=spec.archBetas,
            weight_decay=spec.archWeightDecay,
        )
        self.spec = spec
        self.training = training
        self.collective = collective

    # --- gradients --------------------------------------------------------------------------
    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        loss, logits = classification_loss(self.model(x), y, self.training)
        return loss, (logits.argmax(1) == y).sum()

    def gradients(
        self, batch: Batch, params: Sequence[nn.Parameter],
        tally: Callable[[torch.Tensor, torch.Tensor, int], None] | None = None,
    ) -> list[torch.Tensor]:
        """Mean over micro-batches and workers of grad_params of the loss on ``batch`` (this worker's shard)."""
        parts = micro_batches(batch, self.spec.accumulate)
        total = [torch.zeros_like(p) for p in params]
        for part in parts:
            loss, correct = self._loss(part)
            grads = torch.autograd.grad(loss, list(params), allow_unused=True)
            for acc, g in zip(total, grads, strict=True):
                if g is not None:
                    acc += g
            if tally is not None:
                tally(loss.detach() * part[1].shape[0], correct, int(part[1].shape[0]))
        for acc in total:
            acc /= len(parts)
        self.collective.mean_(total)
        return total

    # --- architecture step ---------------------------------------------------------------------
    def arch_step(
        self, train: Batch, val: Batch,
        tally: Callable[[torch.Tensor, torch.Tensor, int], None] | None = None,
    ) -> None:
        """One Adam step on alpha (first or second order, per ``darts.order``)."""
        if self.spec.order == "first":
            grads = self.gradients(val, self.alphas, tally)
        else:
            grads = self._unrolled_gradients(train, val, tally)
        self.a_opt.zero_grad(set_to_none=True)
        for a, g in zip(self.alphas, grads, strict=True):
            a.grad = g
        self.a_opt.step()

    @torch.no_grad()
    def _virtual_step(self, xi: float, grads: list[torch.Tensor]) -> None:
        """w <- w - xi * (momentum * buffer + grad + weight_decay * w): SGD's next step, unapplied."""
        group = self.w_opt.param_groups[0]
        momentum, decay = group["momentum"], group["weight_decay"]
        for w, g in zip(self.weights, grads, strict=True):
            step = g + decay * w
            buf = self.w_opt.state.get(w, {}).get("momentum_buffer")
            if buf is not None and momentum:
                step = step + momentum * buf
            w.sub_(xi * step)

    @torch.no_grad()
    def _set_weights(self, values: list[torch.Tensor]) -> None:
        for w, v in zip(self.weights, values, strict=True):
            w.copy_(v)

    def _unrolled_gradients(
        self, train: Batch, val: Batch,
        tally: Callable[[torch.Tensor, torch.Tensor, int], None] | None,
    ) -> list[torch.Tensor]:
        xi = float(self.w_opt.param_groups[0]["lr"])
        saved = [w.detach().clone() for w in self.weights]
        n_alpha = len(self.alphas)
        try:
            self._virtual_step(xi, self.gradients(train, self.weights))
            val_grads = self.gradients(val, [*self.alphas, *self.weights], tally)
            d_alpha, d_weights = val_grads[:n_alpha], val_grads[n_alpha:]
            norm = torch.sqrt(sum((g * g).sum() for g in d_weights))  # type: ignore[arg-type]
            eps = self.spec.unrollEpsilon / float(norm.clamp_min(1e-12))
            with torch.no_grad():
                for w, s, d in zip(self.weights, saved, d_weights, strict=True):
                    w.copy_(s + eps * d)
            plus = self.gradients(train, self.alphas)
            with torch.no_grad():
                for w, s, d in zip(self.weights, saved, d_weights, strict=True):
                    w.copy_(s - eps * d)
            minus = self.gradients(train, self.alphas)
        finally:
            self._set_weights(saved)
        return [da - xi * (p - m) / (2 * eps) for da, p, m in zip(d_alpha, plus, minus, strict=True)]

    # --- weight step ------------------------------------------------------------------------
    def weight_step(
        self, train: Batch, tally: Callable[[torch.Tensor, torch.Tensor, int], None] | None = None,
    ) -> None:
        """One SGD step on the weights with the averaged gradient (clipped per ``training.gradClip``)."""
        grads = self.gradients(train, self.weights, tally)
        self.w_opt.zero_grad(set_to_none=True)
        for w, g in zip(self.weights, grads, strict=True):
            w.grad = g
        if self.training.gradClip is not None:
            nn.utils.clip_grad_norm_(self.weights, self.training.gradClip)
        self.w_opt.step()
