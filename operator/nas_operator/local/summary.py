"""``kubenas show DIR``: what a run folder says about its search, read from disk only.

The phase and the counts come from the loop checkpoint (the record of truth,
the one a resume continues from); the table of trials and the best
architecture from the folder's own files. The runner prints the same summary
when a search ends, so there is one way of describing a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from nas_operator.api import NASSearch, SpecError
from nas_operator.checkpoint import CheckpointError, decode_checkpoint
from nas_operator.ledger import Ledger
from nas_operator.local.front_files import render_front, scoring
from nas_operator.local.genotype_graph import genotype_summary
from nas_operator.local.output import RunFolder, TrialRow
from nas_operator.loop.early_stopping import EarlyStopper
from nas_operator.retrained import SCORE_LABEL, scored_by

TOP_SHOWN = 5


@dataclass
class RunSummary:
    """Everything ``show`` prints."""

    folder: RunFolder
    search: NASSearch
    phase: str = "NotStarted"
    reason: str | None = None
    message: str | None = None
    created: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    running: int = 0
    seconds: float = 0.0
    controller: dict[str, Any] = field(default_factory=dict)
    strategy_told: int | None = None
    rows: list[TrialRow] = field(default_factory=list)
    best: dict[str, Any] | None = None
    stopped_early: dict[str, int] = field(default_factory=dict)
    """Trials stopped by spec.earlyStopping, by rule."""
    epochs_saved: int = 0
    front: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def load_summary(folder: RunFolder) -> RunSummary:
    """Read a run folder; ``RunFolderError``/``SpecError``/``CheckpointError`` say what is wrong."""
    folder.require_run()
    try:
        search = folder.load_search()
    except SpecError as exc:
        raise SpecError([f"{folder.search_yaml}: {e}" for e in exc.errors]) from None
    summary = RunSummary(folder=folder, search=search, rows=folder.rows(),
                         best=folder.read_best(), front=folder.read_front())
    if folder.checkpoint_file.exists():
        try:
            state = decode_checkpoint(folder.checkpoint_file.read_bytes()).state
        except CheckpointError as exc:
            raise CheckpointError(f"{folder.checkpoint_file}: {exc}") from None
        ledger = Ledger.from_state(state["ledger"])
        summary.phase, summary.reason, summary.message = (
            state["phase"], state["reason"], state["message"])
        summary.created = ledger.created("search")
        summary.counts = dict(ledger.counts["search"])
        summary.running = len(ledger.active)
        summary.seconds = float(state.get("active_seconds") or 0.0)
        summary.controller = dict(state.get("controller") or {})
        es = search.spec.earlyStopping
        if es is not None:
            stopper = EarlyStopper(es, search.spec.effective_objective().metric)
            stopper.load(state.get("earlyStopping"))
            summary.stopped_early, summary.epochs_saved = stopper.counts(), stopper.epochs_saved()
    return summary


def render_summary(summary: RunSummary, console: Console) -> None:
    spec = summary.search.spec
    objective = spec.effective_objective()
    console.print(f"[bold]search {summary.search.metadata.name}[/bold]  ({spec.searchSpace.type}, "
                  f"strategy {spec.strategy.type}, {scoring(objective)})", highlight=False)
    if summary.phase == "Suspended":  # kubenas run suspends only when stopped (Ctrl-C)
        console.print("phase       Stopped: interrupted; resumable", highlight=False)
    else:
        phase = summary.phase + (f": {summary.reason}" if summary.reason else "")
        console.print(f"phase       {phase}", highlight=False)
    if summary.message and summary.phase != "Suspended":
        console.print(f"            {summary.message}", highlight=False, markup=False)
    c = summary.counts
    unit = "trial" if scored_by(spec.strategy.type) == "supernet" else "trials"
    console.print(
        f"{unit:<11} {summary.created}/{spec.budget.max_trials()} created: "
        f"{c.get('succeeded', 0)} succeeded, {c.get('failed', 0)} failed, "
        f"{c.get('cancelled', 0)} cancelled, {summary.running} running; "
        f"{c.get('retried', 0)} attempts retried", highlight=False)
    if spec.earlyStopping is not None:
        es = spec.earlyStopping
        stopped = sum(summary.stopped_early.values())
        console.print(f"early stop  {stopped} stopped by {es.type} ({es.stoppedReward} reward), "
                      f"{summary.epochs_saved} training epochs saved", highlight=False)
    if summary.seconds:
        console.print(f"search time {_duration(summary.seconds)}", highlight=False)
    ctl = summary.controller
    if ctl.get("updates"):
        extra = "".join(f", {k} {ctl[k]:.4g}" for k in ("baseline", "entropy")
                        if isinstance(ctl.get(k), (int, float)))
        console.print(f"controller  {ctl['updates']} updates{extra}", highlight=False)
    best = summary.best
    if best is not None:
        source = best.get("scoredBy") or scored_by(spec.strategy.type)
        console.print(f"[bold]best[/bold]        {best['trial']}  reward {best['reward']:.4g}  "
                      f"({_scores(best.get('metrics') or {})})  {SCORE_LABEL[source]}",
                      highlight=False)
        if best.get("device"):
            console.print(f"            measured on {best['device']}"
                          f"{_latency(best.get('metrics') or {})}", highlight=False, markup=False)
        genotype = (best.get("architecture") or {}).get("genotype")
        console.print(f"            {genotype_summary(genotype)}", highlight=False, markup=False)
        for run in best.get("retrained") or []:
            of = f" of {run['retrains']}" if run.get("retrains") else ""
            console.print(f"[bold]retrained[/bold]   {run['trial']}{of}  reward {run['reward']:.4g}"
                          f"  ({_scores(run.get('metrics') or {})})  trained alone, "
                          f"{_epochs(run.get('metrics') or {}, spec)} epochs", highlight=False)
        if source == "supernet" and not best.get("retrained") and summary.finished:
            console.print("            (no finalTraining: the supernet score is a ranking signal, "
                          "not the accuracy of the cell trained alone)", highlight=False)
    if summary.front is not None:
        render_front(summary.front, console)
    ranked = sorted((r for r in summary.rows if r.stage == "search" and r.reward is not None
                     and r.phase != "Infeasible"),  # its reward is the penalty: never trained
                    key=lambda r: -(r.reward or 0.0))[:TOP_SHOWN]
    if ranked:
        table = Table(title=f"top {len(ranked)}", title_justify="left", show_lines=False)
        devices = any(r.device for r in ranked)
        columns = ("trial", "reward", objective.metric, "params", "attempt", "seconds")
        for column in columns + (("device",) if devices else ()):
            table.add_column(column, justify="left" if column in ("trial", "device") else "right")
        for r in ranked:
            metric, params = r.metrics.get(objective.metric), r.metrics.get("params")
            table.add_row(r.trial, f"{r.reward:.4g}", "" if metric is None else f"{metric:.4g}",
                          "" if params is None else f"{params:,.0f}", str(r.attempt),
                          "" if r.seconds is None else f"{r.seconds:.0f}",
                          *((r.device or "",) if devices else ()))
        console.print(table)
    folder = summary.folder
    files = [p for p in (folder.trials_csv, folder.best_json, folder.best_png, folder.rewards_png,
                         folder.front_json, folder.front_png) if p.exists()]
    console.print(f"folder      {folder.root}", highlight=False)
    if files:
        console.print("files       " + ", ".join(p.name for p in files), highlight=False)
    if not summary.finished:
        console.print(f"resume with: kubenas run --resume {folder.root}", highlight=False)


def _scores(metrics: dict[str, Any]) -> str:
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("val_accuracy", "val_perplexity")
                      if isinstance(metrics.get(k), (int, float)))
    if isinstance(metrics.get("params"), (int, float)):
        shown += f", {metrics['params']:,.0f} params"
    return shown


def _latency(metrics: dict[str, Any]) -> str:
    """``, latency 1.23 ms at batch 1`` when the trainer timed the network."""
    ms = metrics.get("latency_ms")
    if not isinstance(ms, (int, float)):
        return ""
    batch = metrics.get("latency_batch")
    return f", latency {ms:.3g} ms" + (f" at batch {batch:.0f}" if isinstance(
        batch, (int, float)) else "")


def _epochs(metrics: dict[str, Any], spec: Any) -> int:
    epochs = metrics.get("epochs")
    return int(epochs) if isinstance(epochs, (int, float)) else spec.final_training_spec().epochs


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"
