"""Zoph & Le CNN supernet: conv weights per (layer, kernel shape, input source), shared by every child.

The child of ``models.cnn_zoph_le`` computes, per layer, conv(concat(inputs)) ->
BN -> ReLU, where the inputs are the layers its skip tokens select (or the image)
zero-padded to the largest map. A convolution over a depth-concatenation is the
sum of one convolution per concatenated block, so the supernet stores one weight
block per (layer, fh x fw, source) - the source being the image or an earlier
layer - and a child's layer concatenates the blocks of exactly the sources it
reads, in the child's order: the supernet computes the standalone child's
function with shared weights, and a child's backward pass reaches only the
blocks, BN parameters and classifier blocks it uses. The classifier is split the
same way, one block per layer read as a loose end, plus one shared bias.

Filter counts share by slicing: a layer with ``nf`` filters uses the first
``nf`` output channels of its blocks (and the next layer the first ``nf`` input
channels), as one-shot supernets over widths do. Strides reuse the kernel's
weights. BatchNorm normalises with the batch's statistics only (as every
supernet here, ``enas.shared``). The pooling variant (dense 3-conv blocks) has
no supernet.

Initialisation: He (fan-in of the block, as the other supernets), or, with
``init="identity"``, every layer-to-layer block starts as the identity map (a
centred unit tap per channel; the image blocks keep He), the micro supernet's
remedy for children that start as unrelated random functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from controller_policy.contract import ModelSpec
from controller_policy.spaces.zoph_le_cnn import FILTER_SIZES, ZophLeCnnSpace
from nas_trainer.datasets.images import ImageData
from nas_trainer.models.cnn_zoph_le import ZophLeCNN, concat_padded, loose_ends
from nas_trainer.registry import register_supernet
from nas_trainer.runtime import ConfigError

INITS = ("he", "identity")
IMAGE = 0
"""Source number of the image; earlier layers are 1..L as in the genotype."""


def block_key(layer: int, fh: int, fw: int, source: int) -> str:
    """Name of the weight block of 1-based ``layer``'s fh x fw conv that reads ``source``."""
    return f"l{layer}_k{fh}x{fw}_from{source}"


def kernel_key(layer: int, fh: int, fw: int) -> str:
    return f"l{layer}_k{fh}x{fw}"


