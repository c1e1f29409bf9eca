"""``Trial``: what a training script sees of its trial — the assignment in, the metrics out.

Why a class over the trial document and one ``Reporter``: a user's script should read
its genotype and hyper-parameters and report per-epoch and final metrics in a few
lines, without knowing the status API, the token or the termination message; and a
script preempted half-way should find, in ``checkpoint_dir()``, both its own
checkpoint and the epochs it already reported, so the final report still carries
them all (docs/trial-sdk.md).
"""

from __future__ import annotations

import json
import math
import operator
import signal
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from pydantic import ValidationError

from controller_policy.contract import DatasetSpec, Report, ReportKind, TrainingSpec, TrialDocument
from controller_policy.files import atomic_write
from controller_policy.objective import Objective
from controller_policy.strict import format_validation_error
from kubenas_trial.assignment import load_trial
from kubenas_trial.delivery import Reporter

HISTORY_FILE = "kubenas-epochs.json"
ENDED_FILE = "kubenas-ended.json"
"""Which attempt of which trial already sent its final or failed report: ``kubenas-report`` is one
process per call, so a second ``--final``/``--failed`` of the same attempt is refused from this file
instead of overwriting the termination message that holds the first."""
"""In ``checkpoint_dir()``: the epochs reported so far, so a resumed attempt (or the next
``kubenas-report`` call) sends a final report that carries every epoch."""


class ReportError(ValueError):
    """A report the search could not use (a metric that is not a finite number, a report
    after the final one); the message names the metric or the call."""


