"""A genotype as a labelled graph (and as one line of text), whatever its search space.

Why: the picture of the best architecture and the genotype column of
``trials.csv`` should read the same for every space, so each space turns its
genotype into one neutral form (``controller_policy.spaces.graph``: inputs,
operation nodes, an output, and edges that may carry an operation) and a single
drawer (``plots``) and a single one-line summary (here) work from that form.
"""

from __future__ import annotations

from typing import Any

from controller_policy.spaces.graph import Edge, Graph, Node, UnknownGenotype
from controller_policy.spaces.registry import space_class

__all__ = ["Edge", "Graph", "Node", "UnknownGenotype", "genotype_graphs", "genotype_summary"]


def genotype_graphs(genotype: dict[str, Any]) -> list[Graph]:
    """The genotype's cells (or its whole network) as graphs."""
    space = genotype.get("space") if isinstance(genotype, dict) else None
    cls = space_class(str(space))
    if cls is None:
        raise UnknownGenotype(f"cannot draw a genotype of space {space!r}")
    try:
        return cls.genotype_graphs(genotype)
    except UnknownGenotype:
        raise
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
