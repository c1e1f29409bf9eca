"""`python -m nas_trainer` input handling: bad documents and data exit 2 with a clear message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from controller_policy.spaces import make_space
from nas_trainer.cli import main


@pytest.fixture()
def term(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("KUBENAS_TERMINATION_FILE", str(path))
    for name in ("KUBENAS_TRIAL_FILE", "KUBENAS_TRIAL_JSON", "KUBENAS_REPORT_URL"):
        monkeypatch.delenv(name, raising=False)
    return path


def valid_doc(**over: Any) -> dict[str, Any]:
    space = make_space("enas-micro", {"nodes": 1})
    doc: dict[str, Any] = {
        "search": "s", "trial": "t7", "attempt": 1,
        "architecture": space.architecture(space.sample(0)).model_dump(),
        "spaceOptions": {"nodes": 1},
        "dataset": {"name": "digits", "maxTrainExamples": 64, "validationSize": 32},
        "training": {"epochs": 1, "batchSize": 32, "threads": 1,
                     "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1}},
    }
    doc.update(over)
    return doc


def run(tmp_path: Path, doc: dict[str, Any] | str) -> int:
    path = tmp_path / "trial.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return main(["--trial", str(path)])


def failed_reason(term: Path) -> str:
    report = json.loads(term.read_text())
    assert report["kind"] == "failed"
    return str(report["reason"])


def test_no_trial_document_says_how_to_give_one(term: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "pass --trial FILE or set $KUBENAS_TRIAL_FILE or $KUBENAS_TRIAL_JSON" in capsys.readouterr().err


def test_missing_file_is_named(term: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trial", str(tmp_path / "nope.json")]) == 2
    assert f"cannot read trial document file {tmp_path / 'nope.json'}" in capsys.readouterr().err


def test_not_json_points_at_line_and_column(term: Path, tmp_path: Path) -> None:
    assert run(tmp_path, '{"search": "s",\n  "trial": }') == 2
    assert "is not JSON: Expecting value at line 2 column 12" in failed_reason(term)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"training": {"epochs": 0}}, "training.epochs: Input should be greater than or equal to 1"),
        ({"training": {"epoch": 3}}, "training.epoch: Extra inputs are not permitted"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name: Input should be 'cifar10'"),
        ({"trial": None}, "trial: Input should be a valid string"),
        ({"architecture": None}, "architecture: required for mode 'train'"),
    ],
)
def test_invalid_fields_are_named(term: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  change: dict[str, Any], field: str) -> None:
    assert run(tmp_path, valid_doc(**change)) == 2
    assert field in capsys.readouterr().err
    assert field in failed_reason(term)


def test_failed_report_keeps_the_trial_identity_when_it_can(term: Path, tmp_path: Path) -> None:
    run(tmp_path, valid_doc(training={"epochs": -1}))
    report = json.loads(term.read_text())
    assert (report["trial"], report["attempt"]) == ("t7", 1)


def test_inline_document_from_the_environment(term: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBENAS_TRIAL_JSON", json.dumps(valid_doc(seed="x")))
    assert main([]) == 2
    assert "invalid trial document ($KUBENAS_TRIAL_JSON)" in capsys.readouterr().err


def test_tokens_outside_the_space_are_named(term: Path, tmp_path: Path) -> None:
    doc = valid_doc()
    doc["architecture"]["tokens"] = doc["architecture"]["tokens"][:-1]
    doc["architecture"]["genotype"] = {}
    assert run(tmp_path, doc) == 2
    assert "architecture: enas-micro: expected" in failed_reason(term)


def test_missing_dataset_files_name_the_path(term: Path, tmp_path: Path) -> None:
    assert run(tmp_path, valid_doc(dataset={"name": "cifar10", "path": str(tmp_path / "c")})) == 2
    assert f"dataset.path {tmp_path / 'c'}: no CIFAR-10 found" in failed_reason(term)
    assert run(tmp_path, valid_doc(dataset={"name": "cifar10"})) == 2
    assert "dataset.path is required for cifar10" in failed_reason(term)


def test_text_data_for_an_image_space_is_refused(term: Path, tmp_path: Path) -> None:
    assert run(tmp_path, valid_doc(dataset={"name": "pydoc-text"})) == 2
    assert "dataset.name 'pydoc-text' is language data" in failed_reason(term)


def test_cuda_requested_without_a_gpu_names_the_field(term: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    doc = valid_doc()
    doc["training"]["device"] = "cuda"
    assert run(tmp_path, doc) == 2
    assert "training.device 'cuda' asks for CUDA but none is available" in failed_reason(term)


def test_diverging_training_fails_with_exit_1_and_a_reason(term: Path, tmp_path: Path) -> None:
    doc = valid_doc()
    doc["training"].update(learningRate=1e12, augment=False)
    assert run(tmp_path, doc) == 1
    reason = failed_reason(term)
    assert "diverged" in reason and "training.learningRate" in reason


def test_the_module_entry_point_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nas_trainer", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--trial FILE" in proc.stdout
