"""SIGTERM -> checkpoint -> resume: a preempted trial finishes as if it had never stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from controller_policy.contract import TrialDocument
from controller_policy.spaces import make_space
from nas_trainer.checkpoint import (
    CHECKPOINT_FILE,
    EXIT_INTERRUPTED,
    Checkpointer,
    CheckpointMismatch,
    Progress,
    StopRequest,
)
from nas_trainer.child import build_child
from nas_trainer.cli import run_and_summarize
from nas_trainer.epochs import Interrupted, TrainResult, TrialContext
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import ConfigError, setup_runtime
from nas_trainer.train_image import train_image
from nas_trainer.train_language import train_language
from tests.support.trainer import StopAtPoll, preempt_and_rerun

TIMING = {"epoch_seconds", "samples_per_second", "tokens_per_second"}


def image_doc(checkpoint_dir: Path | None, epochs: int = 2) -> TrialDocument:
    space = make_space("enas-micro", {"nodes": 1})
    return TrialDocument.model_validate({
        "search": "s", "trial": "t", "seed": 3,
        "architecture": space.architecture(space.sample(2)).model_dump(),
        "spaceOptions": {"nodes": 1},
        "dataset": {"name": "digits", "maxTrainExamples": 128, "validationSize": 64},
        "training": {"epochs": epochs, "batchSize": 32, "learningRate": 0.05, "threads": 1,
                     "augment": True, "cutout": 2,
                     "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1,
                               "dropPath": 0.2}},
        "checkpointDir": str(checkpoint_dir) if checkpoint_dir else None,
    })


def language_doc(checkpoint_dir: Path | None) -> TrialDocument:
    space = make_space("enas-rnn", {"nodes": 3})
    return TrialDocument.model_validate({
        "search": "s", "trial": "lm", "seed": 4,
        "architecture": space.architecture(space.sample(1)).model_dump(),
        "spaceOptions": {"nodes": 3},
        "dataset": {"name": "pydoc-text", "maxTrainExamples": 1000, "validationSize": 200},
        "objective": {"metric": "val_perplexity", "reward": "inverse-square"},
        "training": {"epochs": 2, "batchSize": 10, "bptt": 10, "learningRate": 5.0,
                     "momentum": 0.0, "nesterov": False, "threads": 1,
                     "model": {"embeddingSize": 16, "hiddenSize": 16, "variationalDropout": 0.1}},
        "checkpointDir": str(checkpoint_dir) if checkpoint_dir else None,
    })


def train(doc: TrialDocument, stop: Any) -> tuple[TrainResult, torch.nn.Module]:
    model, data = build_child(doc)
    ctx = TrialContext(doc, setup_runtime(doc.training), Reporter(None, None, None, echo_stdout=False), stop)
    fn = train_image if data.kind == "image" else train_language
    return fn(ctx, model, data), model


def without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


@pytest.mark.parametrize(("make_doc", "stop_at"), [(image_doc, 6), (language_doc, 13)],
                         ids=["image", "language"])
def test_stop_mid_epoch_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, make_doc: Any, stop_at: int
) -> None:
    reference, ref_model = train(make_doc(None), StopAtPoll(None))

    with pytest.raises(Interrupted) as stopped:
        train(make_doc(tmp_path), StopAtPoll(stop_at))
    assert stopped.value.progress.epoch == 1 and stopped.value.progress.step > 0, "mid-epoch"
    assert (tmp_path / CHECKPOINT_FILE).exists()

    resumed, model = train(make_doc(tmp_path), StopAtPoll(None))
    assert len(resumed.history) == 2
    assert without_timing(resumed.history) == without_timing(reference.history)
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_sigterm_without_checkpoint_dir_reports_interrupted_and_exits_143() -> None:
    stop = StopRequest()
    stop.request("SIGTERM")
    code, report = run_and_summarize(image_doc(None), Reporter(None, None, None, echo_stdout=False), stop)
    assert code == EXIT_INTERRUPTED == 143
    assert report.kind == "interrupted" and "no checkpointDir" in (report.reason or "")


def test_checkpoint_of_another_trial_is_refused(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    Checkpointer(tmp_path, {"trial": "a"}, {"model": net}).save(Progress(epoch=1))
    with pytest.raises(CheckpointMismatch, match=rf"checkpointDir {tmp_path} holds a checkpoint of"):
        Checkpointer(tmp_path, {"trial": "b"}, {"model": net}).restore()


def test_save_is_atomic_and_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    ckpt = Checkpointer(tmp_path, {"trial": "a"}, {"model": net})
    ckpt.save(Progress(epoch=1, history=[{"val_accuracy": 0.5}]))

    class Unpicklable:
        def state_dict(self) -> dict[str, Any]:
            return {"f": lambda: None}

        def load_state_dict(self, state: dict[str, Any]) -> None: ...

    broken = Checkpointer(tmp_path, {"trial": "a"}, {"model": net, "x": Unpicklable()})
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        broken.save(Progress(epoch=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE], "no temp files left"
    assert ckpt.restore().epoch == 1


def test_unreadable_checkpoint_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="unreadable .* delete it to start the trial afresh"):
        Checkpointer(tmp_path, {}, {}).restore()


def test_sigterm_on_a_real_trainer_process_checkpoints_and_a_rerun_resumes(tmp_path: Path) -> None:
    """Kubernetes-style preemption: SIGTERM during epoch 1, then the Job's next attempt."""
    doc = image_doc(tmp_path / "ckpt", epochs=2).model_dump(mode="json")
    doc["dataset"]["maxTrainExamples"] = 256
    doc["training"]["batchSize"] = 16  # epoch 1 (of 16 steps) is starting at the SIGTERM
    run = preempt_and_rerun(doc, tmp_path, timeout=60, rerun_timeout=120)
    assert "SIGTERM at epoch 1 step" in run.interrupted["reason"]
    assert len(run.interrupted["epochs"]) == 1
    reported = [json.loads(line) for line in run.rerun.stdout.splitlines()]
    assert [r["epoch"] for r in reported if r["kind"] == "epoch"] == [1]
    assert run.final["metrics"]["epochs"] == 2.0 and len(run.final["epochs"]) == 2
