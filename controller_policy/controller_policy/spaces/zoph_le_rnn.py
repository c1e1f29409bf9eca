"""Zoph & Le's recurrent-cell space: the base-8 tree (docs/papers.md §2, §5, §6).

Token list (34 tokens): ``[comb_0, act_0, ..., comb_14, act_14, inj_comb,
inj_act, c_src, inj_dst]``.

* Nodes 0-7 are leaves; leaf ``i`` combines ``W_i x_t`` with ``W'_i h_{t-1}``.
  Internal nodes pair up as 8=(0,1), 9=(2,3), 10=(4,5), 11=(6,7), 12=(8,9),
  13=(10,11), 14=(12,13); node 14's output is ``h_t``. Internal nodes have no
  weights.
* Every node applies ``activation(combination(left, right))``.
* Memory cell: ``c_t`` is the *pre-activation* value of node ``c_src``; the
  output ``a`` of node ``inj_dst`` is replaced by
  ``inj_act(inj_comb(a, c_{t-1}))`` before any node above it reads it.

Both cell indices range over all 15 nodes: 8^16 * 15^2 = 6.3e16 token lists,
the paper's "about 6e16" (§6), which pins the index range down.

No ``check_semantics`` rule: every combination gives a well-defined,
differentiable cell in which ``h_t`` depends on ``x_t``, ``h_{t-1}`` and
``c_{t-1}`` (each node, the injected one included, lies under node 14). When
``inj_dst`` is not strictly below ``c_src`` (e.g. equal, or in the other
subtree), ``c_t`` merely does not depend on ``c_{t-1}``; the memory still
carries a second state to the next step, as the paper allows. Rejecting such
lists would also break the size the paper reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from controller_policy.spaces.base import (
    Choice,
    InvalidArchitecture,
    SearchSpace,
    SpaceOptions,
    Step,
)
from controller_policy.spaces.graph import Graph
from controller_policy.spaces.registry import register
from controller_policy.spaces.zoph_le_cnn import ZophLeCnnSpace

COMBINATIONS: tuple[str, ...] = ("add", "mult")
"""Token order of docs/papers.md §5: add = 0, elementwise mult = 1."""
ACTIVATIONS: tuple[str, ...] = ("identity", "tanh", "sigmoid", "relu")
"""Token order of docs/papers.md §5: identity, tanh, sigmoid, relu = 0-3."""

NUM_LEAVES = 8
NUM_NODES = 2 * NUM_LEAVES - 1
OUTPUT_NODE = NUM_NODES - 1


def tree_children(node: int) -> tuple[int, int] | None:
    """The two nodes an internal node combines (None for a leaf): 8=(0,1), ..., 14=(12,13)."""
    if node < NUM_LEAVES:
        return None
    left = 2 * (node - NUM_LEAVES)
    return (left, left + 1)


NASCELL_TOKENS: tuple[int, ...] = (
    0, 2, 0, 3, 0, 2, 1, 3, 0, 1, 0, 2, 0, 1, 0, 2,
    1, 1, 0, 1, 1, 1, 0, 2, 1, 0, 0, 1, 1, 1,
    0, 1, 12, 8,
)  # fmt: skip
"""The published cell, as TensorFlow's ``NASCell`` implements it (docs/papers.md §5)."""


class ZophLeRnnOptions(SpaceOptions):
    """The base-8 tree has no options (the paper searched base 8 only)."""


def _index(vocab: tuple[str, ...], value: Any, field: str) -> int:
    if not isinstance(value, str) or value not in vocab:
        raise InvalidArchitecture(f"{field} = {value!r} is unknown; allowed: {', '.join(vocab)}")
    return vocab.index(value)


def _node_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < NUM_NODES:
        raise InvalidArchitecture(f"{field} = {value!r} must be a node index 0..{NUM_NODES - 1}")
    return value


