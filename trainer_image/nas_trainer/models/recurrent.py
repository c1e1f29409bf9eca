"""Recurrent child models: the Zoph & Le base-8 cell, the ENAS cell, and one LM wrapper.

Both cells project the whole input sequence in one matmul before the time loop
(only the recurrence is sequential), have no biases (as in the papers' equations,
TensorFlow's ``NASCell`` default and enas_lm) and keep their state as a tuple of
tensors. The language model stacks ``num_layers`` cells between an embedding and a
decoder that is tied to the embedding when ``ModelSpec.tieWeights``.

Dropout (all *locked*: one mask per sequence, reused at every time step, as in
variational dropout): ``ModelSpec.variationalDropout`` on the cell inputs (the
embeddings) and on ``h_{t-1}`` where it enters the recurrent matmuls (in the
ENAS cell also on every node's input, as enas_lm's layer mask does);
``ModelSpec.dropout`` on each layer's outputs (between layers and before the
decoder).

``ModelSpec.hiddenNormClip`` rescales each state part of every sequence to at most that
L2 norm after each time step. The cells are unbounded (identity and ReLU nodes, the
highway carry), so a shared-weight ENAS search at learning rate 20 otherwise meets a
child whose state grows without limit within one BPTT window and overflows the loss.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.base import InvalidArchitecture
from controller_policy.spaces.enas_rnn import EnasRnnOptions, EnasRnnSpace
from controller_policy.spaces.zoph_le_rnn import (
    NUM_LEAVES,
    NUM_NODES,
    OUTPUT_NODE,
    ZophLeRnnSpace,
    tree_children,
)
from nas_trainer.registry import register_builder

ZOPH_LE_LAYERS = 2
"""Zoph & Le trained 2-layer children (docs/papers.md §2); ModelSpec has no layer count yet."""
ENAS_LAYERS = 1
"""ENAS (paper, enas_lm, carpedm20) unrolls a single cell."""
EMBEDDING_INIT = 0.1
"""Embedding weights ~ U(-0.1, 0.1); cell weights ~ U(+-1/sqrt(hidden)) (PyTorch's RNN rule)."""

Hidden = tuple[Tensor, ...]
"""Recurrent state: one tensor ``[num_layers, batch, hidden]`` per state part (h, and c for ZL)."""

ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda t: t,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}
COMBINATION_FNS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "add": torch.add,
    "mult": torch.mul,
}


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on ``[B, T, F]`` with one mask per sequence, shared over the T steps."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p) / (1.0 - p)
    return x * mask


def clip_state_norm(state: Hidden, max_norm: float) -> Hidden:
    """Each ``[B, H]`` part scaled so that no row's L2 norm exceeds ``max_norm``; the scale is
    a constant to autograd (a rescaling of the state, as carpedm20's port does)."""
    out = []
    for part in state:
        norm = part.detach().norm(dim=-1, keepdim=True)
        out.append(part * (max_norm / norm.clamp(min=max_norm)))
    return tuple(out)


class RecurrentCell(nn.Module, ABC):
    """A searched cell unrolled over time; subclasses define one step."""

    state_parts: int
    """How many state tensors the cell carries (1: h; 2: h and c)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    @abstractmethod
    def project_inputs(self, x: Tensor) -> Tensor:
        """All input-side matmuls of the sequence at once: ``[B, T, in] -> [B, T, K]``."""

    @abstractmethod
    def step(self, x_proj: Tensor, state: Hidden, h_mask: Tensor | None) -> Hidden:
        """One time step; returns the new state, whose first part is ``h_t``."""

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(
        self, x: Tensor, state: Hidden, hidden_dropout: float = 0.0,
        max_norm: float | None = None,
    ) -> tuple[Tensor, Hidden]:
        """Run ``x[B, T, in]`` from ``state``; returns ``(outputs[B, T, H], last state)``;
        ``max_norm`` caps every state part's per-sequence norm after each step."""
        x_proj = self.project_inputs(x)
        h_mask = None
        if self.training and hidden_dropout > 0.0:
            h_mask = x.new_empty(x.shape[0], self.hidden_size).bernoulli_(1.0 - hidden_dropout)
            h_mask = h_mask / (1.0 - hidden_dropout)
        outputs: list[Tensor] = []
        for t in range(x.shape[1]):
            state = self.step(x_proj[:, t], state, h_mask)
            if max_norm is not None:
                state = clip_state_norm(state, max_norm)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state


