"""What every supernet shares: batch-statistics BatchNorm and the one-child view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn


def use_batch_statistics(module: nn.Module) -> nn.Module:
    """Make every BatchNorm of ``module`` normalise with the current batch's statistics only.

    Running averages of a supernet mix every sampled child, so they describe none of
    them; the reference micro search scores children with BN in training mode for
    this reason (docs/papers.md §7). Without running buffers, ``eval()`` behaves the same.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return module


class SampledChild(nn.Module):
    """One architecture of a supernet seen as an ordinary model.

    ``forward(x, *rest)`` calls ``supernet(x, tokens, *rest)``, so the plain
    trainers' step and evaluation functions apply unchanged to a shared-weight
    child; ``train()``/``eval()`` reach the supernet because it is a submodule.
    """

    def __init__(self, supernet: nn.Module, tokens: Sequence[int]) -> None:
        super().__init__()
        self.supernet = supernet
        self.tokens = list(tokens)

    def forward(self, x: Any, *rest: Any) -> Any:
        return self.supernet(x, self.tokens, *rest)

    def init_hidden(self, batch_size: int) -> Any:
        """Language supernets only: the zero recurrent state."""
        return self.supernet.init_hidden(batch_size)
