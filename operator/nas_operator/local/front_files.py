"""front.json and front.png of a multi-objective run folder.

front.json is the status' Pareto front as a file (at most ``FRONT_LIMIT`` members,
each with its objective values, metrics and exportable architecture), written
beside best.json whenever a search trial succeeds. front.png is drawn from the
trial journal, so every finished trial is a point: the first objective (the
quality, e.g. accuracy) against each other objective, the non-dominated trials
highlighted and joined in order. Drawn with matplotlib's object API on the Agg
canvas, like the other pictures of the folder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from controller_policy.multi_objective import ObjectiveTerm, point_of
from controller_policy.objective import Objective
from controller_policy.pareto import pareto_front
from nas_operator.local.genotype_graph import genotype_summary
from nas_operator.local.output import RunFolder, TrialRow

if TYPE_CHECKING:
    from rich.console import Console

    from nas_operator.loop import SearchLoop


def front_document(loop: SearchLoop) -> dict[str, Any] | None:
    """front.json: the search's front as its status shows it (None: single-objective form)."""
    front = loop.status().front
    if front is None:
        return None
    space = loop.spec.searchSpace.type
    return {
        "search": loop.name,
        "namespace": loop.namespace,
        "objectives": front.objectives,
        "referencePoint": front.referencePoint,
        "hypervolume": front.hypervolume,
        "size": front.size,
        "members": [{
            "trial": m.trial, "reward": m.reward, "objectives": m.objectives,
            "metrics": m.metrics, "device": m.device,
            "architecture": {"space": space, "tokens": m.tokens, "genotype": m.genotype or {}},
            "summary": genotype_summary(m.genotype),
        } for m in front.members],
        "spaceOptions": dict(loop.spec.searchSpace.options),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def scored_rows(rows: Sequence[TrialRow], terms: Sequence[ObjectiveTerm]) -> list[TrialRow]:
    """The succeeded search trials that carry a value for every objective."""
    names = [t.metric for t in terms]
    return [r for r in rows if r.stage == "search" and r.reward is not None and r.objectives
            and all(n in r.objectives for n in names)]


def draw_front(rows: Sequence[TrialRow], terms: Sequence[ObjectiveTerm], path: str | Path,
               title: str) -> int:
    """The picture; returns how many trials are on the front."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = scored_rows(rows, terms)
    values = [[r.objectives[t.metric] for t in terms] for r in scored]  # type: ignore[index]
    on_front = set(pareto_front([point_of(terms, v) for v in values]))
    others = list(range(1, len(terms)))
    fig = Figure(figsize=(6.5 * len(others), 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(others), squeeze=False)[0]
    for ax, j in zip(axes, others, strict=True):
        rest = [i for i in range(len(values)) if i not in on_front]
        ax.scatter([values[i][j] for i in rest], [values[i][0] for i in rest], s=20,
                   color="#9e9e9e", label="trial", zorder=2)
        front = sorted(on_front, key=lambda i: (values[i][j], values[i][0]))
        ax.plot([values[i][j] for i in front], [values[i][0] for i in front], "-o", ms=6,
                color="#cc4125", label=f"Pareto front ({len(front)})", zorder=3)
        for i in front:
            ax.annotate(scored[i].trial.rsplit("-", 1)[-1], (values[i][j], values[i][0]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7, color="#7f2a1d")
        target = terms[j].target
        if target is not None:
            ax.axvline(target, color="#3d85c6", ls="--", lw=1, label=f"target {target:g}")
        ax.set_xlabel(f"{terms[j].metric} ({terms[j].direction})")
        ax.set_ylabel(f"{terms[0].metric} ({terms[0].direction})")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return len(on_front)


def scoring(objective: Objective) -> str:
    """How the search scores its trials, in words (the summary's first line)."""
    terms = objective.objectives
    if terms is None:
        return f"reward {objective.reward} of {objective.metric}"
    listed = ", ".join(f"{t.direction} {t.metric}" + (f" (target {t.target:g})" if t.target
                                                       else "") for t in terms)
    sc = objective.scalarization
    kind = sc.type if sc is not None else "mnasnet"
    if kind == "mnasnet":
        kind += f" w {sc.w if sc is not None else -0.07:g}"
    return f"objectives {listed}; reward {kind}"


def render_front(front: dict[str, Any], console: Console) -> None:
    """The front of front.json as a table (what ``kubenas show`` prints)."""
    members = front.get("members") or []
    names = [o.split(" ", 1)[-1] for o in front.get("objectives") or []]
    reference = ", ".join(f"{k} {v:g}" for k, v in (front.get("referencePoint") or {}).items())
    table = Table(title=f"Pareto front: {front.get('size', len(members))} trials, "
                  f"{len(members)} shown; hypervolume {front.get('hypervolume', 0.0):.4g} "
                  f"(reference {reference})", title_justify="left")
    for column in ("trial", *names, "reward", "architecture"):
        table.add_column(column, justify="left" if column in ("trial", "architecture")
                         else "right")
    for m in members:
        values = m.get("objectives") or {}
        table.add_row(m.get("trial", "?"), *(_value(values.get(n)) for n in names),
                      _value(m.get("reward")), str(m.get("summary") or "")[:60])
    console.print(table)


def _value(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return ""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def front_title(search: str, strategy: str | None) -> str:
    return f"{search}: every trial's objectives, the Pareto front highlighted ({strategy})"


def write_front_png(folder: RunFolder, objective: Objective, title: str) -> bool:
    """front.png from the folder's journal; False when there is nothing to draw."""
    if objective.objectives is None:
        return False
    rows = folder.rows()
    if not scored_rows(rows, objective.objectives):
        return False
    draw_front(rows, objective.objectives, folder.front_png, title)
    return True
