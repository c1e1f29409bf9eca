"""DARTS's continuous relaxation of the zoph-le-cnn space, over the ENAS supernet's own weights.

``RelaxedZophCnn`` wraps an ``enas.supernet_zoph_cnn.ZophCnnSupernet`` and mixes,
per layer, all fh x fw kernels with softmax weights (one row of
``alpha_kernel`` per layer) and relaxes every skip bit with a 2-way softmax
(``alpha_skip``). Because a conv over a concatenation is a sum of per-source
block convs, the relaxed input of a layer is the expectation of its
pre-activation under independent bits: source j enters with p_j = P(bit = 1)
and the image with the probability that no bit is set; a layer is a loose end
(a classifier input) with the probability that no later layer reads it. With
one-hot alphas the relaxed network is exactly the supernet's child (the same
blocks, BN parameters and classifier blocks), so the shared-weight score of any
discrete child comes from ``ZophCnnSupernet.forward`` on the same weights.

``weights()`` and ``arch_parameters()`` are what ``darts.bilevel.Bilevel``
optimises (first or second order). ``derive`` takes the argmax per layer and
per bit (the space has no per-node top-2 rule to apply); ``log_probability``
ranks any child by the alphas. Spaces with several filter counts or predicted
strides are not relaxed (mixed widths or map sizes could not be summed).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from controller_policy.spaces.zoph_le_cnn import FILTER_SIZES
from nas_trainer.enas.supernet_zoph_cnn import IMAGE, ZophCnnSupernet, block_key, kernel_key

KERNELS: tuple[tuple[int, int], ...] = tuple((fh, fw) for fh in FILTER_SIZES for fw in FILTER_SIZES)
"""Columns of ``alpha_kernel``: index fh_token * 4 + fw_token, the space's token order."""


def bit_index(layer: int, source: int) -> int:
    """Row of ``alpha_skip`` for the bit 'layer reads source' (1-based, source < layer)."""
    return (layer - 1) * (layer - 2) // 2 + source - 1


class RelaxedZophCnn(nn.Module):
    """Every kernel and skip of a zoph-le-cnn space at once, weighted by softmax(alpha)."""

    def __init__(self, supernet: ZophCnnSupernet, alpha_scale: float = 1e-3) -> None:
        super().__init__()
        options = supernet.space.options
        if len(options.filters) != 1 or options.predictStrides:
            raise ValueError("the relaxation needs one filter count and no predicted strides")
        self.supernet = supernet
        self.layers = options.layers
        self.alpha_kernel = nn.Parameter(alpha_scale * torch.randn(self.layers, len(KERNELS)))
        self.alpha_skip = nn.Parameter(alpha_scale * torch.randn(self.layers * (self.layers - 1) // 2, 2))

    def weights(self) -> list[nn.Parameter]:
        return list(self.supernet.parameters())

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_kernel, self.alpha_skip]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.supernet
        kernel_w = F.softmax(self.alpha_kernel, dim=-1)
        read = F.softmax(self.alpha_skip, dim=-1)[:, 1]
        outputs: list[torch.Tensor] = []
        for i in range(1, self.layers + 1):
            p = [read[bit_index(i, j)] for j in range(1, i)]
            image_w = torch.prod(torch.stack([1 - q for q in p])) if p else None
            mixed = None
            for k, (fh, fw) in enumerate(KERNELS):
                pad = (fh // 2, fw // 2)
                y = F.conv2d(x, net.blocks[block_key(i, fh, fw, IMAGE)], padding=pad)
                if image_w is not None:
                    y = image_w * y
                for j, q in enumerate(p, start=1):
                    y = y + q * F.conv2d(outputs[j - 1], net.blocks[block_key(i, fh, fw, j)], padding=pad)
                key = kernel_key(i, fh, fw)
                y = torch.relu(F.batch_norm(y, None, None, net.bn_weight[key], net.bn_bias[key], training=True))
                mixed = kernel_w[i - 1, k] * y if mixed is None else mixed + kernel_w[i - 1, k] * y
            assert mixed is not None
            outputs.append(mixed)
        logits = net.head_bias
        for j, out in enumerate(outputs, start=1):
            loose = [1 - read[bit_index(i, j)] for i in range(j + 1, self.layers + 1)]
            z = net.dropout(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
            term = F.linear(z, net.heads[j - 1])
            logits = logits + (torch.prod(torch.stack(loose)) * term if loose else term)
        return logits

    # --- from alpha to architectures ------------------------------------------------------------
    def derive(self) -> list[int]:
        """The strongest kernel per layer and the likelier value of every bit, as space tokens."""
        tokens: list[int] = []
        for i in range(1, self.layers + 1):
            k = int(self.alpha_kernel[i - 1].argmax())
            tokens += [k // len(FILTER_SIZES), k % len(FILTER_SIZES), 0]
            tokens += [int(self.alpha_skip[bit_index(i, j)].argmax()) for j in range(1, i)]
        return tokens

    @torch.no_grad()
    def log_probability(self, tokens: list[int]) -> float:
        """log of the child's weight under the alphas (kernel softmax x bit softmaxes)."""
        kernel_lp = F.log_softmax(self.alpha_kernel, dim=-1)
        skip_lp = F.log_softmax(self.alpha_skip, dim=-1)
        it = iter(tokens)
        total = 0.0
        for i in range(1, self.layers + 1):
            fh, fw, _filters = next(it), next(it), next(it)
            total += float(kernel_lp[i - 1, fh * len(FILTER_SIZES) + fw])
            total += sum(float(skip_lp[bit_index(i, j), next(it)]) for j in range(1, i))
        return total
