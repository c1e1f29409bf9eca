"""Trainer-level test helpers: a stop request at an exact poll, tiny ENAS and DARTS trial
documents on the bundled digits, and a trial context that reports nowhere."""

from __future__ import annotations

from typing import Any

from controller_policy.contract import TrialDocument
from nas_trainer.epochs import TrialContext
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import setup_runtime


class StopAtPoll:
    """Stands in for SIGTERM arriving at an exact point: the n-th time the loop looks."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.polls = 0
        self.signal_name = "SIGTERM"

    @property
    def requested(self) -> bool:
        self.polls += 1
        return self.at is not None and self.polls > self.at


def image_doc(space: str, options: dict[str, Any], **over: Any) -> dict[str, Any]:
    """A tiny ENAS search on digits: 2 steps of omega and 2 controller updates per epoch."""
    doc: dict[str, Any] = {
        "search": "s", "trial": "enas", "seed": 1, "mode": "enas",
        "spaceType": space, "spaceOptions": options,
        "dataset": {"name": "digits", "maxTrainExamples": 64, "validationSize": 64},
        "training": {"epochs": 2, "batchSize": 32, "learningRate": 0.05, "schedule": "sgdr",
                     "learningRateMin": 0.001, "sgdrPeriod": 1, "threads": 1,
                     "model": {"filters": 4, "cellsPerStage": 1}},
        "enas": {"controllerStepsPerEpoch": 2, "controllerBatch": 3, "deriveSamples": 4},
    }
    doc.update(over)
    return doc


def darts_doc(order: str = "first", **over: Any) -> dict[str, Any]:
    """A tiny DARTS search on digits: 2 nodes, 3 cells of 4 filters, 2 steps of batch 16 per epoch."""
    doc: dict[str, Any] = {
        "search": "s", "trial": "darts", "seed": 1, "mode": "darts",
        "spaceType": "enas-micro", "spaceOptions": {"nodes": 2},
        "dataset": {"name": "digits", "maxTrainExamples": 32, "validationSize": 32},
        "training": {"epochs": 2, "batchSize": 16, "learningRate": 0.025, "nesterov": False,
                     "weightDecay": 3e-4, "learningRateMin": 0.001, "gradClip": 5.0, "threads": 1,
                     "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1}},
        "darts": {"order": order},
    }
    doc.update(over)
    return doc


def make_ctx(doc: dict[str, Any], stop: Any) -> TrialContext:
    trial = TrialDocument.model_validate(doc)
    return TrialContext(
        trial, setup_runtime(trial.training), Reporter(None, None, None, echo_stdout=False), stop
    )
