"""Zoph & Le (2017) CNN child: a layer-wise DAG compiled by the paper's rules (docs/papers.md §1).

Compile rules: a layer's inputs are exactly the layers it selected,
depth-concatenated, smaller maps zero-padded (bottom/right) to the largest; a
layer with no input reads the image; outputs nothing consumes are concatenated
into the classifier (global average pool -> dropout -> FC). Every convolution is
conv -> BN -> ReLU with "same" padding, so stride s maps H to ceil(H / s) and any
(C, H, W) works, down to 1x1.

Pooling variant (docs/papers.md §1, marked [?] there): each predicted layer is a densely
connected block of 3 convolutions (sub-layer s reads the block input and every
earlier sub-layer's output; the block outputs all 3 concatenated). Expanded
layers are numbered 1..3L; after expanded layers 13 and 24 of 39 (scaled to
3L for other depths) a 3x3 stride-2 max-pool is applied to *every* map that
exists so far, the image included, so the rest of the net runs at the lower
resolution. Pooling only the one layer's output would be undone by the
zero-padding rule as soon as a later layer also read an unpooled map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.zoph_le_cnn import ZophLeCnnSpace
from nas_trainer.registry import register_builder


def loose_ends(layers: Sequence[dict[str, Any]]) -> list[int]:
    """0-based layers no later layer reads (inputs count layers from 1): the classifier's inputs."""
    consumed = {j for layer in layers for j in layer["inputs"]}
    return [i for i in range(len(layers)) if i + 1 not in consumed]

BLOCK_DEPTH = 3
"""Convolutions per predicted layer in the pooling variant (13 x 3 = 39 layers)."""
PAPER_POOL_AFTER = (13, 24)
PAPER_EXPANDED_DEPTH = 39


def concat_padded(maps: list[torch.Tensor]) -> torch.Tensor:
    """Depth-concatenate maps, zero-padding smaller ones at the bottom/right to the largest H, W.

    Zoph & Le's rule for inputs of different sizes; with equal sizes it is a plain concat.
    """
    if len(maps) == 1:
        return maps[0]
    h = max(m.shape[2] for m in maps)
    w = max(m.shape[3] for m in maps)
    padded = [
        m if m.shape[2:] == (h, w)
        else nn.functional.pad(m, (0, w - m.shape[3], 0, h - m.shape[2]))
        for m in maps
    ]
    return torch.cat(padded, dim=1)


def pool_positions(num_layers: int) -> frozenset[int]:
    """Expanded layers (1-based) after which everything is max-pooled: 13 and 24 of 39, scaled."""
    expanded = BLOCK_DEPTH * num_layers
    return frozenset(
        max(1, int(p * expanded / PAPER_EXPANDED_DEPTH + 0.5)) for p in PAPER_POOL_AFTER
    )


class ConvBNReLU(nn.Module):
    """One Zoph & Le layer: fh x fw conv (same padding, stride sh x sw) -> BN -> ReLU."""

    def __init__(
        self, c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int]
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            c_in, c_out, kernel, stride, (kernel[0] // 2, kernel[1] // 2), bias=False
        )
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ZophLeCNN(nn.Module):
    """The compiled DAG; ``blocks[i]`` holds predicted layer i+1's convolution(s)."""

    def __init__(
        self, genotype: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers = genotype["layers"]
        depth = BLOCK_DEPTH if genotype["pooling"] else 1
        self.inputs: list[list[int]] = [list(layer["inputs"]) for layer in layers]
        self.pool_after = pool_positions(len(layers)) if genotype["pooling"] else frozenset()
        self.pool = nn.MaxPool2d(3, 2, 1)
        out_channels: list[int] = []
        blocks: list[nn.ModuleList] = []
        for layer, inputs in zip(layers, self.inputs, strict=True):
            c_in = sum(out_channels[j - 1] for j in inputs) if inputs else input_shape[0]
            nf = layer["filters"]
            kernel = (layer["fh"], layer["fw"])
            stride = (layer.get("sh", 1), layer.get("sw", 1))
            blocks.append(nn.ModuleList(
                ConvBNReLU(c_in + s * nf, nf, kernel, stride if s == 0 else (1, 1))
                for s in range(depth)
            ))
            out_channels.append(depth * nf)
        self.blocks = nn.ModuleList(blocks)
        self.loose_ends = loose_ends(layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(sum(out_channels[i] for i in self.loose_ends), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        outputs: list[torch.Tensor] = []
        expanded = 0
        for block, inputs in zip(self.blocks, self.inputs, strict=True):
            h = concat_padded([outputs[j - 1] for j in inputs] if inputs else [image])
            ys: list[torch.Tensor] = []
            for conv in block:
                ys.append(conv(concat_padded([h, *ys])))
                expanded += 1
                if expanded in self.pool_after:
                    image, h = self.pool(image), self.pool(h)
                    outputs = [self.pool(o) for o in outputs]
                    ys = [self.pool(y) for y in ys]
            outputs.append(concat_padded(ys))
        z = concat_padded([outputs[i] for i in self.loose_ends])
        z = torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1)
        return self.classifier(self.dropout(z))


@register_builder("zoph-le-cnn")
def build_zoph_le_cnn(
    genotype: dict[str, Any], *, spec: ModelSpec, input_shape: tuple[int, int, int],
    num_classes: int,
) -> ZophLeCNN:
    """Validate the self-describing genotype against its space, then compile its canonical form."""
    space = ZophLeCnnSpace.for_genotype(genotype)
    canonical = space.to_genotype(space.encode(genotype))
    return ZophLeCNN(canonical, input_shape, num_classes, dropout=spec.dropout)