def metric_value(name: str, value: object) -> float:
    """``value`` as a finite float: ints, floats, numpy scalars and 0-d tensors are numbers;
    booleans, strings and NaN or infinity are refused with the metric's name."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise ReportError(f"metric {name}: {value!r} is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ReportError(f"metric {name}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ReportError(f"metric {name}: {number} is not finite; report a diverged run with "
                          "report_failed(reason) instead")
    return number


def metric_values(metrics: Mapping[str, object]) -> dict[str, float]:
    return {str(name): metric_value(str(name), value) for name, value in metrics.items()}


class Trial:
    """One trial attempt: its assignment (read-only) and its reports (in order, once final)."""

    def __init__(self, document: TrialDocument, reporter: Reporter) -> None:
        self.document = document
        self.reporter = reporter
        self._history: dict[int, dict[str, float]] = self._load_history()
        self._ended: str | None = self._load_ended()
        self._finished = self._ended is not None
        self._preempted = threading.Event()

    @classmethod
    def from_env(cls, path: str | None = None) -> Trial:
        """The trial this process runs, from its environment (``path``: a trial document file
        instead of ``$KUBENAS_TRIAL_FILE`` / ``$KUBENAS_TRIAL_JSON``)."""
        return cls(load_trial(path), Reporter.from_env())

    # --- the assignment -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.document.trial

    @property
    def search(self) -> str:
        return self.document.search

    @property
    def namespace(self) -> str:
        return self.document.namespace

    @property
    def attempt(self) -> int:
        """0 for the first attempt; more after a failure or a preemption."""
        return self.document.attempt

    @property
    def seed(self) -> int:
        return self.document.seed

    @property
    def stage(self) -> str:
        """``search``, or ``final`` for a retraining of the best (``finalTraining``)."""
        return "final" if self.document.outputDir else "search"

    @property
    def space(self) -> str | None:
        arch = self.document.architecture
        return arch.space if arch is not None else self.document.spaceType

    @property
    def space_options(self) -> dict[str, Any]:
        return dict(self.document.spaceOptions)

    @property
    def genotype(self) -> dict[str, Any]:
        """The architecture to train, readable: decision names to chosen values."""
        arch = self.document.architecture
        return dict(arch.genotype) if arch is not None else {}

    @property
    def tokens(self) -> list[int]:
        """The strategy's decision list of the same architecture."""
        arch = self.document.architecture
        return list(arch.tokens) if arch is not None else []

    @property
    def training(self) -> TrainingSpec:
        """``spec.trial.training``: epochs, batch size, learning rate, ... (search or final)."""
        return self.document.training

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """``training`` as plain data (what a script logs or passes on)."""
        return self.document.training.model_dump(mode="json")

    @property
    def dataset(self) -> DatasetSpec:
        return self.document.dataset

    @property
    def data_path(self) -> Path | None:
        """``spec.trial.dataset.path`` (on a cluster: where its claim is mounted)."""
        return Path(self.document.dataset.path) if self.document.dataset.path else None

    @property
    def objective(self) -> Objective:
        """What the search scores: the metric to report in every epoch, and its direction."""
        return self.document.objective

    def checkpoint_dir(self) -> Path:
        """A folder that outlives this attempt (the next attempt of the trial gets the same
        one): save a checkpoint there and resume from it after a preemption. Created."""
        folder = self.document.checkpointDir
        path = Path(folder) if folder else Path(tempfile.gettempdir()) / (
            f"kubenas-{self.namespace}-{self.search}-{self.name}")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output_dir(self) -> Path | None:
        """Final training only: where to save the trained model (None during the search)."""
        return Path(self.document.outputDir) if self.document.outputDir else None

    @property
    def history(self) -> list[dict[str, float]]:
        """The epochs reported so far (this attempt and the earlier ones), oldest first."""
        return [dict(self._history[e]) for e in sorted(self._history)]

    @property
    def next_epoch(self) -> int:
        """The first epoch not reported yet: where a resumed script continues."""
        return max(self._history) + 1 if self._history else 0

    # --- preemption ---------------------------------------------------------------------
    def watch_preemption(self) -> Trial:
        """Turn SIGTERM (a suspend, a node drain, Ctrl-C of ``kubenas run``) into ``preempted``
        becoming true, so the script can checkpoint and call ``report_interrupted()``."""
        def handler(_signum: int, _frame: FrameType | None) -> None:
            self._preempted.set()

        signal.signal(signal.SIGTERM, handler)
        return self

    @property
    def preempted(self) -> bool:
        return self._preempted.is_set()

    # --- reports ------------------------------------------------------------------------
    def report_epoch(self, epoch: int, **metrics: object) -> None:
        """One epoch's metrics (``epoch`` 0-based, as ``range`` counts); returns at once."""
        try:
            index = operator.index(epoch)  # type: ignore[arg-type]
        except TypeError:
            raise ReportError(f"epoch: {epoch!r} is not a whole number") from None
        values = metric_values(metrics)
        report = self._report("epoch", epoch=index, metrics=values)
        self._history[index] = values
        self._save_history()
        self.reporter.send(report)

    def report_final(self, **metrics: object) -> None:
        """The trial's result (default: the last epoch's metrics) with every epoch reported;
        also written to the termination message; waits (bounded) for delivery."""
        values = metric_values(metrics) if metrics else (self.history[-1] if self._history else {})
        self._finish(self._report("final", metrics=values, epochs=self.history))

    def report_failed(self, reason: str) -> None:
        """The attempt failed for ``reason`` (the search may retry it)."""
        self._finish(self._report("failed", reason=str(reason)[:1024]))

    def report_interrupted(self, reason: str = "preempted") -> None:
        """The attempt stopped before its end (after a SIGTERM), its checkpoint saved."""
        history = self.history
        self._finish(self._report("interrupted", reason=str(reason)[:1024], epochs=history,
                                  metrics=history[-1] if history else {}), budget_s=10.0)

    @property
    def finished(self) -> bool:
        return self._finished

    def __enter__(self) -> Trial:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        """Leaving the block: an exception becomes a failed report, a normal end without a
        final report sends one from the epochs reported."""
        if self._finished:
            return
        if exc is not None:
            self.report_failed(f"{kind.__name__ if kind else 'error'}: {exc}")
        elif self._history:
            self.report_final()
        else:
            self.report_failed("the training script ended without reporting any metric")

    # --- internals ----------------------------------------------------------------------
    def _report(self, kind: ReportKind, **fields: Any) -> Report:
        if self._finished:
            earlier = f" (a {self._ended} report, kept in {self.checkpoint_dir() / ENDED_FILE})" if self._ended else ""
            raise ReportError(f"report {kind}: attempt {self.attempt} of trial {self.name} already ended{earlier}; "
                              "an attempt ends once: its first final, failed or interrupted report stands")
        try:
            return Report(kind=kind, trial=self.name, attempt=self.attempt, **fields)
        except ValidationError as exc:
            lines = format_validation_error(exc, absolute=())
            raise ReportError(f"{kind} report refused: " + "; ".join(lines)) from None

    def _finish(self, report: Report, budget_s: float | None = None) -> None:
        self._finished = True
        self._ended = report.kind
        if report.kind != "interrupted":  # an interrupted attempt may be run again as itself
            try:
                atomic_write(self.checkpoint_dir() / ENDED_FILE, json.dumps(
                    {"trial": self.name, "attempt": self.attempt, "kind": report.kind}))
            except OSError:
                pass  # a read-only folder: only a second kubenas-report call goes unguarded
        self.reporter.finish(report, budget_s)

    def _load_ended(self) -> str | None:
        """The kind of this attempt's last report if an earlier process of it sent one."""
        try:
            raw = json.loads((self.checkpoint_dir() / ENDED_FILE).read_text())
        except (OSError, ValueError):
            return None
        if isinstance(raw, dict) and raw.get("trial") == self.name and raw.get("attempt") == self.attempt:
            return str(raw.get("kind", "final"))
        return None

    def _history_path(self) -> Path:
        return self.checkpoint_dir() / HISTORY_FILE

    def _load_history(self) -> dict[int, dict[str, float]]:
        try:
            raw = json.loads(self._history_path().read_text())
            return {int(k): metric_values(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}  # none yet, or unreadable: the server keeps the epochs it accepted

    def _save_history(self) -> None:
        try:
            atomic_write(self._history_path(), json.dumps(
                {str(k): v for k, v in sorted(self._history.items())}))
        except OSError:
            pass  # a read-only folder costs only the resumed attempt's old epochs
