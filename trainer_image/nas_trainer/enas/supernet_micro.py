"""ENAS micro supernet: every candidate operation of every cell edge, weights shared by all children.

Weights are separate per (cell, node, input slot, input state, operation), as in
the reference search code (docs/papers.md §7: "separate per (node, input index,
operation)"; each node's two input slots have their own weights there too). A
child's forward pass runs only its chosen operation on each of its 2 x nodes
edges, so no other operation receives a gradient.

Layout during search (docs/papers.md §7, reference code): stem -> [N normal] ->
R -> [N normal] -> R -> [N normal] -> ReLU -> global pool -> FC, where a search-
time reduction R is a factorized reduction of the previous output (doubling the
channels) followed by a *stride-1* cell running the reduction arc on
``[previous output, reduced output]``. The final model (``models.cells``) instead
applies stride-2 operations to the cell inputs; the architecture is the same.

Cell inputs are calibrated to the cell's width (as we recall the reference code
doing, [?]): a factorized reduction when the older input is twice the size, a
ReLU-1x1-BN when only the channels differ, nothing otherwise. The cell output concatenates the
loose ends; since their number varies per child, each state owns a block of the
output 1x1 conv (ReLU -> 1x1 -> BN over the concatenation = a sum of per-state
1x1 convs), which keeps every cell C channels wide whatever the child.

Initialisation (a deliberate departure from the reference's He init, measured on
digits): every weight that depends on the architecture - the edge operations
and the output blocks - starts as the identity map (``identity_init``); the
stem, calibrations, reductions and classifier keep He init. With independent
random weights, two children are unrelated random functions at step 0 and the
differences compound over the cells (one randomly wired cell among fixed ones
costs little; all of them at once does), so training one child barely helps the
next: with a fresh child per minibatch, a nodes-2 supernet on digits stayed near
chance for ~200 steps and needed ~1300 to reach 50% (the reference's own shared
weights reach only ~66% on CIFAR after 42k steps). Starting from the identity, every child begins as nearly the same
network, what one child learns carries over to the others, and the operations
then diverge from the identity under training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.enas_micro import EnasMicroSpace
from controller_policy.spaces.nasnet import CellLayout
from nas_trainer.datasets.images import ImageData
from nas_trainer.enas.shared import use_batch_statistics
from nas_trainer.models.ops import IMAGE_OPS, FactorizedReduce, ReLUConvBN
from nas_trainer.registry import register_supernet
from nas_trainer.runtime import ConfigError


def identity_init(module: nn.Module) -> None:
    """Set every conv of ``module`` to the identity map (Dirac; depthwise: a centred unit tap).

    A separable conv then computes ReLU -> BN -> ReLU -> BN of its input and a 1x1
    output block passes its state through, so children that differ in operations
    or wiring still compute closely related functions before training (see the
    module docstring). Gradients reach every tap, so the convs learn from there.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.dirac_(m.weight, groups=m.groups)


class EdgeOps(nn.Module):
    """Every candidate operation on one edge, C -> C channels at stride 1."""

    def __init__(self, operations: Sequence[str], channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({name: IMAGE_OPS[name](channels, channels, 1) for name in operations})

    def forward(self, x: torch.Tensor, operation: str) -> torch.Tensor:
        return self.ops[operation](x)


def _calibrate(c_in: int, c: int, reduce: bool) -> nn.Module:
    if reduce:
        return FactorizedReduce(c_in, c)
    return ReLUConvBN(c_in, c, 1) if c_in != c else nn.Identity()


class SearchCell(nn.Module):
    """A cell holding every (node, slot, input state, operation) of one cell position."""

    def __init__(
        self, num_nodes: int, operations: Sequence[str], c_prev_prev: int, c_prev: int, c: int,
        *, reduce_prev_prev: bool,
    ) -> None:
        super().__init__()
        self.pre0 = _calibrate(c_prev_prev, c, reduce_prev_prev)
        self.pre1 = _calibrate(c_prev, c, False)
        # edges[node][slot][input state]
        self.edges = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(EdgeOps(operations, c) for _ in range(2 + n)) for _slot in range(2)
            )
            for n in range(num_nodes)
        )
        self.out_convs = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for _ in range(2 + num_nodes))
        self.out_bn = nn.BatchNorm2d(c)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, layout: CellLayout) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for n, node in enumerate(layout.nodes):
            out = None
            for slot, (idx, op) in enumerate(zip(node.inputs, node.ops, strict=True)):
                h = self.edges[n][slot][idx](states[idx], op)
                out = h if out is None else out + h
            assert out is not None
            states.append(out)
        total = None
        for i in layout.concat:
            h = self.out_convs[i](torch.relu(states[i]))
            total = h if total is None else total + h
        assert total is not None
        return self.out_bn(total)


class MicroSupernet(nn.Module):
    """The ENAS micro search network; ``forward(images, tokens)`` runs that child only."""

    def __init__(
        self, space: EnasMicroSpace, *, input_shape: tuple[int, int, int], num_classes: int,
        filters: int, cells_per_stage: int, stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        if filters % 2:
            raise ValueError(f"the micro supernet needs even filters (factorized reductions), got {filters}")
        self.space = space
        ops = space.vocabulary
        nodes = space.num_nodes
        c_stem = stem_multiplier * filters
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        self.cells = nn.ModuleList()
        self.reducers = nn.ModuleDict()
        self.is_reduction: list[bool] = []
        c_pp, c_p, c = c_stem, c_stem, filters
        for stage in range(3):
            if stage > 0:
                c *= 2
                self.reducers[str(len(self.cells))] = FactorizedReduce(c_p, c)
                # inputs: [previous output (full size), its reduction]
                self.cells.append(SearchCell(nodes, ops, c_p, c, c, reduce_prev_prev=True))
                self.is_reduction.append(True)
                c_pp, c_p = c, c
            for _ in range(cells_per_stage):
                self.cells.append(SearchCell(nodes, ops, c_pp, c_p, c, reduce_prev_prev=False))
                self.is_reduction.append(False)
                c_pp, c_p = c_p, c
        self.classifier = nn.Linear(c_p, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init (docs/papers.md §4)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        for cell in self.cells:  # the architecture-dependent weights start as identities
            identity_init(cell.edges)
            identity_init(cell.out_convs)
        use_batch_statistics(self)

    def forward(self, x: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
        layouts = self.space.layouts(self.space.validate_tokens(tokens))
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            if self.is_reduction[i]:
                reduced = self.reducers[str(i)](s1)
                s0, s1 = reduced, cell(s1, reduced, layouts["reduction"])
            else:
                s0, s1 = s1, cell(s0, s1, layouts["normal"])
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(s1), 1), 1)
        return self.classifier(out)


@register_supernet("enas-micro")
def build_micro_supernet(space: EnasMicroSpace, spec: ModelSpec, data: object) -> MicroSupernet:
    """The enas-micro supernet sized by ``training.model`` for image ``data``."""
    if not isinstance(data, ImageData):
        raise ConfigError(f"dataset: {space.type_name} needs image data")
    return MicroSupernet(space, input_shape=data.input_shape, num_classes=data.num_classes,
                         filters=spec.filters, cells_per_stage=spec.cellsPerStage,
                         stem_multiplier=spec.stemMultiplier)
