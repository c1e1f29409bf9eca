"""ENAS mode end to end: ``python -m nas_trainer`` runs a weight-sharing search and reports
the derived architecture; SIGTERM checkpoints it and a rerun finishes the same search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller_policy.spaces import make_space
from nas_trainer.checkpoint import CHECKPOINT_FILE, StopRequest
from nas_trainer.enas.search import EnasSearch
from nas_trainer.epochs import Interrupted, TrainResult
from nas_trainer.runtime import ConfigError
from tests.support.trainer import StopAtPoll, image_doc, make_ctx, preempt_and_rerun

EPOCH_KEYS = {
    "train_loss", "controller_entropy", "controller_baseline", "controller_updates", "lr",
    "epoch_seconds",
}


def language_doc(**over: Any) -> dict[str, Any]:
    """A tiny ENAS RNN search on the bundled pydoc text (PTB recipe: plain SGD, clip 0.25)."""
    doc: dict[str, Any] = {
        "search": "s", "trial": "enas-lm", "seed": 2, "mode": "enas",
        "spaceType": "enas-rnn", "spaceOptions": {"nodes": 4},
        "dataset": {"name": "pydoc-text", "maxTrainExamples": 600, "validationSize": 300},
        "objective": {"metric": "val_perplexity", "reward": "inverse-square"},
        "training": {"epochs": 2, "batchSize": 8, "bptt": 10, "learningRate": 20.0,
                     "momentum": 0.0, "nesterov": False, "weightDecay": 1e-7, "gradClip": 0.25,
                     "schedule": "constant", "threads": 1,
                     "model": {"embeddingSize": 16, "hiddenSize": 16}},
        "enas": {"controllerStepsPerEpoch": 2, "controllerBatch": 3, "deriveSamples": 4},
    }
    doc.update(over)
    return doc


def run_cli(tmp_path: Path, doc: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``python -m nas_trainer`` on ``doc``; returns the process and its terminal report."""
    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps(doc))
    env = {**os.environ, "KUBENAS_TERMINATION_FILE": str(tmp_path / "term")}
    env.pop("KUBENAS_REPORT_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nas_trainer", "--trial", str(trial)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    return proc, json.loads((tmp_path / "term").read_text())


def check_final(proc: subprocess.CompletedProcess[str], final: dict[str, Any], doc: dict[str, Any],
                metric: str) -> None:
    """Exit 0, one epoch report per epoch, and a derived architecture that decodes in the space."""
    assert proc.returncode == 0, proc.stderr
    epochs = [json.loads(line) for line in proc.stdout.splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    for report in epochs:
        assert EPOCH_KEYS | {metric, f"best_sampled_{metric}"} <= set(report["metrics"])
    assert [r["metrics"]["controller_updates"] for r in epochs] == [2.0, 4.0]
    assert final["kind"] == "final" and len(final["epochs"]) == 2
    arch = final["architecture"]
    space = make_space(doc["spaceType"], doc["spaceOptions"])
    assert arch["space"] == doc["spaceType"]
    assert space.decode(arch["tokens"]) == arch["genotype"]
    assert final["metrics"]["epochs"] == 2.0
    assert final["metrics"]["derive_samples"] == 4.0
    assert f"derive_batch_{metric}" in final["metrics"]


@pytest.mark.parametrize(
    ("space", "options"),
    [("enas-micro", {"nodes": 2}), ("enas-macro", {"layers": 4}),
     ("zoph-le-cnn", {"layers": 2, "filterChoices": [4]})],
)
def test_image_search_runs_through_the_cli_and_reports_a_derived_architecture(
    tmp_path: Path, space: str, options: dict[str, Any]
) -> None:
    doc = image_doc(space, options)
    proc, final = run_cli(tmp_path, doc)
    check_final(proc, final, doc, "val_accuracy")
    assert 0.0 <= final["metrics"]["val_accuracy"] <= 1.0
    assert final["metrics"]["val_loss"] > 0.0


def test_rnn_search_runs_through_the_cli_on_pydoc_text(tmp_path: Path) -> None:
    doc = language_doc()
    proc, final = run_cli(tmp_path, doc)
    check_final(proc, final, doc, "val_perplexity")
    assert final["metrics"]["val_perplexity"] > 1.0
    assert final["metrics"]["val_loss"] > 0.0
    assert len(final["architecture"]["tokens"]) == 7


# --- interruption -------------------------------------------------------------------------------
def without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in history]


def search(doc: dict[str, Any], stop: Any) -> tuple[TrainResult, EnasSearch]:
    run = EnasSearch(make_ctx(doc, stop))
    return run.run(), run


# Polls per epoch: 4 omega steps + 2 controller steps + the epoch's end = 7.
@pytest.mark.parametrize(("stop_at", "phase"), [(9, "omega"), (12, "controller")])
def test_stop_mid_epoch_then_resume_equals_an_uninterrupted_search(
    tmp_path: Path, stop_at: int, phase: str
) -> None:
    doc = image_doc("enas-macro", {"layers": 2}, training={
        "epochs": 3, "batchSize": 16, "learningRate": 0.05, "threads": 1, "model": {"filters": 4},
    })
    doc["dataset"]["maxTrainExamples"] = 64
    reference, ref_run = search(doc, StopAtPoll(None))

    doc["checkpointDir"] = str(tmp_path)
    with pytest.raises(Interrupted) as stopped:
        search(doc, StopAtPoll(stop_at))
    progress = stopped.value.progress
    assert progress.epoch == 1
    if phase == "omega":
        assert 0 < progress.step < 4 and progress.partial["controller_steps"] == 0
    else:
        assert progress.step == 4 and progress.partial["controller_steps"] == 1
    assert (tmp_path / CHECKPOINT_FILE).exists()

    resumed, run = search(doc, StopAtPoll(None))
    assert without_timing(resumed.history) == without_timing(reference.history)
    assert resumed.architecture == reference.architecture
    assert run.strategy.baseline == ref_run.strategy.baseline
    assert run.strategy.updates == ref_run.strategy.updates == 6


def test_sigterm_on_a_real_enas_process_checkpoints_and_a_rerun_finishes(tmp_path: Path) -> None:
    doc = image_doc("enas-macro", {"layers": 2}, checkpointDir=str(tmp_path / "ckpt"))
    doc["training"]["epochs"] = 4
    doc["dataset"]["maxTrainExamples"] = 256
    doc["training"]["batchSize"] = 16  # epoch 1 (16 omega steps) is under way at the SIGTERM
    run = preempt_and_rerun(doc, tmp_path)
    assert 1 <= len(run.interrupted["epochs"]) < 4
    assert run.final["metrics"]["epochs"] == 4.0 and len(run.final["epochs"]) == 4
    assert [e["controller_updates"] for e in run.final["epochs"]] == [2.0, 4.0, 6.0, 8.0]
    assert make_space("enas-macro", {"layers": 2}).decode(run.final["architecture"]["tokens"])


# --- input errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spaceType": None}, "spaceType: required for mode 'enas'"),
        ({"spaceType": "nasnet", "spaceOptions": {}}, "'nasnet' has no weight-sharing supernet"),
        ({"spaceOptions": {"nodes": 0}}, "spaceOptions:"),
        ({"enas": {"controllerBatch": 3, "controller": {"batchSize": 5}}},
         "enas.controller.batchSize = 5 contradicts enas.controllerBatch = 3"),
        ({"enas": {"controller": {"learningRate": -1}}}, "enas.controller:"),
        ({"dataset": {"name": "pydoc-text"}}, "is language data but the search space needs image"),
    ],
)
def test_bad_enas_settings_are_named(change: dict[str, Any], message: str) -> None:
    doc = image_doc("enas-micro", {"nodes": 2}, **change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        EnasSearch(make_ctx(doc, StopRequest()))
    assert isinstance(err.value, ConfigError) or "language data" in message
