"""Trainer-level test helpers: a stop request at an exact poll, tiny ENAS and DARTS trial
documents on the bundled digits, a trial context that reports nowhere, and a real trainer
process preempted by SIGTERM and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller_policy.contract import TrialDocument
from nas_trainer.checkpoint import CHECKPOINT_FILE, EXIT_INTERRUPTED
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


@dataclass(frozen=True)
class Preempted:
    """A trainer process SIGTERMed after its first epoch report, then run again to its end."""

    interrupted: dict[str, Any]
    """The termination message of the preempted run."""
    rerun: subprocess.CompletedProcess[str]
    final: dict[str, Any]
    """The termination message of the rerun."""


def preempt_and_rerun(doc: dict[str, Any], folder: Path, *, timeout: float = 120,
                      rerun_timeout: float = 240) -> Preempted:
    """``python -m nas_trainer`` on ``doc`` (its checkpointDir under ``folder``) as Kubernetes
    preempts it: SIGTERM once the first epoch is reported, then the Job's next attempt. Checks
    what every trainer must do (exit 'interrupted' with a checkpoint saved, the rerun resumes,
    finishes and keeps the interrupted run's epochs) and returns the reports for the rest."""
    trial = folder / "trial.json"
    trial.write_text(json.dumps(doc))
    env = {**os.environ, "KUBENAS_TERMINATION_FILE": str(folder / "term"), "OMP_NUM_THREADS": "1"}
    env.pop("KUBENAS_REPORT_URL", None)  # no report URL: reports are JSON lines on stdout
    cmd = [sys.executable, "-m", "nas_trainer", "--trial", str(trial)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if json.loads(line)["kind"] == "epoch":
                break
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=timeout)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == EXIT_INTERRUPTED, err
    interrupted = json.loads((folder / "term").read_text())
    assert interrupted["kind"] == "interrupted" and "checkpoint saved to" in interrupted["reason"]
    assert (Path(doc["checkpointDir"]) / CHECKPOINT_FILE).exists()

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=rerun_timeout)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from" in rerun.stderr
    final = json.loads((folder / "term").read_text())
    assert final["kind"] == "final"
    assert final["epochs"][:len(interrupted["epochs"])] == interrupted["epochs"]
    return Preempted(interrupted, rerun, final)
