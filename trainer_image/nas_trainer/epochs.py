"""Epoch bookkeeping shared by every training mode (image, language, ENAS).

A mode supplies the per-step work; ``EpochLoop`` owns what must behave the same
everywhere: resuming from a checkpoint, polling the stop flag between steps,
checkpointing on stop and at each epoch's end, per-epoch reports, and the
final metrics' history.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from controller_policy.contract import Report, TrialDocument
from nas_trainer.checkpoint import Checkpointer, Progress, StopRequest
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import Runtime

log = logging.getLogger("nas_trainer")


class Interrupted(Exception):
    """Training stopped on request; the checkpoint (if any) is saved."""

    def __init__(self, progress: Progress, checkpoint: str | None, reason: str) -> None:
        super().__init__(reason)
        self.progress = progress
        self.checkpoint = checkpoint
        self.reason = reason


class TrainingFailed(Exception):
    """Training cannot produce a meaningful result (e.g. the loss diverged)."""


@dataclass
class TrialContext:
    """What every mode needs besides its model and data."""

    doc: TrialDocument
    runtime: Runtime
    reporter: Reporter
    stop: StopRequest


class EpochLoop:
    """Progress, checkpoints, stop handling and reports for one training run."""

    def __init__(self, ctx: TrialContext, checkpointer: Checkpointer) -> None:
        self.ctx = ctx
        self.checkpointer = checkpointer
        self.progress = Progress()

    def resume(self) -> Progress:
        """Restore from the checkpoint directory when it holds this trial's state."""
        self.progress = self.checkpointer.restore()
        return self.progress

    @property
    def epochs(self) -> int:
        return self.ctx.doc.training.epochs

    def remaining_epochs(self) -> range:
        return range(self.progress.epoch, self.epochs)

    def stop_requested(self) -> bool:
        return self.ctx.stop.requested

    def interrupt(self, partial: dict[str, float] | None = None, carry: dict[str, Any] | None = None) -> None:
        """Checkpoint the current position and raise ``Interrupted``."""
        self.progress.partial = dict(partial or {})
        self.progress.carry = dict(carry or {})
        path = self.checkpointer.save(self.progress)
        reason = (
            f"{self.ctx.stop.signal_name or 'stop requested'} at epoch {self.progress.epoch} "
            f"step {self.progress.step}; "
            + (f"checkpoint saved to {path}" if path else "no checkpointDir, progress lost")
        )
        log.warning("interrupted: %s", reason)
        raise Interrupted(self.progress, str(path) if path else None, reason)

    def advance(self) -> None:
        """Count one finished optimizer step."""
        self.progress.step += 1
        self.progress.global_step += 1

    def end_epoch(self, metrics: dict[str, float]) -> None:
        """Record and report a finished epoch, then checkpoint at the epoch boundary."""
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise TrainingFailed(
                    f"{key} is {value} after epoch {self.progress.epoch}: training diverged; "
                    "lower training.learningRate or set training.gradClip"
                )
        epoch = self.progress.epoch
        self.progress.history.append(dict(metrics))
        self.ctx.reporter.send(
            Report(kind="epoch", trial=self.ctx.doc.trial, attempt=self.ctx.doc.attempt,
                   epoch=epoch, metrics=metrics)
        )
        log.info("epoch %d/%d %s", epoch + 1, self.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        self.progress.epoch += 1
        self.progress.step = 0
        self.progress.partial = {}
        self.progress.carry = {}
        if self.stop_requested():
            self.interrupt()  # saves at the epoch boundary
        self.checkpointer.save(self.progress)


def trial_identity(ctx: TrialContext) -> dict[str, Any]:
    """What a checkpoint must belong to before it is resumed."""
    arch = ctx.doc.architecture
    return {
        "search": ctx.doc.search,
        "trial": ctx.doc.trial,
        "mode": ctx.doc.mode,
        "space": arch.space if arch else ctx.doc.spaceType,
        "tokens": list(arch.tokens) if arch else None,
    }


@dataclass
class TrainResult:
    """What a finished training mode hands to the CLI for the ``final`` report."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    architecture: Any = None
    """ENAS: the derived ``Architecture``; None for a plain trial."""
    device: str | None = None
    """The device ``latency_ms`` was measured on (``nas_trainer.measure.device_name``)."""
