"""ENAS macro child, the fixed (final) network of docs/papers.md §7.

stem (3x3 conv -> BN) -> L layers -> ReLU -> global average pool -> dropout -> FC.
Layer k reads node k of ``[stem, layer0, ...]`` (the preceding one) through
ReLU -> 1x1 conv -> BN, then applies its operation. For k > 0 the operation's
output is concatenated after the skip-selected nodes and fused by
ReLU -> 1x1 conv -> BN, as the reference code does even when no skip is chosen.

Operations, all channel-preserving: conv kxk is ReLU -> conv -> BN; sep_conv kxk
is one ReLU -> depthwise kxk -> pointwise 1x1 -> BN (ENAS macro stacks it once,
unlike NASNet's twice-applied sep conv); avg/max pool are 3x3 stride 1. The
reference code builds sep ids as ordinary convs and leaves pool ids
unimplemented in fixed mode; we implement both.

Pooling: with d = L // 3, after layers d-1 and 2d-1 (0-based; 3 and 7 of 12, 7
and 15 of 24) every node a later layer reads is factorized-reduced to half the
resolution and twice the channels, so skips always join maps of one size. The
reference code reduces every node, even those nothing reads afterwards; their
weights would never get a gradient, so we leave them out. The doubling is the
reference code's fixed-mode behaviour, not stated in the paper; without it the
24-layer, 96-channel model could not reach the paper's 21.3M parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.enas_macro import EnasMacroSpace
from nas_trainer.models.cnn_zoph_le import concat_padded
from nas_trainer.models.ops import FactorizedReduce, Pool, ReLUConvBN, SepConv
from nas_trainer.registry import register_builder

ENAS_MACRO_OPS: dict[str, Callable[[int], nn.Module]] = {
    "conv3x3": lambda c: ReLUConvBN(c, c, 3),
    "sep_conv3x3": lambda c: SepConv(c, c, 3, repeats=1),
    "conv5x5": lambda c: ReLUConvBN(c, c, 5),
    "sep_conv5x5": lambda c: SepConv(c, c, 5, repeats=1),
    "avg_pool3x3": lambda c: Pool("avg", c, c, 3),
    "max_pool3x3": lambda c: Pool("max", c, c, 3),
}
"""Genotype operation name -> factory(channels)."""


def reduction_layers(num_layers: int) -> tuple[int, ...]:
    """0-based layers after which the nodes read later are reduced: d-1, 2d-1 with d = L // 3."""
    d = num_layers // 3
    return (d - 1, 2 * d - 1) if d >= 1 else ()


class EnasMacroLayer(nn.Module):
    """One layer: 1x1 conv then the operation; for k > 0, the skip concat fused by 1x1 conv."""

    def __init__(self, op: str, channels: int, skips: list[int], fuse: bool) -> None:
        super().__init__()
        self.skips = skips
        self.branch = nn.Sequential(ReLUConvBN(channels, channels, 1), ENAS_MACRO_OPS[op](channels))
        self.fuse = ReLUConvBN((len(skips) + 1) * channels, channels, 1) if fuse else None

    def forward(self, nodes: list[torch.Tensor | None]) -> torch.Tensor:
        """``nodes`` is [stem, layer0, ...]; skipped and preceding nodes are never None."""
        out = self.branch(nodes[-1])
        if self.fuse is None:
            return out
        return self.fuse(concat_padded([nodes[j] for j in self.skips] + [out]))


class EnasMacroNet(nn.Module):
    """The fixed ENAS macro network of one architecture."""

    def __init__(
        self, genotype: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int,
        filters: int, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c = filters
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        )
        spec_layers = genotype["layers"]
        self.reduce_after = reduction_layers(len(spec_layers))
        layers: list[EnasMacroLayer] = []
        reducers: dict[str, nn.ModuleDict] = {}
        for k, layer in enumerate(spec_layers):
            layers.append(EnasMacroLayer(layer["op"], c, list(layer["skips"]), fuse=k > 0))
            if k in self.reduce_after:
                # nodes so far are 0..k+1 (stem, layers 0..k); k+1 feeds layer k+1's op
                skipped = {j for later in spec_layers[k + 1:] for j in later["skips"] if j <= k}
                read_later = skipped | {k + 1}
                reducers[str(k)] = nn.ModuleDict(
                    {str(n): FactorizedReduce(c, 2 * c) for n in sorted(read_later)}
                )
                c *= 2
        self.layers = nn.ModuleList(layers)
        self.reducers = nn.ModuleDict(reducers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [self.stem(x)]
        for k, layer in enumerate(self.layers):
            nodes.append(layer(nodes))
            if str(k) in self.reducers:
                reduce = self.reducers[str(k)]
                # a node no later layer reads is dropped (None) rather than reduced
                nodes = [
                    reduce[str(n)](node) if str(n) in reduce else None
                    for n, node in enumerate(nodes)
                ]
        z = nn.functional.relu(nodes[-1])
        z = torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1)
        return self.classifier(self.dropout(z))


@register_builder("enas-macro")
def build_enas_macro(
    genotype: dict[str, Any], *, spec: ModelSpec, input_shape: tuple[int, int, int],
    num_classes: int,
) -> EnasMacroNet:
    """Validate the genotype, then build it with ``spec.filters`` channels (doubled per reduction)."""
    space = EnasMacroSpace.for_genotype(genotype)
    canonical = space.to_genotype(space.encode(genotype))
    return EnasMacroNet(canonical, input_shape, num_classes, spec.filters, spec.dropout)
