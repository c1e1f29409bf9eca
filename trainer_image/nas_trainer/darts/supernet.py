"""The DARTS supernet over the enas-micro cell (docs/papers.md §4 micro space, §8 DARTS).

Every edge (node n reads state i, for every earlier state i) carries all five
enas-micro operations plus DARTS's ``none`` (the zero operation) and outputs
their softmax(alpha)-weighted sum. One alpha matrix per cell type (normal,
reduction) has one row per edge and one column per operation, the enas-micro
operation ids first (column = token id, docs/papers.md §5) and ``none`` last,
so the derivation reads token ids straight off the columns.

Layout as in the DARTS search network: stem -> [N normal] -> R -> [N normal] ->
R -> [N normal] -> global pool -> FC, where a reduction cell applies stride 2 to
the edges that read the two cell inputs, and a cell's output concatenates all
its computed nodes. Batch norms have no affine parameters (the paper's search
setting) and normalise with batch statistics (``enas.shared``), so a mixture of
architectures never leaves running averages that describe none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from controller_policy.spaces.enas_micro import ENAS_MICRO_OPERATIONS
from nas_trainer.enas.shared import use_batch_statistics
from nas_trainer.models.ops import FactorizedReduce, Pool, ReLUConvBN, SepConv

NONE_OP = "none"
CANDIDATES: tuple[str, ...] = (*ENAS_MICRO_OPERATIONS, NONE_OP)
"""Columns of alpha: the enas-micro operations in token order, then the zero operation."""
IDENTITY = ENAS_MICRO_OPERATIONS.index("identity")

_OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "sep_conv3x3": lambda c, s: SepConv(c, c, 3, s, affine=False),
    "sep_conv5x5": lambda c, s: SepConv(c, c, 5, s, affine=False),
    "avg_pool3x3": lambda c, s: nn.Sequential(Pool("avg", c, c, 3, s), nn.BatchNorm2d(c, affine=False)),
    "max_pool3x3": lambda c, s: nn.Sequential(Pool("max", c, c, 3, s), nn.BatchNorm2d(c, affine=False)),
    "identity": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c, affine=False),
}
"""(channels, stride) -> operation; pools get a BN as in the DARTS mixed op."""


def edge_count(nodes: int) -> int:
    """Edges of one cell: node n (0-based) reads the 2 cell inputs and the n nodes before it."""
    return sum(n + 2 for n in range(nodes))


def node_edges(nodes: int) -> list[range]:
    """Row ranges of alpha per node: node n's rows are its inputs 0 .. n+1 in order."""
    out, start = [], 0
    for n in range(nodes):
        out.append(range(start, start + n + 2))
        start += n + 2
    return out


class MixedOp(nn.Module):
    """sum_k softmax(alpha)_k * op_k(x) over the candidates; ``none`` adds nothing."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(_OPS[name](channels, stride) for name in ENAS_MICRO_OPERATIONS)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = weights[0] * self.ops[0](x)
        for k in range(1, len(self.ops)):
            out = out + weights[k] * self.ops[k](x)
        return out


class DartsCell(nn.Module):
    """One relaxed cell; ``reduction`` puts stride 2 on the edges reading the cell inputs."""

    def __init__(
        self, nodes: int, c_prev_prev: int, c_prev: int, c: int, *, reduction: bool,
        reduce_prev_prev: bool,
    ) -> None:
        super().__init__()
        self.nodes = nodes
        self.pre0 = FactorizedReduce(c_prev_prev, c, affine=False) if reduce_prev_prev else (
            ReLUConvBN(c_prev_prev, c, 1, affine=False)
        )
        self.pre1 = ReLUConvBN(c_prev, c, 1, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and i < 2 else 1) for n in range(nodes) for i in range(n + 2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for rows in node_edges(self.nodes):
            out = None
            for i, row in enumerate(rows):
                h = self.edges[row](states[i], weights[row])
                out = h if out is None else out + h
            states.append(out)  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)


class DartsSupernet(nn.Module):
    """The relaxed micro network: weights in the cells, alpha in ``alphas`` (not a weight)."""

    def __init__(
        self, *, nodes: int, input_shape: tuple[int, int, int], num_classes: int, filters: int,
        cells_per_stage: int, stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        if filters % 2:
            raise ValueError(f"the DARTS supernet needs even filters (factorized reductions), got {filters}")
        self.nodes = nodes
        c_stem = stem_multiplier * filters
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], c_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_stem, affine=False),
        )
        self.cells = nn.ModuleList()
        self.is_reduction: list[bool] = []
        c_pp, c_p, c = c_stem, c_stem, filters
        prev_reduction = False
        for stage in range(3):
            kinds = ([True] if stage > 0 else []) + [False] * cells_per_stage
            for reduction in kinds:
                if reduction:
                    c *= 2
                self.cells.append(DartsCell(nodes, c_pp, c_p, c, reduction=reduction,
                                            reduce_prev_prev=prev_reduction))
                self.is_reduction.append(reduction)
                prev_reduction = reduction
                c_pp, c_p = c_p, nodes * c
        self.classifier = nn.Linear(c_p, num_classes)
        edges = edge_count(nodes)
        # The paper initialises alpha at 1e-3 * N(0, 1); the seed makes it reproducible.
        self.alphas = nn.ParameterDict({
            "normal": nn.Parameter(1e-3 * torch.randn(edges, len(CANDIDATES))),
            "reduction": nn.Parameter(1e-3 * torch.randn(edges, len(CANDIDATES))),
        })
        use_batch_statistics(self)

    def weights(self) -> list[nn.Parameter]:
        """Every parameter but alpha: what SGD trains."""
        alphas = {id(a) for a in self.alphas.values()}
        return [p for p in self.parameters() if id(p) not in alphas]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas["normal"], self.alphas["reduction"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal = F.softmax(self.alphas["normal"], dim=-1)
        w_reduce = F.softmax(self.alphas["reduction"], dim=-1)
        s0 = s1 = self.stem(x)
        for cell, reduction in zip(self.cells, self.is_reduction, strict=True):
            s0, s1 = s1, cell(s0, s1, w_reduce if reduction else w_normal)
        out = torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1)
        return self.classifier(out)


def operation_names(columns: Sequence[int]) -> list[str]:
    """Column ids -> operation names (for logs and tests)."""
    return [CANDIDATES[c] for c in columns]
