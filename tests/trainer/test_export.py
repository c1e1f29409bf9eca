"""The found model out: a saved model exports to a torch.export program and a plain-torch module
file whose outputs equal the trainer's network, in every space (random weights and BatchNorm
statistics, so nothing passes by staying at its initial value). That the files run in an
interpreter without kubenas is checked end to end, after `kubenas export`, in test_transfer.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from controller_policy.contract import TrialDocument
from controller_policy.spaces import make_space
from nas_trainer.child import build_child
from nas_trainer.export.__main__ import main as export_main
from nas_trainer.export.bundle import onnx_available, write_bundle
from nas_trainer.model_output import load_model, save_model

CELL = {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1}
SPACES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "nasnet": ({"blocks": 2}, {**CELL, "auxiliaryHead": True}, "digits"),
    "enas-micro": ({"nodes": 2}, CELL, "digits"),
    "enas-macro": ({"layers": 4}, {"filters": 4}, "digits"),
    "zoph-le-cnn": ({"layers": 4, "filterChoices": [4, 8]}, {}, "digits"),
    "enas-rnn": ({"nodes": 4}, {"embeddingSize": 8, "hiddenSize": 8}, "synthetic"),
    "zoph-le-rnn": ({}, {"embeddingSize": 8, "hiddenSize": 8, "tieWeights": False}, "synthetic"),
}


def trial_document(space_type: str, seed: int = 3) -> TrialDocument:
    options, model, dataset = SPACES[space_type]
    space = make_space(space_type, options)
    return TrialDocument.model_validate({
        "search": "exp", "trial": f"exp-f{seed}", "seed": seed,
        "architecture": space.architecture(space.sample(seed)).model_dump(),
        "spaceOptions": options, "dataset": {"name": dataset, "maxTrainExamples": 200},
        "training": {"model": model},
    })


def saved_model(space_type: str, folder: Path) -> Path:
    """A child whose every weight and BatchNorm statistic is random (nothing left at init)."""
    doc = trial_document(space_type)
    model, data = build_child(doc)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=gen) + 0.5
                tensor.copy_(noise if name.endswith("running_var") else noise - 1.0)
    save_model(folder, doc, model, data, {"val_accuracy": 0.5}, [{"val_accuracy": 0.5}])
    return folder


def sample_input(meta: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(11)
    inp = meta["input"]
    if inp["kind"] == "image":
        return (torch.randn(5, *inp["shape"], generator=gen),)
    tokens = torch.randint(0, inp["vocabSize"], (3, 6), generator=gen)
    return tokens, tuple(torch.randn(s.shape, generator=gen) for s in _zero_state(meta, 3))


def _zero_state(meta: dict[str, Any], batch: int) -> tuple[torch.Tensor, ...]:
    model, _ = load_model_meta(meta)
    return model.init_hidden(batch)


def load_model_meta(meta: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    from nas_trainer.model_output import build_from_meta

    return build_from_meta(meta).eval(), meta


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("space_type", sorted(SPACES))
def test_generated_module_and_program_match_the_trained_network(space_type: str,
                                                                 tmp_path: Path) -> None:
    folder = saved_model(space_type, tmp_path / "model")
    model, meta = load_model(folder)
    files = write_bundle(model, meta, tmp_path / "export", onnx=False)
    assert {f.name for f in files} >= {"model.pt2", "model.py", "weights.pt", "model.json"}
    source = (tmp_path / "export" / "model.py").read_text()
    assert "kubenas" not in "".join(line for line in source.splitlines() if "import" in line)
    net = import_file(tmp_path / "export" / "model.py").load()
    inputs = sample_input(meta)
    with torch.no_grad():
        expected, got = model(*inputs), net(*inputs)
        if meta["input"]["kind"] == "image":
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            program = torch.export.load(tmp_path / "export" / "model.pt2").module()
            torch.testing.assert_close(program(*inputs), expected, rtol=1e-5, atol=1e-5)
        else:
            torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
            for a, b in zip(got[1], expected[1], strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_untrained_export_from_a_trial_document_keeps_the_trainers_initial_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = trial_document("enas-micro", seed=5)
    (tmp_path / "trial.json").write_text(doc.model_dump_json())
    assert export_main(["--trial", str(tmp_path / "trial.json"), "--untrained", "--no-onnx",
                        "--out", str(tmp_path / "x")]) == 0
    assert f"wrote {tmp_path / 'x' / 'model.pt2'}" in capsys.readouterr().out
    fresh, _ = build_child(doc)  # seeded by the trial: the same initial weights
    saved = torch.load(tmp_path / "x" / "weights.pt", weights_only=True)
    assert saved.keys() == fresh.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    meta = json.loads((tmp_path / "x" / "model.json").read_text())
    assert meta["input"]["shape"] == [1, 8, 8] and meta["architecture"]["tokens"] == doc.architecture.tokens


def test_export_refusals_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = trial_document("enas-micro")
    (tmp_path / "trial.json").write_text(doc.model_dump_json())
    cases = {
        ("--model", str(tmp_path / "none")): "holds no saved model",
        ("--trial", str(tmp_path / "trial.json")): "has no trained weights; add --untrained",
    }
    for args, message in cases.items():
        assert export_main([*args, "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.skipif(not onnx_available(), reason="onnx/onnxscript not installed (optional: "
                    "pip install 'kubenas[export]')")
def test_onnx_export_where_onnx_is_installed(tmp_path: Path) -> None:
    """Checked and run by onnx's own reference evaluator (no onnxruntime needed)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    model, meta = load_model(saved_model("enas-micro", tmp_path / "model"))
    files = write_bundle(model, meta, tmp_path / "export")  # onnx: where installed
    assert tmp_path / "export" / "model.onnx" in files
    graph = onnx.load(str(tmp_path / "export" / "model.onnx"))
    onnx.checker.check_model(graph)
    (images,) = sample_input(meta)
    [logits] = ReferenceEvaluator(graph).run(None, {"images": images.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(images), rtol=1e-4, atol=1e-4)


def test_training_with_an_output_dir_saves_the_trained_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's own run: the saved weights are the ones that scored the reported accuracy."""
    from nas_trainer.cli import main as trainer_main
    from nas_trainer.runtime import setup_runtime
    from nas_trainer.train_image import evaluate_images

    doc = trial_document("enas-micro").model_copy(update={"outputDir": str(tmp_path / "model")})
    doc.training.epochs, doc.training.batchSize, doc.training.threads = 1, 50, 1
    (tmp_path / "trial.json").write_text(doc.model_dump_json())
    monkeypatch.setenv("KUBENAS_TERMINATION_FILE", str(tmp_path / "termination.json"))
    monkeypatch.delenv("KUBENAS_REPORT_URL", raising=False)
    assert trainer_main(["--trial", str(tmp_path / "trial.json")]) == 0
    report = json.loads((tmp_path / "termination.json").read_text())
    saved = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert saved["final"] == report["metrics"] and len(saved["epochs"]) == 1
    model, meta = load_model(tmp_path / "model")
    assert meta["trial"] == doc.trial and meta["input"]["numClasses"] == 10
    _, data = build_child(doc)
    _, accuracy = evaluate_images(model, data, data.val, setup_runtime(doc.training))
    assert accuracy == pytest.approx(report["metrics"]["val_accuracy"])
