"""The run folder's pictures: the best architecture and the reward of every trial.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display,
no global state), so a headless runner and the tests can draw safely. One
drawer serves every search space: it lays out the neutral graph that
``genotype_graph`` makes of a genotype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.ticker import MaxNLocator

from nas_operator.local.genotype_graph import Graph, genotype_graphs

NODE_COLOURS = {"input": "#cfe2f3", "op": "#fff2cc", "output": "#d9ead3"}


def layered_positions(graph: Graph) -> dict[str, tuple[float, float]]:
    """Left-to-right layout: a node's column is its longest path from an input."""
    incoming: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        if e.dst in incoming and e.src in incoming:
            incoming[e.dst].append(e.src)
    depth: dict[str, int] = {}

    def column(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in depth:
            parents = [p for p in incoming[node] if p not in seen]
            depth[node] = 1 + max((column(p, seen | {node}) for p in parents), default=-1)
        return depth[node]

    for n in graph.nodes:
        column(n.id)
    columns: dict[int, list[str]] = {}
    for n in graph.nodes:
        columns.setdefault(depth[n.id], []).append(n.id)
    positions = {}
    for x, ids in columns.items():
        for i, node in enumerate(ids):
            positions[node] = (float(x), (len(ids) - 1) / 2.0 - i)
    return positions


def _frame(ax: Any, graph: Graph, pos: dict[str, tuple[float, float]]) -> None:
    width = max(x for x, _ in pos.values()) + 1
    height = max(abs(y) for _, y in pos.values()) * 2 + 1
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    ax.set_axis_off()
    ax.set_title(graph.title, fontsize=11)


def _curve_middle(ax: Any, a: tuple[float, float], b: tuple[float, float], rad: float
                  ) -> tuple[float, float]:
    """Middle of matplotlib's ``arc3`` curve from a to b (it bends in display space)."""
    (x0, y0), (x1, y1) = ax.transData.transform([a, b])
    mx, my = (x0 + x1) / 2 + rad * (y1 - y0) / 2, (y0 + y1) / 2 - rad * (x1 - x0) / 2
    x, y = ax.transData.inverted().transform((mx, my))
    return float(x), float(y)


def _draw_nodes(ax: Any, graph: Graph, pos: dict[str, tuple[float, float]]) -> dict[str, Any]:
    texts = {}
    for n in graph.nodes:
        x, y = pos[n.id]
        texts[n.id] = ax.text(x, y, n.label, fontsize=7.5, ha="center", va="center", zorder=3,
                              bbox={"boxstyle": "round,pad=0.35", "fc": NODE_COLOURS[n.kind],
                                    "ec": "#444444"})
    return texts


def _draw_edges(ax: Any, graph: Graph, pos: dict[str, tuple[float, float]],
                texts: dict[str, Any]) -> None:
    """Arrows clipped at the node boxes (so their heads show), labels at the curve middles."""
    seen: dict[tuple[str, str], int] = {}
    for e in graph.edges:
        if e.src not in pos or e.dst not in pos:
            continue
        k = seen.get((e.src, e.dst), 0)
        seen[(e.src, e.dst)] = k + 1
        rad = 0.0 if k == 0 else 0.25 * (1 if k % 2 else -1) * ((k + 1) // 2)
        a, b = pos[e.src], pos[e.dst]
        if b[0] <= a[0] and k == 0:
            rad = 0.35  # same column: bend so the edge does not run through the nodes
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, shrinkA=2,
                                     shrinkB=2, patchA=texts[e.src].get_bbox_patch(),
                                     patchB=texts[e.dst].get_bbox_patch(), color="#555555",
                                     lw=0.8, connectionstyle=f"arc3,rad={rad}", zorder=2))
        if e.label:
            mx, my = _curve_middle(ax, a, b, rad)
            ax.text(mx, my, e.label, fontsize=6.5, ha="center", va="center", color="#1c4587",
                    zorder=2.5, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                      "alpha": 0.8})


def draw_architecture(genotype: dict[str, Any], path: str | Path, title: str) -> None:
    """Draw every cell (or the network) of ``genotype`` into one PNG."""
    graphs = genotype_graphs(genotype)
    layouts = [layered_positions(g) for g in graphs]
    columns = max(max(x for x, _ in pos.values()) + 1 for pos in layouts)
    rows = max(max(abs(y) for _, y in pos.values()) * 2 + 1 for pos in layouts)
    fig = Figure(figsize=(max(6.0, 1.8 * columns), max(2.5, 0.75 * rows) * len(graphs) + 0.6))
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=12)
    axes = fig.subplots(len(graphs), 1, squeeze=False)[:, 0]
    for ax, graph, pos in zip(axes, graphs, layouts, strict=True):
        _frame(ax, graph, pos)
    fig.tight_layout()  # before any edge: their labels are placed in display space
    texts = [_draw_nodes(ax, g, pos) for ax, g, pos in zip(axes, graphs, layouts, strict=True)]
    fig.canvas.draw()  # lays out the node boxes the arrows are clipped at
    for ax, graph, pos, boxes in zip(axes, graphs, layouts, texts, strict=True):
        _draw_edges(ax, graph, pos, boxes)
    fig.savefig(path, dpi=110)


@dataclass(frozen=True)
class RewardPoint:
    """One search trial for the reward plot (reward None: it failed or was cancelled)."""

    index: int
    reward: float | None


def draw_rewards(points: Sequence[RewardPoint], path: str | Path, title: str) -> None:
    """Reward per trial (in trial order) with the running best; failed trials as red marks."""
    fig = Figure(figsize=(7.5, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ordered = sorted(points, key=lambda p: p.index)
    good = [p for p in ordered if p.reward is not None and math.isfinite(p.reward)]
    if good:
        ax.scatter([p.index for p in good], [p.reward for p in good], s=18, color="#3d85c6",
                   label="reward", zorder=3)
        best: list[float] = []
        for p in good:
            best.append(p.reward if not best else max(best[-1], p.reward))  # type: ignore[type-var]
        ax.step([p.index for p in good], best, where="post", color="#cc4125", lw=1.5,
                label="best so far")
    failed = [p.index for p in ordered if p.reward is None]
    if failed:
        low = min((p.reward for p in good), default=0.0) or 0.0
        ax.scatter(failed, [low] * len(failed), marker="x", color="#990000", s=24,
                   label="failed", zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("reward")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    if good or failed:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
