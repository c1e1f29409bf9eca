"""ENAS recurrent-cell space (docs/papers.md §4, §5, §6, §7).

Token list: ``[act_1, (prev_l, act_l) for l = 2..N]``, 2N - 1 tokens (23 for
the paper's N = 12). Nodes are numbered 1..N as in the paper; the token of
``prev_l`` is the chosen node minus one (0..l-2), so it equals enas_lm's node
id for the same node.

* Node 1: ``f_1(x_t W_x + h_{t-1} W_h)`` with a highway gate on ``h_{t-1}``.
* Node l > 1 reads one earlier node j: ``h = c*f_l(h_j W) + (1-c)*h_j``,
  ``c = sigmoid(h_j W_c)``.
* ``h_t``: ``output="loose-ends"`` (paper) averages the nodes no other node
  reads; ``output="all-nodes"`` (enas_lm) averages nodes 2..N, exactly the
  ``layers[1:]`` that enas_lm averages (its input node is left out).

Activation tokens follow melodyguan/carpedm20: tanh, relu, identity, sigmoid;
enas_lm orders them tanh, relu, sigmoid, identity (``from_enas_lm`` converts).
Every token list is a valid cell, so there is no ``check_semantics`` rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from controller_policy.spaces.base import (
    Choice,
    InvalidArchitecture,
    SearchSpace,
    SpaceOptions,
    Step,
)
from controller_policy.spaces.enas_controller import ENAS_CONTROLLER
from controller_policy.spaces.graph import Graph
from controller_policy.spaces.registry import register

ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "identity", "sigmoid")
"""Token order of melodyguan/carpedm20 (docs/papers.md §5)."""
ENAS_LM_ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "sigmoid", "identity")
"""Token order of google-research enas_lm (docs/papers.md §5)."""
OutputMode = Literal["loose-ends", "all-nodes"]

ENAS_LM_FIXTURE: tuple[int, ...] = (0, 2, 1, 0, 2, 1, 2, 2, 4, 0, 5, 0, 3, 2, 6, 2)
"""The published enas_lm arc: 8 (prev, act) pairs after the input node (docs/papers.md §5)."""


class EnasRnnOptions(SpaceOptions):
    """``nodes``: N, the number of cell nodes; ``output``: how h_t is formed."""

    nodes: int = Field(default=12, ge=2, le=64, description="N (paper: 12; enas_lm arc: 9 = 1 + 8).")
    output: OutputMode = Field(
        default="loose-ends",
        description="'loose-ends' = mean of unused nodes (paper); "
        "'all-nodes' = mean of nodes 2..N (enas_lm).",
    )


def averaged_nodes(inputs: Sequence[int], output: OutputMode) -> list[int]:
    """Nodes (1-based) whose mean is h_t, given ``inputs[l-2]`` = the node that node l reads."""
    n = len(inputs) + 1
    if output == "all-nodes":
        return list(range(2, n + 1))
    used = set(inputs)
    return [node for node in range(1, n + 1) if node not in used]


@register
class EnasRnnSpace(SearchSpace):
    """The ENAS RNN cell: a DAG of N nodes, each reading one earlier node."""

    type_name = "enas-rnn"
    options_model = EnasRnnOptions
    kind = "language"
    paper_strategy = "enas"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        **ENAS_CONTROLLER,
        "baseline_decay": 0.999,  # [C] enas_lm 0.999
        "entropy_weight": 1e-4,  # [P] 1e-4 for PTB (≠ [C] enas_lm 1e-5)
        "batch_size": 10,  # [C] enas_lm 25 x 10 samples per epoch
    }
    enas_steps_per_epoch = 25  # [C] enas_lm 25 controller steps per epoch (docs/papers.md §7)
    options: EnasRnnOptions

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        graph = Graph("recurrent cell")
        graph.node("x", "x[t]", "input")
        graph.node("h", "h[t-1]", "input")
        for node in genotype["nodes"]:
            n, source = node["node"], node["input"]
            graph.node(str(n), f"node {n}")
            for src in source if isinstance(source, list) else [source]:
                graph.edge(str(src), str(n), node["activation"])
        graph.node("out", "h[t]", "output")
        for n in genotype.get("averaged") or graph.loose_ends():
            graph.edge(str(n), "out", "avg")
        return [graph]

    def build_steps(self) -> list[Step]:
        steps: list[Step] = [Choice("node1.activation", "activation", ACTIVATIONS)]
        for node in range(2, self.options.nodes + 1):
            steps.append(Choice(f"node{node}.input", "input", tuple(range(1, node))))
            steps.append(Choice(f"node{node}.activation", "activation", ACTIVATIONS))
        return steps

    def size(self) -> int:
        """4^N (N-1)!: the same product ``SearchSpace.size`` computes, in closed form."""
        n = self.options.nodes
        return len(ACTIVATIONS) ** n * math.factorial(n - 1)

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        nodes: list[dict[str, Any]] = [
            {"node": 1, "input": ["x", "h"], "activation": ACTIVATIONS[tokens[0]]}
        ]
        inputs: list[int] = []
        for node in range(2, self.options.nodes + 1):
            prev = tokens[2 * node - 3] + 1
            inputs.append(prev)
            nodes.append(
                {"node": node, "input": prev, "activation": ACTIVATIONS[tokens[2 * node - 2]]}
            )
        return {
            "space": self.type_name,
            "vocabulary": {"activation": list(ACTIVATIONS)},
            "nodes": nodes,
            "output": self.options.output,
            "averaged": averaged_nodes(inputs, self.options.output),
        }

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        n = self.options.nodes
        nodes = genotype.get("nodes")
        if not isinstance(nodes, list) or len(nodes) != n:
            got = f"a list of {len(nodes)}" if isinstance(nodes, list) else type(nodes).__name__
            raise InvalidArchitecture(
                f"genotype.nodes must be a list of {n} nodes (option nodes={n}), got {got}"
            )
        output = genotype.get("output", self.options.output)
        if output != self.options.output:
            raise InvalidArchitecture(
                f"genotype.output = {output!r} but the space's option output is "
                f"{self.options.output!r}; allowed: 'loose-ends', 'all-nodes' matching the option"
            )
        tokens: list[int] = []
        inputs: list[int] = []
        for i, node in enumerate(nodes):
            number = i + 1
            field = f"genotype.nodes[{i}]"
            if not isinstance(node, dict):
                raise InvalidArchitecture(f"{field} must be an object")
            if "node" in node and node["node"] != number:
                raise InvalidArchitecture(
                    f"{field}.node = {node['node']!r}; nodes are listed in order, expected {number}"
                )
            if number == 1:
                if "input" in node and node["input"] != ["x", "h"]:
                    raise InvalidArchitecture(
                        f"{field}.input = {node['input']!r}; node 1 always reads ['x', 'h']"
                    )
            else:
                prev = node.get("input")
                if isinstance(prev, bool) or not isinstance(prev, int) or not 1 <= prev < number:
                    raise InvalidArchitecture(
                        f"{field}.input = {prev!r} must be an earlier node 1..{number - 1}"
                    )
                tokens.append(prev - 1)
                inputs.append(prev)
            act = node.get("activation")
            if not isinstance(act, str) or act not in ACTIVATIONS:
                raise InvalidArchitecture(
                    f"{field}.activation = {act!r} is unknown; allowed: {', '.join(ACTIVATIONS)}"
                )
            tokens.append(ACTIVATIONS.index(act))
        expected = averaged_nodes(inputs, self.options.output)
        if "averaged" in genotype and genotype["averaged"] != expected:
            raise InvalidArchitecture(
                f"genotype.averaged = {genotype['averaged']!r} contradicts the nodes; "
                f"with output {self.options.output!r} it is {expected}"
            )
        return tokens


def from_enas_lm(
    arc: str | Sequence[int], output: OutputMode = "all-nodes"
) -> tuple[EnasRnnSpace, list[int]]:
    """Convert an enas_lm ``fixed_arc`` into this space's tokens (and the space they need).

    enas_lm lists k ``(prev, act)`` pairs after its input node 0, which always
    uses tanh; pair ``i`` may read nodes 0..i. That is our N = k + 1 with node 1
    = the input node. ``output`` defaults to enas_lm's own (mean of nodes 2..N).
    """
    numbers = [int(t) for t in arc.split()] if isinstance(arc, str) else list(arc)
    if len(numbers) == 0 or len(numbers) % 2:
        raise InvalidArchitecture(
            f"enas_lm arc must be a non-empty list of (prev, act) pairs, got {len(numbers)} numbers"
        )
    tokens = [ACTIVATIONS.index("tanh")]
    for i in range(len(numbers) // 2):
        prev, act = numbers[2 * i], numbers[2 * i + 1]
        if not 0 <= prev <= i:
            raise InvalidArchitecture(
                f"enas_lm arc position {2 * i} (pair {i} prev) = {prev}; allowed 0..{i}"
            )
        if not 0 <= act < len(ENAS_LM_ACTIVATIONS):
            raise InvalidArchitecture(
                f"enas_lm arc position {2 * i + 1} (pair {i} act) = {act}; allowed 0..3 "
                f"({', '.join(ENAS_LM_ACTIVATIONS)})"
            )
        tokens += [prev, ACTIVATIONS.index(ENAS_LM_ACTIVATIONS[act])]
    space = EnasRnnSpace(EnasRnnOptions(nodes=len(numbers) // 2 + 1, output=output))
    return space, space.validate_tokens(tokens)
