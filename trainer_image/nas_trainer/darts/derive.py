"""From alpha to a discrete enas-micro cell, DARTS's way (docs/papers.md §8, DARTS).

Per node, each incoming edge is scored by its strongest operation other than
``none``; the two best-scoring inputs are kept, each with that operation. The
result is written as enas-micro tokens ``[idx1, op1, idx2, op2]`` per node,
normal cell first (docs/papers.md §5), which the space validates, so the
derived cell trains with the ordinary enas-micro builder afterwards.
"""

from __future__ import annotations

import torch

from nas_trainer.darts.supernet import CANDIDATES, IDENTITY, NONE_OP, node_edges

CELLS = ("normal", "reduction")
_NONE = CANDIDATES.index(NONE_OP)


def derive_cell(alpha: torch.Tensor, nodes: int) -> list[int]:
    """One cell's tokens from its alpha (edges x candidates); ties go to the lower index."""
    weights = torch.softmax(alpha.detach().double(), dim=-1)
    tokens: list[int] = []
    for rows in node_edges(nodes):
        scored = []
        for i, row in enumerate(rows):
            strengths = weights[row].clone()
            strengths[_NONE] = -1.0
            op = int(torch.argmax(strengths))
            scored.append((-float(strengths[op]), i, op))
        (_, i1, op1), (_, i2, op2) = sorted(scored)[:2]
        tokens += [i1, op1, i2, op2]
    return tokens


def derive_tokens(alphas: dict[str, torch.Tensor], nodes: int) -> list[int]:
    """The enas-micro token list: normal cell, then reduction cell."""
    return [t for cell in CELLS for t in derive_cell(alphas[cell], nodes)]


def skip_edges(cell_tokens: list[int]) -> int:
    """Identity (skip) edges of one derived cell: the collapse measure of DARTS+ / DARTS-."""
    return sum(1 for op in cell_tokens[1::2] if op == IDENTITY)


def alpha_entropy(alpha: torch.Tensor) -> float:
    """Mean entropy of the per-edge softmax (log 6 at the start; low = decided)."""
    p = torch.softmax(alpha.detach().double(), dim=-1)
    return float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean())
