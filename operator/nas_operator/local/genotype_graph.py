"""A genotype as a labelled graph (and as one line of text), whatever its search space.

Why: the picture of the best architecture and the genotype column of
``trials.csv`` should read the same for every space, so each space's genotype
is turned into one neutral form here (inputs, operation nodes, an output, and
edges that may carry an operation) and a single drawer (``plots``) and a single
one-line summary work from that form. The per-space part is only how each
genotype names its nodes and inputs (see the space modules' docstrings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

NodeKind = Literal["input", "op", "output"]


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


class UnknownGenotype(ValueError):
    """A genotype whose space this module cannot draw."""


# --- per-space readers ---------------------------------------------------------------------


def _zoph_le_cnn(g: dict[str, Any]) -> list[Graph]:
    graph = Graph("network")
    graph.node("image", "image", "input")
    for i, layer in enumerate(g["layers"], start=1):
        label = f"{layer['fh']}x{layer['fw']} conv\n{layer['filters']} filters"
        if g.get("strides"):
            label += f"\nstride {layer.get('sh', 1)}x{layer.get('sw', 1)}"
        graph.node(f"L{i}", f"L{i}: {label}")
        for src in layer.get("inputs") or ["image"]:
            graph.edge("image" if src == "image" else f"L{src}", f"L{i}")
    _output(graph, "softmax")
    return [graph]


def _enas_macro(g: dict[str, Any]) -> list[Graph]:
    graph = Graph("network")
    graph.node("stem", "stem", "input")
    names = ["stem"] + [f"L{k}" for k in range(len(g["layers"]))]
    for k, layer in enumerate(g["layers"]):
        graph.node(f"L{k}", f"L{k}: {layer['op']}")
        # names[k] is the previous layer (the stem for k = 0), always an input; skip j is names[j]
        sources = {k} | {int(j) for j in layer.get("skips") or []}
        for j in sorted(sources):
            graph.edge(names[j], f"L{k}", "" if j == k else "skip")
    graph.node("out", "softmax", "output")
    graph.edge(names[-1], "out")
    return [graph]


def _two_cells(g: dict[str, Any]) -> list[Graph]:
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


def _zoph_le_rnn(g: dict[str, Any]) -> list[Graph]:
    graph = Graph("recurrent cell")
    graph.node("x", "x[t]", "input")
    graph.node("h", "h[t-1]", "input")
    graph.node("c", "c[t-1]", "input")
    memory = g.get("memory") or {}
    for node in g["nodes"]:
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
    graph.edge(str(g["output"]), "out")
    if "source" in memory:
        graph.node("cnext", "c[t]", "output")
        graph.edge(str(memory["source"]), "cnext", "pre-activation")
    return [graph]


def _enas_rnn(g: dict[str, Any]) -> list[Graph]:
    graph = Graph("recurrent cell")
    graph.node("x", "x[t]", "input")
    graph.node("h", "h[t-1]", "input")
    for node in g["nodes"]:
        n, source = node["node"], node["input"]
        graph.node(str(n), f"node {n}")
        for src in source if isinstance(source, list) else [source]:
            graph.edge(str(src), str(n), node["activation"])
    graph.node("out", "h[t]", "output")
    for n in g.get("averaged") or graph.loose_ends():
        graph.edge(str(n), "out", "avg")
    return [graph]


def _output(graph: Graph, label: str) -> None:
    ends = graph.loose_ends()
    graph.node("out", label, "output")
    for n in ends:
        graph.edge(n, "out")


READERS: dict[str, Callable[[dict[str, Any]], list[Graph]]] = {
    "zoph-le-cnn": _zoph_le_cnn,
    "enas-macro": _enas_macro,
    "nasnet": _two_cells,
    "enas-micro": _two_cells,
    "zoph-le-rnn": _zoph_le_rnn,
    "enas-rnn": _enas_rnn,
}


def genotype_graphs(genotype: dict[str, Any]) -> list[Graph]:
    """The genotype's cells (or its whole network) as graphs."""
    space = genotype.get("space") if isinstance(genotype, dict) else None
    reader = READERS.get(str(space))
    if reader is None:
        raise UnknownGenotype(f"cannot draw a genotype of space {space!r}")
    try:
        return reader(genotype)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnknownGenotype(f"malformed {space} genotype: {exc!r}") from None


def genotype_summary(genotype: dict[str, Any] | None) -> str:
    """One line per architecture: each node with its inputs, cells separated by ' || '."""
    if not genotype:
        return ""
    try:
        graphs = genotype_graphs(genotype)
    except UnknownGenotype:
        return ""
    parts = []
    for graph in graphs:
        labels = {n.id: n.label.split(":")[0] for n in graph.nodes}
        items = []
        for node in graph.nodes:
            if node.kind == "input":
                continue
            ins = [f"{labels[e.src]}" + (f"/{e.label}" if e.label else "")
                   for e in graph.edges if e.dst == node.id]
            text = node.label.replace("\n", " ")
            items.append(f"{text}<-{'+'.join(ins)}")
        prefix = f"{graph.title}: " if len(graphs) > 1 else ""
        parts.append(prefix + "; ".join(items))
    return " || ".join(parts)