class ZophLeCell(RecurrentCell):
    """Base-8 tree cell of Zoph & Le (docs/papers.md §2); ``NASCELL_TOKENS`` gives TF's NASCell."""

    state_parts = 2

    def __init__(self, genotype: dict[str, Any], input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        nodes = genotype["nodes"]
        self.combinations = [COMBINATION_FNS[n["combination"]] for n in nodes]
        self.activations = [ACTIVATION_FNS[n["activation"]] for n in nodes]
        memory = genotype["memory"]
        self.inject_combination = COMBINATION_FNS[memory["combination"]]
        self.inject_activation = ACTIVATION_FNS[memory["activation"]]
        self.cell_source: int = memory["source"]
        self.inject_into: int = memory["injectInto"]
        self.w_x = nn.Linear(input_size, NUM_LEAVES * hidden_size, bias=False)
        self.w_h = nn.Linear(hidden_size, NUM_LEAVES * hidden_size, bias=False)
        self.reset_parameters()

    def project_inputs(self, x: Tensor) -> Tensor:
        return self.w_x(x)

    def step(self, x_proj: Tensor, state: Hidden, h_mask: Tensor | None) -> Hidden:
        h_prev, c_prev = state
        h_in = h_prev if h_mask is None else h_prev * h_mask
        xs = x_proj.chunk(NUM_LEAVES, dim=-1)
        hs = self.w_h(h_in).chunk(NUM_LEAVES, dim=-1)
        out: list[Tensor] = []
        c_new = c_prev
        for node in range(NUM_NODES):
            children = tree_children(node)
            left, right = (
                (xs[node], hs[node]) if children is None else (out[children[0]], out[children[1]])
            )
            pre = self.combinations[node](left, right)
            if node == self.cell_source:
                c_new = pre
            value = self.activations[node](pre)
            if node == self.inject_into:
                value = self.inject_activation(self.inject_combination(value, c_prev))
            out.append(value)
        return out[OUTPUT_NODE], c_new


class EnasCell(RecurrentCell):
    """ENAS RNN cell (docs/papers.md §4): node 1 reads x_t and h_{t-1}; node l reads one node j.

    Every node is a highway step ``c*f(z) + (1-c)*h_j`` with ``[z, c_pre] = h_j W``;
    node 1 uses ``x_t W_x + h_{t-1} W_h`` and carries ``h_{t-1}``. h_t is the mean of
    ``genotype["averaged"]`` (loose ends, or nodes 2..N for enas_lm's variant).
    """

    state_parts = 1

    def __init__(self, genotype: dict[str, Any], input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        nodes = genotype["nodes"]
        self.activations = [ACTIVATION_FNS[n["activation"]] for n in nodes]
        self.inputs: list[int] = [n["input"] - 1 for n in nodes[1:]]  # 0-based node index
        self.averaged: list[int] = [n - 1 for n in genotype["averaged"]]
        self.w_x = nn.Linear(input_size, 2 * hidden_size, bias=False)
        self.w_h = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.w_nodes = nn.ModuleList(
            nn.Linear(hidden_size, 2 * hidden_size, bias=False) for _ in nodes[1:]
        )
        self.reset_parameters()

    def project_inputs(self, x: Tensor) -> Tensor:
        return self.w_x(x)

    @staticmethod
    def _highway(z: Tensor, carry: Tensor, activation: Callable[[Tensor], Tensor]) -> Tensor:
        candidate, gate = z.chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        return carry + gate * (activation(candidate) - carry)

    def step(self, x_proj: Tensor, state: Hidden, h_mask: Tensor | None) -> Hidden:
        (h_prev,) = state
        h_in = h_prev if h_mask is None else h_prev * h_mask
        values = [self._highway(x_proj + self.w_h(h_in), h_prev, self.activations[0])]
        for layer, (prev, w) in enumerate(zip(self.inputs, self.w_nodes, strict=True)):
            h_j = values[prev]
            h_j_in = h_j if h_mask is None else h_j * h_mask
            values.append(self._highway(w(h_j_in), h_j, self.activations[layer + 1]))
        if len(self.averaged) == 1:
            return (values[self.averaged[0]],)
        return (torch.stack([values[i] for i in self.averaged]).mean(dim=0),)


class RecurrentLM(nn.Module):
    """Embedding -> ``num_layers`` searched cells -> decoder (tied when asked).

    ``forward(tokens[B, T], hidden=None) -> (logits[B, T, V], hidden)``; ``hidden`` is a
    tuple of ``[num_layers, B, H]`` tensors (see ``init_hidden``; detach it between
    BPTT windows with ``detach_hidden``).
    """

    def __init__(
        self,
        make_cell: Callable[[int, int], RecurrentCell],
        *,
        vocab_size: int,
        spec: ModelSpec,
        num_layers: int,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if spec.tieWeights and spec.embeddingSize != spec.hiddenSize:
            raise ValueError(
                f"model.tieWeights needs model.embeddingSize == model.hiddenSize (the decoder "
                f"reuses the embedding matrix); got embeddingSize={spec.embeddingSize}, "
                f"hiddenSize={spec.hiddenSize}. Set them equal or tieWeights: false."
            )
        self.vocab_size = vocab_size
        self.hidden_size = spec.hiddenSize
        self.num_layers = num_layers
        self.input_dropout = spec.variationalDropout
        self.hidden_dropout = spec.variationalDropout
        self.output_dropout = spec.dropout
        self.max_hidden_norm = spec.hiddenNormClip
        self.embedding = nn.Embedding(vocab_size, spec.embeddingSize)
        self.cells = nn.ModuleList(
            make_cell(spec.embeddingSize if i == 0 else spec.hiddenSize, spec.hiddenSize)
            for i in range(num_layers)
        )
        self.state_parts = self.cells[0].state_parts
        self.decoder = nn.Linear(spec.hiddenSize, vocab_size)
        nn.init.uniform_(self.embedding.weight, -EMBEDDING_INIT, EMBEDDING_INIT)
        nn.init.zeros_(self.decoder.bias)
        if spec.tieWeights:
            self.decoder.weight = self.embedding.weight
        else:
            bound = 1.0 / math.sqrt(spec.hiddenSize)
            nn.init.uniform_(self.decoder.weight, -bound, bound)

    def init_hidden(self, batch_size: int) -> Hidden:
        """Zero state: ``state_parts`` tensors of shape ``[num_layers, batch_size, hidden]``."""
        weight = self.decoder.bias
        shape = (self.num_layers, batch_size, self.hidden_size)
        return tuple(weight.new_zeros(shape) for _ in range(self.state_parts))

    @staticmethod
    def detach_hidden(hidden: Hidden) -> Hidden:
        """Cut the graph between BPTT windows while keeping the values."""
        return tuple(h.detach() for h in hidden)

    def forward(self, tokens: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, time], got shape {tuple(tokens.shape)}")
        batch = tokens.shape[0]
        if hidden is None:
            hidden = self.init_hidden(batch)
        expected = (self.num_layers, batch, self.hidden_size)
        if len(hidden) != self.state_parts or any(tuple(h.shape) != expected for h in hidden):
            raise ValueError(
                f"hidden must be {self.state_parts} tensor(s) of shape {expected} "
                f"(see init_hidden), got {[tuple(h.shape) for h in hidden]}"
            )
        x = locked_dropout(self.embedding(tokens), self.input_dropout, self.training)
        last: list[Hidden] = []
        for layer, cell in enumerate(self.cells):
            state = tuple(h[layer] for h in hidden)
            x, state = cell(x, state, self.hidden_dropout, self.max_hidden_norm)
            x = locked_dropout(x, self.output_dropout, self.training)
            last.append(state)
        new_hidden = tuple(torch.stack([s[k] for s in last]) for k in range(self.state_parts))
        return self.decoder(x), new_hidden


@register_builder("zoph-le-rnn")
def build_zoph_le_rnn(
    genotype: dict[str, Any],
    *,
    spec: ModelSpec,
    vocab_size: int,
    num_layers: int | None = None,
) -> RecurrentLM:
    """A Zoph & Le LM; the genotype is validated (and normalised) by its space first."""
    space = ZophLeRnnSpace()
    canonical = space.to_genotype(space.encode(genotype))
    return RecurrentLM(
        lambda i, h: ZophLeCell(canonical, i, h),
        vocab_size=vocab_size,
        spec=spec,
        num_layers=num_layers or spec.numLayers or ZOPH_LE_LAYERS,
    )


@register_builder("enas-rnn")
def build_enas_rnn(
    genotype: dict[str, Any],
    *,
    spec: ModelSpec,
    vocab_size: int,
    num_layers: int | None = None,
) -> RecurrentLM:
    """An ENAS LM; N and the output mode come from the genotype, validated by its space."""
    nodes = genotype.get("nodes")
    try:
        options = EnasRnnOptions(
            nodes=len(nodes) if isinstance(nodes, list) else EnasRnnOptions().nodes,
            output=genotype.get("output", EnasRnnOptions().output),
        )
    except ValidationError as err:
        raise InvalidArchitecture(f"enas-rnn genotype (nodes, output): {err}") from None
    space = EnasRnnSpace(options)
    canonical = space.to_genotype(space.encode(genotype))
    return RecurrentLM(
        lambda i, h: EnasCell(canonical, i, h),
        vocab_size=vocab_size,
        spec=spec,
        num_layers=num_layers or spec.numLayers or ENAS_LAYERS,
    )
