"""What a person watching ``kubenas run`` sees: a progress bar and one line per notable event.

On a terminal: a rich bar (trials done of maxTrials, running, best reward,
elapsed, ETA) with trial outcomes printed above it. Elsewhere (CI, a pipe, a
log file) or with ``--quiet``: the same lines, no bar, no control characters.
An ENAS search is one trial that trains for ``training.epochs``, so its bar
counts epochs instead.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from controller_policy.strategies.registry import is_weight_sharing
from nas_operator.loop import EventReason, LoopEvent, SearchLoop
from nas_operator.retrained import SCORE_LABEL, scored_by

LINE_EVENTS = frozenset({
    EventReason.TRIAL_SUCCEEDED, EventReason.TRIAL_RETRIED, EventReason.TRIAL_FAILED,
    EventReason.TRIAL_CANCELLED, EventReason.TRIAL_REQUEUED, EventReason.NEW_BEST,
    EventReason.LAUNCH_FAILED, EventReason.CHECKPOINT_FAILED, EventReason.STRATEGY_ERROR,
    EventReason.CANCEL_FAILED, EventReason.FINAL_TRAINING_STARTED, EventReason.SEARCH_SUCCEEDED,
    EventReason.SEARCH_FAILED, EventReason.TRIAL_EARLY_STOPPED,
})
"""Events worth a line of their own (the rest only move the bar)."""


class ProgressView:
    """Subscriber of one loop that draws its progress."""

    def __init__(self, loop: SearchLoop, console: Console, *, quiet: bool = False) -> None:
        self.loop = loop
        self.console = console
        self.quiet = quiet or not console.is_terminal
        self.weight_sharing = is_weight_sharing(loop.spec.strategy.type)  # one trial: count epochs
        self.epochs_done = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @property
    def total(self) -> int:
        if self.weight_sharing:
            return self.loop.spec.trial.training.epochs
        return self.loop.spec.budget.max_trials()

    def start(self) -> None:
        if self.quiet:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}"), TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, refresh_per_second=2, transient=False,
        )  # fmt: skip
        self._task = self._progress.add_task(
            "epochs" if self.weight_sharing else "trials", total=self.total, running=0, best="-")
        self._progress.start()
        self.refresh()

    def stop(self) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.stop()
            self._progress = None

    def stage(self, trial: str | None) -> str | None:
        parsed = self.loop.ledger.parse(trial) if trial else None
        return parsed[0] if parsed else None

    def __call__(self, event: LoopEvent) -> None:
        final = self.stage(event.trial) == "final"
        if event.reason == EventReason.TRIAL_EPOCH and (self.weight_sharing or final):
            epoch = event.data.get("epoch")
            if isinstance(epoch, int):
                if not final:
                    self.epochs_done = max(self.epochs_done, epoch + 1)
                if self.quiet:
                    total = self.loop.spec.final_training_spec().epochs if final else self.total
                    what = f"retraining {event.trial} " if final else ""
                    self.print(f"{what}epoch {epoch + 1}/{total}: " + _metrics(event.data))
        if event.reason in LINE_EVENTS:
            self.print(self._line(event))
        self.refresh()

    def done_count(self) -> int:
        if self.weight_sharing:
            return self.epochs_done
        t = self.loop.status().trials
        return t.succeeded + t.failed + t.cancelled + t.earlyStopped

    def refresh(self) -> None:
        if self._progress is None or self._task is None:
            return
        t = self.loop.status().trials
        best = self.loop.ledger.best
        self._progress.update(self._task, completed=min(self.done_count(), self.total),
                              total=self.total, running=t.running + t.pending,
                              best="-" if best is None else f"{best.reward:.4g}")

    def print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _line(self, event: LoopEvent) -> str:
        prefix = "!" if event.type == "Warning" else " "
        stage = self.stage(event.trial)
        if event.reason == EventReason.TRIAL_SUCCEEDED and stage is not None:
            scores = _metrics(event.data, ("val_accuracy", "val_perplexity"))
            label = ("retrained alone" if stage == "final"
                     else SCORE_LABEL[scored_by(self.loop.spec.strategy.type)])
            line = f"{event.message} ({scores}; {label})" if scores else event.message
            if stage == "search" and not self.weight_sharing:
                return f"{prefix} [{self.done_count()}/{self.total}] {line}"
            return f"{prefix} {line}"
        if event.reason in (EventReason.TRIAL_FAILED, EventReason.TRIAL_EARLY_STOPPED) \
                and not self.weight_sharing:
            return f"{prefix} [{self.done_count()}/{self.total}] {event.message}"
        return f"{prefix} {event.message}"


def _metrics(data: dict[str, object], names: tuple[str, ...] | None = None) -> str:
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        return ""
    shown = [(k, v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and math.isfinite(v)
             and (k in names if names is not None else "val" in k)]
    return ", ".join(f"{k}={v:.4g}" for k, v in shown[:4])
