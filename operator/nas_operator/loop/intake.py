"""Report intake: whether a trainer's report may change the ledger, and what it says.

Pure functions over the ledger's records (no asyncio, no strategy): the loop
calls ``admit`` then ``problem_of`` and, for an epoch report, ``record_epoch``;
a final report's epochs come from ``final_epochs``. The outcome names map to
HTTP codes in the status API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from controller_policy.contract import Report
from nas_operator.ledger import (
    MAX_EPOCHS_KEPT,
    FinishedTrial,
    Ledger,
    Trial,
    TrialState,
    report_digest,
)

MAX_METRICS = 64
MAX_METRIC_NAME = 128


class ReportOutcome(StrEnum):
    """What became of a report; the status API maps it to an HTTP code."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ReportResult:
    outcome: ReportOutcome
    message: str

    @property
    def ok(self) -> bool:
        return self.outcome in (ReportOutcome.ACCEPTED, ReportOutcome.DUPLICATE)


def admit(ledger: Ledger, where: str, trial: str, report: Report, *, serving: bool
          ) -> Trial | ReportResult:
    """The live trial this report may change, or why it may not (``where``: the search)."""
    rec = ledger.get(trial)
    if rec is None:
        return ReportResult(ReportOutcome.NOT_FOUND, f"trial {trial!r} is not part of search {where}")
    if report.trial != trial:
        return ReportResult(ReportOutcome.BAD_REQUEST,
                            f"report.trial {report.trial!r} does not match the trial {trial!r} "
                            "of the URL")  # fmt: skip
    if isinstance(rec, FinishedTrial) or rec.state.terminal:
        return late_report(trial, rec, report)
    if not serving:
        return ReportResult(ReportOutcome.NOT_FOUND, f"search {where} "
                            "is not served by this process any more")
    if rec.state is TrialState.QUEUED or report.attempt != rec.attempt:
        what = ("was stopped; the trial waits for a new attempt" if report.attempt >= rec.attempt
                and rec.state is TrialState.QUEUED else "is not the current attempt")
        if report.attempt > rec.attempt:
            what = "was never launched"
        return ReportResult(ReportOutcome.CONFLICT,
                            f"trial {trial}: attempt {report.attempt} {what} "
                            f"(current attempt {rec.attempt}, {rec.state.value})")
    return rec


def late_report(trial: str, rec: Trial | FinishedTrial, report: Report) -> ReportResult:
    """A report for a trial that already ended: a repeat, or a conflict."""
    state, attempt, digest = rec.state, rec.attempt, rec.final_digest
    n_epochs = rec.epochs if isinstance(rec, FinishedTrial) else rec.epoch_count
    if report.kind == "final" and digest is not None and report_digest(
        report.model_dump_json()
    ) == digest:
        return ReportResult(ReportOutcome.DUPLICATE, f"trial {trial}: final report already "
                            "accepted")
    if (report.kind == "epoch" and report.attempt == attempt and report.epoch is not None
            and state is TrialState.SUCCEEDED and report.epoch < n_epochs):
        return ReportResult(ReportOutcome.DUPLICATE, f"trial {trial}: epoch {report.epoch} "
                            "already covered by the final report")
    if state is TrialState.EARLY_STOPPED:
        return ReportResult(ReportOutcome.CONFLICT, f"trial {trial} was stopped early "
                            f"(attempt {attempt}, after {n_epochs} epochs); report not counted, "
                            "the trainer may exit")
    return ReportResult(ReportOutcome.CONFLICT, f"trial {trial} already ended "
                        f"({state.value}, attempt {attempt}); report not counted")


def check_metrics(metrics: dict[str, float], where: str) -> str | None:
    if len(metrics) > MAX_METRICS:
        return f"{where}: at most {MAX_METRICS} metrics, got {len(metrics)}"
    for name, value in metrics.items():
        if not name or len(name) > MAX_METRIC_NAME:
            return f"{where}: metric names must be 1..{MAX_METRIC_NAME} characters"
        if not math.isfinite(value):
            return (
                f"{where}.{name} = {value!r} is not finite; report a diverged run as kind 'failed'"
            )
    return None


def problem_of(report: Report) -> str | None:
    """What makes the report's metrics unusable (None: nothing)."""
    problem = check_metrics(report.metrics, "report.metrics")
    for i, epoch in enumerate(report.epochs[:MAX_EPOCHS_KEPT + 1]):
        problem = problem or check_metrics(epoch, f"report.epochs[{i}]")
    if problem is None and len(report.epochs) > MAX_EPOCHS_KEPT:
        problem = f"report.epochs: at most {MAX_EPOCHS_KEPT} epochs, got {len(report.epochs)}"
    return problem


def record_epoch(rec: Trial, report: Report) -> ReportResult:
    """Put one epoch report in the trial's epochs (ordered by epoch, a repeat recognised)."""
    if report.epoch is None:
        return ReportResult(ReportOutcome.BAD_REQUEST,
                            "report.epoch is required for kind 'epoch' (0-based)")
    entry = {"epoch": float(report.epoch), **report.metrics}
    epochs = rec.epochs
    for i in range(len(epochs) - 1, -1, -1):
        number = int(epochs[i].get("epoch", -1))
        if number == report.epoch:
            if epochs[i] == entry:
                return ReportResult(ReportOutcome.DUPLICATE,
                                    f"trial {rec.name}: epoch {report.epoch} already recorded")
            epochs[i] = entry
            break
        if number < report.epoch:
            epochs.insert(i + 1, entry)
            break
    else:
        epochs.insert(0, entry)
    del epochs[:-MAX_EPOCHS_KEPT]
    rec.epoch_count = max(rec.epoch_count, report.epoch + 1)
    return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name}: epoch {report.epoch} "
                        "recorded")


def final_epochs(rec: Trial, report: Report) -> list[dict[str, float]]:
    """Every epoch's metrics of a final report (oldest first): its own list, else the epochs
    reported one by one, else its final metrics as the one epoch."""
    epochs = [dict(e) for e in report.epochs]
    if not epochs:
        epochs = [{k: v for k, v in e.items() if k != "epoch"} for e in rec.epochs]
        if report.metrics and not epochs:
            epochs = [dict(report.metrics)]
    return epochs
