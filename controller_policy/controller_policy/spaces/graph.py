"""A genotype as a labelled graph, whatever its search space.

Why in the core: each space knows how its genotype names nodes and inputs, so it
turns its genotype into this neutral form itself (``SearchSpace.genotype_graphs``);
a single drawer and a single one-line summary (``nas_operator.local``) work from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

NodeKind = Literal["input", "op", "output"]


class UnknownGenotype(ValueError):
    """A genotype that cannot be drawn (unknown space, or malformed)."""


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    kind: NodeKind = "op"


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str = ""


@dataclass
class Graph:
    """One cell or network: nodes in a topological order, edges between them."""

    title: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node(self, id: str, label: str, kind: NodeKind = "op") -> None:
        self.nodes.append(Node(id, label, kind))

    def edge(self, src: str, dst: str, label: str = "") -> None:
        self.edges.append(Edge(src, dst, label))

    def loose_ends(self) -> list[str]:
        """Operation nodes no other node reads."""
        used = {e.src for e in self.edges}
        return [n.id for n in self.nodes if n.kind == "op" and n.id not in used]

    def close(self, label: str) -> None:
        """Add the output node, fed by every loose end."""
        ends = self.loose_ends()
        self.node("out", label, "output")
        for n in ends:
            self.edge(n, "out")


def two_cell_graphs(g: dict[str, Any]) -> list[Graph]:
    """A normal and a reduction cell (NASNet and ENAS micro share this genotype shape)."""
    graphs = []
    for cell in ("normal", "reduction"):
        body = g[cell]
        graph = Graph(f"{cell} cell")
        graph.node("0", "c[k-2]", "input")
        graph.node("1", "c[k-1]", "input")
        nodes = body.get("blocks", body.get("nodes", []))
        for b, node in enumerate(nodes):
            graph.node(str(b + 2), f"{b + 2}: {node.get('combine', 'add')}")
            for src, op in zip(node["inputs"], node["ops"], strict=True):
                graph.edge(str(src), str(b + 2), op)
        graph.node("out", "c[k]", "output")
        for state in body.get("concat") or graph.loose_ends():
            graph.edge(str(state), "out", "concat")
        graphs.append(graph)
    return graphs