@register
class ZophLeRnnSpace(SearchSpace):
    """Base-8 recurrent cell of Zoph & Le 2017."""

    type_name = "zoph-le-rnn"
    options_model = ZophLeRnnOptions
    kind = "language"
    paper_strategy = "reinforce"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        **ZophLeCnnSpace.controller_defaults,
        "learning_rate": 5e-4,  # [P] 0.0005 for the recurrent-cell search
        # [P] m = 1 per replica, but the parameter server applies an update after
        # every 10 accumulated gradients: 10 rewards per update.
        "batch_size": 10,
    }

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        graph = Graph("recurrent cell")
        graph.node("x", "x[t]", "input")
        graph.node("h", "h[t-1]", "input")
        graph.node("c", "c[t-1]", "input")
        memory = genotype.get("memory") or {}
        for node in genotype["nodes"]:
            n = node["node"]
            label = f"{n}: {node['combination']}, {node['activation']}"
            if memory.get("injectInto") == n:
                label += f"\n+c[t-1] ({memory['combination']}, {memory['activation']})"
            graph.node(str(n), label)
            for src in node["inputs"]:
                graph.edge(str(src), str(n))
            if memory.get("injectInto") == n:
                graph.edge("c", str(n), "inject")
        graph.node("out", "h[t]", "output")
        graph.edge(str(genotype["output"]), "out")
        if "source" in memory:
            graph.node("cnext", "c[t]", "output")
            graph.edge(str(memory["source"]), "cnext", "pre-activation")
        return [graph]

    def build_steps(self) -> list[Step]:
        steps: list[Step] = []
        for node in range(NUM_NODES):
            steps.append(Choice(f"node{node}.combination", "combination", COMBINATIONS))
            steps.append(Choice(f"node{node}.activation", "activation", ACTIVATIONS))
        steps.append(Choice("inject.combination", "inject_combination", COMBINATIONS))
        steps.append(Choice("inject.activation", "inject_activation", ACTIVATIONS))
        nodes = tuple(range(NUM_NODES))
        steps.append(Choice("cell.source", "cell_index", nodes))
        steps.append(Choice("cell.inject_into", "cell_index", nodes))
        return steps

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        nodes: list[dict[str, Any]] = []
        for node in range(NUM_NODES):
            children = tree_children(node)
            nodes.append(
                {
                    "node": node,
                    "inputs": ["x", "h"] if children is None else list(children),
                    "combination": COMBINATIONS[tokens[2 * node]],
                    "activation": ACTIVATIONS[tokens[2 * node + 1]],
                }
            )
        base = 2 * NUM_NODES
        return {
            "space": self.type_name,
            "vocabulary": {"combination": list(COMBINATIONS), "activation": list(ACTIVATIONS)},
            "nodes": nodes,
            "output": OUTPUT_NODE,
            "memory": {
                "combination": COMBINATIONS[tokens[base]],
                "activation": ACTIVATIONS[tokens[base + 1]],
                "source": tokens[base + 2],
                "injectInto": tokens[base + 3],
            },
        }

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        nodes = genotype.get("nodes")
        if not isinstance(nodes, list) or len(nodes) != NUM_NODES:
            raise InvalidArchitecture(
                f"genotype.nodes must be a list of {NUM_NODES} nodes (8 leaves, 7 internal), "
                f"got {type(nodes).__name__}"
                + (f" of length {len(nodes)}" if isinstance(nodes, list) else "")
            )
        tokens: list[int] = []
        for i, node in enumerate(nodes):
            field = f"genotype.nodes[{i}]"
            if not isinstance(node, dict):
                raise InvalidArchitecture(f"{field} must be an object")
            if "node" in node and node["node"] != i:
                raise InvalidArchitecture(
                    f"{field}.node = {node['node']!r}; nodes are listed in order, expected {i}"
                )
            children = tree_children(i)
            expected = ["x", "h"] if children is None else list(children)
            if "inputs" in node and node["inputs"] != expected:
                raise InvalidArchitecture(
                    f"{field}.inputs = {node['inputs']!r}; the base-8 tree fixes them to {expected}"
                )
            tokens.append(_index(COMBINATIONS, node.get("combination"), f"{field}.combination"))
            tokens.append(_index(ACTIVATIONS, node.get("activation"), f"{field}.activation"))
        if "output" in genotype and genotype["output"] != OUTPUT_NODE:
            raise InvalidArchitecture(
                f"genotype.output = {genotype['output']!r}; h_t is always node {OUTPUT_NODE}"
            )
        memory = genotype.get("memory")
        if not isinstance(memory, dict):
            raise InvalidArchitecture(
                "genotype.memory must be an object with combination, activation, source, injectInto"
            )
        tokens.append(
            _index(COMBINATIONS, memory.get("combination"), "genotype.memory.combination")
        )
        tokens.append(_index(ACTIVATIONS, memory.get("activation"), "genotype.memory.activation"))
        tokens.append(_node_id(memory.get("source"), "genotype.memory.source"))
        tokens.append(_node_id(memory.get("injectInto"), "genotype.memory.injectInto"))
        return tokens
