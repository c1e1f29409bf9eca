"""ENAS RNN supernet: one weight matrix W_{l,j} per (node l, previous node j), shared by all cells.

docs/papers.md §4: node 1 computes a highway step on ``x_t W_x + h_{t-1} W_h``; node
l > 1 picks a previous node j and an activation and applies
``c*f(h_j W_{l,j}) + (1-c)*h_j`` with its gate ``c = sigmoid(h_j W^c_{l,j})``
(candidate and gate weights are the two halves of one ``H x 2H`` matrix, as in
the fixed ``models.recurrent.EnasCell``). The supernet holds W_{l,j} for every
j < l; a child uses exactly one per node, so every other W_{l,j} gets no
gradient. The time step itself is ``EnasCell.step``: the supernet only chooses
which weights and activations it runs with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.enas_rnn import EnasRnnSpace
from nas_trainer.datasets.text import TextData
from nas_trainer.models.recurrent import (
    ACTIVATION_FNS,
    ENAS_LAYERS,
    EnasCell,
    Hidden,
    RecurrentCell,
    RecurrentLM,
)
from nas_trainer.registry import register_supernet
from nas_trainer.runtime import ConfigError


class SharedEnasCell(EnasCell):
    """An ENAS cell with every W_{l,j}; ``use(genotype)`` selects one child's weights."""

    def __init__(self, num_nodes: int, input_size: int, hidden_size: int) -> None:
        # EnasCell.__init__ builds one fixed child; the shared cell owns all edges instead.
        RecurrentCell.__init__(self, input_size, hidden_size)
        self.w_x = nn.Linear(input_size, 2 * hidden_size, bias=False)
        self.w_h = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.edges = nn.ModuleDict(
            {
                edge_key(node, prev): nn.Linear(hidden_size, 2 * hidden_size, bias=False)
                for node in range(2, num_nodes + 1)
                for prev in range(1, node)
            }
        )
        self.reset_parameters()
        self.activations: list[Any] = []
        self.inputs: list[int] = []
        self.averaged: list[int] = []
        self.w_nodes: list[nn.Module] = []

    def use(self, genotype: dict[str, Any]) -> None:
        """Run the child ``genotype`` (an ``enas-rnn`` genotype) from the next step on."""
        nodes = genotype["nodes"]
        self.activations = [ACTIVATION_FNS[n["activation"]] for n in nodes]
        self.inputs = [n["input"] - 1 for n in nodes[1:]]
        self.averaged = [n - 1 for n in genotype["averaged"]]
        self.w_nodes = [self.edges[edge_key(n["node"], n["input"])] for n in nodes[1:]]


def edge_key(node: int, prev: int) -> str:
    """Name of W_{node, prev} (1-based node numbers, as in the genotype)."""
    return f"{node}_{prev}"


class RnnSupernet(nn.Module):
    """Embedding -> shared ENAS cell -> (tied) decoder; ``forward(x, tokens, hidden)`` runs one child."""

    def __init__(self, space: EnasRnnSpace, *, vocab_size: int, spec: ModelSpec) -> None:
        super().__init__()
        self.space = space
        nodes = space.options.nodes
        self.lm = RecurrentLM(
            lambda i, h: SharedEnasCell(nodes, i, h),
            vocab_size=vocab_size, spec=spec, num_layers=ENAS_LAYERS,
        )

    @property
    def cell(self) -> SharedEnasCell:
        cell = self.lm.cells[0]
        assert isinstance(cell, SharedEnasCell)
        return cell

    def init_hidden(self, batch_size: int) -> Hidden:
        return self.lm.init_hidden(batch_size)

    def forward(
        self, x: Tensor, tokens: Sequence[int], hidden: Hidden | None = None
    ) -> tuple[Tensor, Hidden]:
        genotype = self.space.to_genotype(self.space.validate_tokens(tokens))
        for cell in self.lm.cells:
            cell.use(genotype)  # type: ignore[operator]
        return self.lm(x, hidden)


@register_supernet("enas-rnn")
def build_rnn_supernet(space: EnasRnnSpace, spec: ModelSpec, data: object) -> RnnSupernet:
    """The enas-rnn supernet sized by ``training.model`` for text ``data``."""
    if not isinstance(data, TextData):
        raise ConfigError("dataset: enas-rnn needs text data")
    return RnnSupernet(space, vocab_size=data.vocab_size, spec=spec)
