"""Child networks of the cell spaces (NASNet, ENAS micro): one cell network for both.

Layout (docs/papers.md §3, CIFAR): stem 3x3 conv -> [N normal] -> R -> [N normal] -> R ->
[N normal] -> ReLU -> global average pool -> dropout -> FC. A cell of ``C``
filters reads h_{i-1} and h_i; h_i always passes a 1x1 ReLU-conv-BN to ``C``
channels, h_{i-1} only when it does not match already (FactorizedReduce when it is
twice h_i's size, i.e. right after a reduction). Filters double at each
reduction, whose operations on the cell inputs use stride 2.

Block/node states have ``C`` channels (``2C`` for a concat combine); the cell
output is the depth-concat of its ``concat`` states, so ``N@F`` in the paper is
F = |concat| x C of the last cell.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.enas_micro import EnasMicroSpace
from controller_policy.spaces.nasnet import CellLayout, NasnetSpace, TwoCellSpace
from nas_trainer.models.ops import IMAGE_OPS, FactorizedReduce, ReLUConvBN, drop_path
from nas_trainer.registry import register_builder


class Cell(nn.Module):
    """One normal or reduction cell built from a ``CellLayout``."""

    def __init__(
        self,
        layout: CellLayout,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        *,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.channels = c
        if reduction_prev:
            self.pre0: nn.Module = FactorizedReduce(c_prev_prev, c)
        elif c_prev_prev != c:
            self.pre0 = ReLUConvBN(c_prev_prev, c, 1)
        else:
            self.pre0 = nn.Identity()
        self.pre1 = ReLUConvBN(c_prev, c, 1)
        channels = [c, c]
        self.ops = nn.ModuleList()
        self.dropped: list[bool] = []
        """Per op: whether drop-path applies (every op except identity, docs/papers.md §7)."""
        for node in layout.nodes:
            for idx, name in zip(node.inputs, node.ops, strict=True):
                stride = 2 if reduction and idx < 2 else 1
                self.ops.append(IMAGE_OPS[name](channels[idx], c, stride))
                self.dropped.append(name != "identity")
            channels.append(c if node.combine == "add" else 2 * c)
        # An unread cell input in a reduction cell is still full size: reduce it to join the concat.
        self.calibrate = nn.ModuleDict(
            {
                str(i): FactorizedReduce(channels[i], channels[i])
                for i in layout.concat
                if reduction and i < 2
            }
        )
        self.out_channels = sum(channels[i] for i in layout.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for n, node in enumerate(self.layout.nodes):
            outs = []
            for j, idx in enumerate(node.inputs):
                k = 2 * n + j
                h = self.ops[k](states[idx])
                if self.dropped[k]:
                    h = drop_path(h, drop_prob, self.training)
                outs.append(h)
            states.append(outs[0] + outs[1] if node.combine == "add" else torch.cat(outs, 1))
        outs = [
            self.calibrate[str(i)](states[i]) if str(i) in self.calibrate else states[i]
            for i in self.layout.concat
        ]
        return torch.cat(outs, dim=1)


class AuxiliaryHead(nn.Module):
    """NASNet/ENAS auxiliary classifier: ReLU, 5x5/3 avg pool, 1x1 conv 128, conv to 768, FC.

    The pool and the second conv shrink to the feature map when it is smaller than
    CIFAR's 8x8 (e.g. 2x2 for 8x8 digits), so any input size works.
    """

    def __init__(self, c_in: int, spatial: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        kh, kw = min(5, spatial[0]), min(5, spatial[1])
        oh, ow = (spatial[0] - kh) // 3 + 1, (spatial[1] - kw) // 3 + 1
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d((kh, kw), stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, (oh, ow), bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class CellNetwork(nn.Module):
    """Stacked normal/reduction cells (CIFAR layout) with ScheduledDropPath and an aux head.

    ``drop_path_prob`` is read on every forward pass; the trainer raises it over
    training (ScheduledDropPath). With ``spec.auxiliaryHead`` the training-mode
    forward returns ``(logits, aux_logits)``, the aux head reading the output of
    the second reduction cell.
    """

    def __init__(
        self,
        normal: CellLayout,
        reduction: CellLayout,
        *,
        spec: ModelSpec,
        input_shape: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        c_in, height, width = input_shape
        c_stem = spec.stemMultiplier * spec.filters
        self.stem = nn.Sequential(
            nn.Conv2d(c_in, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        self.drop_path_prob = 0.0
        self.cells = nn.ModuleList()
        c_pp, c_p, c = c_stem, c_stem, spec.filters
        reduction_prev = False
        spatial = (height, width)
        self.aux_after: int | None = None
        self.auxiliary: AuxiliaryHead | None = None
        for stage in range(3):
            if stage > 0:
                c *= 2
                cell = Cell(reduction, c_pp, c_p, c, reduction=True, reduction_prev=reduction_prev)
                self.cells.append(cell)
                c_pp, c_p, reduction_prev = c_p, cell.out_channels, True
                spatial = ((spatial[0] + 1) // 2, (spatial[1] + 1) // 2)
                if stage == 2 and spec.auxiliaryHead:
                    self.aux_after = len(self.cells) - 1
                    self.auxiliary = AuxiliaryHead(c_p, spatial, num_classes)
            for _ in range(spec.cellsPerStage):
                cell = Cell(normal, c_pp, c_p, c, reduction=False, reduction_prev=reduction_prev)
                self.cells.append(cell)
                c_pp, c_p, reduction_prev = c_p, cell.out_channels, False
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_after and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(s1), 1), 1)
        logits = self.classifier(self.dropout(out))
        return (logits, aux) if aux is not None else logits

    def parameter_count(self, include_auxiliary: bool = False) -> int:
        """Trainable parameters; the papers' counts leave the auxiliary head out."""
        return sum(
            p.numel()
            for name, p in self.named_parameters()
            if p.requires_grad and (include_auxiliary or not name.startswith("auxiliary."))
        )


def _build(
    space: TwoCellSpace,
    genotype: dict[str, Any],
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
) -> CellNetwork:
    space.encode(genotype)  # raises InvalidArchitecture naming the bad field
    layouts = space.parse_genotype(genotype)
    return CellNetwork(
        layouts["normal"],
        layouts["reduction"],
        spec=spec,
        input_shape=input_shape,
        num_classes=num_classes,
    )


@register_builder("nasnet")
def build_nasnet(
    genotype: dict[str, Any],
    *,
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
) -> CellNetwork:
    """NASNet child; an explicit ``concat`` in the genotype (NASNet-A) is honoured."""
    return _build(NasnetSpace.for_genotype(genotype), genotype, spec, input_shape, num_classes)


@register_builder("enas-micro")
def build_enas_micro(
    genotype: dict[str, Any],
    *,
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
) -> CellNetwork:
    """ENAS micro child (the final-model form: stride-2 operations in the reduction cell)."""
    return _build(EnasMicroSpace.for_genotype(genotype), genotype, spec, input_shape, num_classes)
