"""Transfer (NASNet's N@F, docs/papers.md §3) end to end with `kubenas run` and `kubenas export`:
search on a small proxy (few images at low resolution, a small model), retrain the best cell on
more data at full size and wider, and get a model out that runs without kubenas. A CNN space on
Fashion-MNIST (the real Debian package where installed, generated IDX files otherwise) and an RNN
space on the bundled text, each shrunk to seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from nas_operator import cli
from nas_operator.export import ExportError, choose_source
from nas_operator.local.output import RunFolder
from nas_trainer.model_output import load_model
from tests.support import REPO
from tests.support.export_check import check_without_kubenas

FASHION = Path("/usr/share/datasets/fashion-mnist")
TRAINING = {"epochs": 1, "batchSize": 32, "learningRate": 0.05, "augment": False,
            "device": "cpu", "threads": 1}


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fashion_folder(tmp: Path) -> Path:
    """The installed Fashion-MNIST, else 28x28 IDX files with a learnable class signal."""
    if FASHION.is_dir():
        return FASHION
    rng = np.random.default_rng(0)
    folder = tmp / "fashion"
    folder.mkdir()
    for split, n in (("train", 600), ("t10k", 100)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):  # a bright bar whose row is the class
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def shrunk_example(fashion: str) -> dict[str, Any]:
    """examples/local-transfer-fashion.yaml in seconds: same shape (proxy size and data, then
    the full size, deeper and wider), a fraction of the data, epochs and filters."""
    doc = yaml.safe_load((REPO / "examples" / "local-transfer-fashion.yaml").read_text())
    spec = doc["spec"]
    spec["budget"].update(maxTrials=1, parallelism=1)
    spec["trial"]["dataset"].update(path=fashion, maxTrainExamples=96, validationSize=64)
    spec["trial"]["training"].update(epochs=1, batchSize=32)
    spec["trial"]["training"]["model"].update(filters=4)
    spec["trial"]["retries"] = 0
    final = spec["finalTraining"]
    final["dataset"].update(path=fashion, maxTrainExamples=160, validationSize=64)
    # scoring the 10,000 real test images would take most of the test's time
    final["training"].update(epochs=1, threads=1, reportTestAccuracy=not FASHION.is_dir())
    final["training"]["model"].update(filters=8, stemMultiplier=1)
    return doc


def search_doc(name: str, space: dict[str, Any], dataset: dict[str, Any], model: dict[str, Any],
               final_dataset: dict[str, Any], final_model: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch", "metadata": {"name": name},
        "spec": {
            "searchSpace": space,
            "strategy": {"type": "random", "seed": 2},
            "budget": {"maxTrials": 1, "parallelism": 1},
            "trial": {"dataset": dataset, "training": {**TRAINING, "model": model}, "retries": 0},
            "finalTraining": {"topK": 1, "dataset": final_dataset,
                              "training": {"model": final_model}},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished local searches with final training (run folders by space kind)."""
    tmp = tmp_path_factory.mktemp("transfer")
    fashion = str(fashion_folder(tmp))
    docs = {
        "cnn": shrunk_example(fashion),
        "rnn": search_doc(
            "transfer-rnn", {"type": "enas-rnn", "options": {"nodes": 3}},
            {"name": "pydoc-text", "maxTrainExamples": 3000, "validationSize": 400},
            {"embeddingSize": 8, "hiddenSize": 8},
            {"name": "pydoc-text", "maxTrainExamples": 6000, "validationSize": 400},
            {"embeddingSize": 16, "hiddenSize": 16}),
    }
    out = {}
    for kind, doc in docs.items():
        doc["spec"]["trial"]["training"]["batchSize"] = 32 if kind == "cnn" else 8
        path = tmp / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        out[kind] = tmp / f"run-{kind}"
        assert cli.main(["run", str(path), "--out", str(out[kind]), "--quiet"]) == 0
    return out


def final_model(run: Path) -> Path:
    (folder,) = sorted(run.glob("trials/*-f0000/model"))
    return folder


def test_final_training_saves_a_wider_model_at_the_full_size(runs: dict[str, Path]) -> None:
    cnn = json.loads((final_model(runs["cnn"]) / "model.json").read_text())
    assert cnn["input"]["shape"] == [1, 28, 28] and cnn["input"]["numClasses"] == 10
    assert cnn["model"]["filters"] == 8 and cnn["model"]["cellsPerStage"] == 2
    cnn_metrics = json.loads((final_model(runs["cnn"]) / "metrics.json").read_text())["final"]
    if not FASHION.is_dir():  # the generated t10k files, scored at the end
        assert 0.0 <= cnn_metrics["test_accuracy"] <= 1.0
    search_doc_0 = json.loads(next(runs["cnn"].glob("trials/*-t0000/a0/trial.json")).read_text())
    assert search_doc_0["dataset"]["imageSize"] == 14 and search_doc_0["outputDir"] is None
    best = json.loads((runs["cnn"] / "best.json").read_text())
    assert cnn["architecture"]["tokens"] == best["architecture"]["tokens"]  # the found cell
    rnn = json.loads((final_model(runs["rnn"]) / "model.json").read_text())
    assert rnn["model"]["hiddenSize"] == 16 and rnn["input"]["kind"] == "language"
    for run in runs.values():
        metrics = json.loads((final_model(run) / "metrics.json").read_text())
        assert metrics["final"]["epochs"] == 1.0
        assert (final_model(run) / "weights.pt").stat().st_size > 0


def test_kubenas_export_runs_without_kubenas_and_matches(runs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    pairs = []
    for kind, run in runs.items():
        assert cli.main(["export", str(run), "--no-onnx"]) == 0  # ONNX: tests/trainer/test_export.py
        (out,) = sorted((run / "export").iterdir())
        assert {"model.pt2", "model.py", "weights.pt", "model.json"} <= {p.name for p in out.iterdir()}
        model, meta = load_model(final_model(run))
        gen = torch.Generator().manual_seed(0)
        if kind == "cnn":
            inputs: tuple[Any, ...] = (torch.randn(4, 1, 28, 28, generator=gen),)
            expected = model(*inputs)
        else:
            tokens = torch.randint(0, meta["input"]["vocabSize"], (2, 9), generator=gen)
            inputs = (tokens, model.init_hidden(2))
            expected = model(*inputs)[0]
        torch.save({"inputs": inputs, "expected": expected.detach()}, tmp_path / f"{kind}.pt")
        pairs += [str(out), str(tmp_path / f"{kind}.pt")]
    for error in check_without_kubenas(tmp_path, pairs):
        assert error["module"] < 1e-4 and error["program"] < 1e-4, error


def test_what_there_is_to_export(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The best final trial's saved model by default; a search trial only as an architecture
    (its trial document, built by ``python -m nas_trainer.export --trial``, tested there)."""
    run = RunFolder(runs["cnn"])
    source = choose_source(run, None, untrained=False)
    assert source.trial.endswith("-f0000") and source.args[0] == "--model"
    search_trial = run.read_best()["trial"]
    untrained = choose_source(run, search_trial, untrained=True)
    assert untrained.args[0] == "--trial" and untrained.args[-1] == "--untrained"
    with pytest.raises(ExportError, match="has no saved model.*add --untrained"):
        choose_source(run, search_trial, untrained=False)
    document = json.loads(Path(untrained.args[1]).read_text())  # what the exporter builds from
    assert document["trial"] == search_trial and document["dataset"]["imageSize"] == 14
    assert cli.main(["export", str(runs["cnn"] / "no-such-run")]) == 2
    assert "not a kubenas run folder" in capsys.readouterr().out