class ZophCnnSupernet(nn.Module):
    """Every Zoph & Le child of one space; ``forward(images, tokens)`` runs that child only."""

    def __init__(
        self, space: ZophLeCnnSpace, *, input_shape: tuple[int, int, int], num_classes: int,
        dropout: float = 0.0, init: str = "he",
    ) -> None:
        super().__init__()
        if space.options.pooling:
            raise ConfigError("spaceOptions.pooling: the pooling variant has no supernet; "
                              "mode 'enas' needs pooling: false")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.space = space
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.width = max(space.options.filters)
        layers = space.options.layers
        kernels = [(fh, fw) for fh in FILTER_SIZES for fw in FILTER_SIZES]
        self.blocks = nn.ParameterDict({
            block_key(i, fh, fw, src): nn.Parameter(torch.empty(self.width, self.channels(src), fh, fw))
            for i in range(1, layers + 1) for fh, fw in kernels for src in range(i)
        })
        self.bn_weight = nn.ParameterDict(
            {kernel_key(i, fh, fw): nn.Parameter(torch.ones(self.width))
             for i in range(1, layers + 1) for fh, fw in kernels})
        self.bn_bias = nn.ParameterDict(
            {kernel_key(i, fh, fw): nn.Parameter(torch.zeros(self.width))
             for i in range(1, layers + 1) for fh, fw in kernels})
        self.heads = nn.ParameterList(
            nn.Parameter(torch.empty(num_classes, self.width)) for _ in range(layers))
        self.head_bias = nn.Parameter(torch.zeros(num_classes))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters(init)

    def channels(self, source: int) -> int:
        """Input channels a block stores for ``source`` (the widest choice for a layer)."""
        return self.input_shape[0] if source == IMAGE else self.width

    def reset_parameters(self, init: str = "he") -> None:
        """He init of every block (``init="identity"``: layer-to-layer blocks as identities)."""
        for key, w in self.blocks.items():
            if init == "identity" and not key.endswith(f"_from{IMAGE}"):
                nn.init.dirac_(w.data)
            else:
                nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
        fan_in = self.width * self.space.options.layers
        for head in self.heads:  # the classifier's default init, over the widest concatenation
            nn.init.uniform_(head, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        nn.init.zeros_(self.head_bias)

    # --- one child's weights ---------------------------------------------------------------
    def conv_weight(self, i: int, layer: dict[str, Any], filters: Sequence[int]) -> torch.Tensor:
        """Layer ``i``'s conv weight over the concatenation of its inputs, in the child's order."""
        sources = layer["inputs"] or [IMAGE]
        nf = layer["filters"]
        return torch.cat([
            self.blocks[block_key(i, layer["fh"], layer["fw"], s)][
                :nf, : (self.input_shape[0] if s == IMAGE else filters[s - 1])]
            for s in sources
        ], dim=1)

    def head_weight(self, loose_ends: Sequence[int], filters: Sequence[int]) -> torch.Tensor:
        """The classifier weight over the concatenated loose ends (0-based layer indices)."""
        return torch.cat([self.heads[j][:, : filters[j]] for j in loose_ends], dim=1)

    def forward(self, x: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
        layers = self.space.to_genotype(self.space.validate_tokens(tokens))["layers"]
        filters = [layer["filters"] for layer in layers]
        outputs: list[torch.Tensor] = []
        for i, layer in enumerate(layers, start=1):
            h = concat_padded([outputs[j - 1] for j in layer["inputs"]] or [x])
            fh, fw, nf = layer["fh"], layer["fw"], layer["filters"]
            y = F.conv2d(h, self.conv_weight(i, layer, filters), None,
                         (layer.get("sh", 1), layer.get("sw", 1)), (fh // 2, fw // 2))
            key = kernel_key(i, fh, fw)
            y = F.batch_norm(y, None, None, self.bn_weight[key][:nf], self.bn_bias[key][:nf], training=True)
            outputs.append(torch.relu(y))
        loose = loose_ends(layers)
        z = concat_padded([outputs[j] for j in loose])
        z = torch.flatten(F.adaptive_avg_pool2d(z, 1), 1)
        return F.linear(self.dropout(z), self.head_weight(loose, filters), self.head_bias)

    def child_model(self, tokens: Sequence[int]) -> ZophLeCNN:
        """The standalone child of ``tokens`` (the trainer's own model class) holding the shared
        weights it uses: e.g. to fine-tune a derived architecture from its inherited weights."""
        genotype = self.space.to_genotype(self.space.validate_tokens(tokens))
        layers = genotype["layers"]
        filters = [layer["filters"] for layer in layers]
        child = ZophLeCNN(genotype, self.input_shape, self.num_classes, dropout=self.dropout.p)
        with torch.no_grad():
            for i, (layer, block) in enumerate(zip(layers, child.blocks, strict=True), start=1):
                key, nf = kernel_key(i, layer["fh"], layer["fw"]), layer["filters"]
                block[0].conv.weight.copy_(self.conv_weight(i, layer, filters))
                block[0].bn.weight.copy_(self.bn_weight[key][:nf])
                block[0].bn.bias.copy_(self.bn_bias[key][:nf])
            child.classifier.weight.copy_(self.head_weight(child.loose_ends, filters))
            child.classifier.bias.copy_(self.head_bias)
        return child


@register_supernet("zoph-le-cnn")
def build_zoph_cnn_supernet(space: ZophLeCnnSpace, spec: ModelSpec, data: object) -> ZophCnnSupernet:
    """The zoph-le-cnn supernet for image ``data`` (its widths come from the space, not the spec)."""
    if not isinstance(data, ImageData):
        raise ConfigError(f"dataset: {space.type_name} needs image data")
    return ZophCnnSupernet(space, input_shape=data.input_shape, num_classes=data.num_classes,
                           dropout=spec.dropout)
