"""The found model on disk: what final training leaves in ``outputDir``, and how to rebuild it.

A search's answer is more than a genotype: a user needs the trained weights and
everything that turns them back into a network (the space, its options, the
model size, the input it expects). The folder holds::

    model.json     format, architecture (space, tokens, genotype), space options, model
                   settings, the input (image shape, classes, normalization; or vocabulary
                   size) and the trial's identity
    weights.pt     the state_dict (CPU tensors; torch.load(..., weights_only=True))
    metrics.json   the final metrics and every epoch's
    vocab.txt      language models: one token per line, line number = token id

``model.json`` is written last, so a folder with it is complete; each file is
written to a temporary name and renamed. ``kubenas export`` reads this folder
(``nas_trainer.export``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from controller_policy.contract import ModelSpec, TrialDocument
from nas_trainer.datasets import Dataset
from nas_trainer.models import build_model

FORMAT = "kubenas.model/v1"
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
METRICS_FILE = "metrics.json"
VOCAB_FILE = "vocab.txt"


class SavedModelError(ValueError):
    """A model folder that is missing, incomplete or of another format; names the file."""


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def input_description(data: Dataset, doc: TrialDocument) -> dict[str, Any]:
    """What the network reads: image shape, classes and normalization, or the vocabulary."""
    if data.kind == "image":
        described = {
            "kind": "image", "dataset": data.name, "shape": list(data.input_shape),
            "numClasses": data.num_classes, "scale": data.scale,
            "mean": list(data.mean), "std": list(data.std),
        }  # fmt: skip
        if data.classes is not None:
            described["classes"] = list(data.classes)
        return described
    return {"kind": "language", "dataset": data.name, "vocabSize": data.vocab_size,
            "bptt": doc.training.bptt}


def save_model(
    folder: Path, doc: TrialDocument, model: nn.Module, data: Dataset,
    metrics: dict[str, float], history: list[dict[str, float]],
) -> Path:
    """Write the trained ``model`` of ``doc`` into ``folder``; returns the model.json path."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    _atomic(folder / WEIGHTS_FILE, lambda p: torch.save(state, p))
    _atomic(folder / METRICS_FILE, lambda p: p.write_text(
        json.dumps({"final": metrics, "epochs": history}, indent=2)))
    if data.kind == "language":
        _atomic(folder / VOCAB_FILE, lambda p: p.write_text("\n".join(data.vocab) + "\n"))
    meta = describe(doc, data)
    _atomic(folder / MODEL_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))
    return folder / MODEL_FILE


def describe(doc: TrialDocument, data: Dataset) -> dict[str, Any]:
    """The model.json of ``doc``'s network trained on ``data``."""
    assert doc.architecture is not None
    return {
        "format": FORMAT,
        "search": doc.search, "trial": doc.trial, "namespace": doc.namespace, "seed": doc.seed,
        "architecture": doc.architecture.model_dump(mode="json"),
        "spaceOptions": doc.spaceOptions,
        "model": doc.training.model.model_dump(mode="json"),
        "input": input_description(data, doc),
        "weights": WEIGHTS_FILE, "metrics": METRICS_FILE,
    }  # fmt: skip


def read_meta(folder: Path) -> dict[str, Any]:
    file = folder / MODEL_FILE
    try:
        meta = json.loads(file.read_text())
    except FileNotFoundError:
        raise SavedModelError(f"{file} is missing: {folder} holds no saved model") from None
    except (OSError, ValueError) as exc:
        raise SavedModelError(f"{file} is unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SavedModelError(f"{file} is not a {FORMAT} model description")
    return meta


def build_from_meta(meta: dict[str, Any]) -> nn.Module:
    """The untrained network ``meta`` describes (same module tree as the trainer built)."""
    spec = ModelSpec.model_validate(meta["model"])
    inp = meta["input"]
    if inp["kind"] == "image":
        return build_model(meta["architecture"], spec, input_shape=tuple(inp["shape"]),
                           num_classes=int(inp["numClasses"]), space_options=meta["spaceOptions"])
    return build_model(meta["architecture"], spec, vocab_size=int(inp["vocabSize"]),
                       space_options=meta["spaceOptions"])


def load_model(folder: Path, trained: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """(network in eval mode, its model.json); with ``trained`` the saved weights are loaded."""
    meta = read_meta(folder)
    model = build_from_meta(meta)
    if trained:
        file = folder / meta.get("weights", WEIGHTS_FILE)
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise SavedModelError(f"{file} is unreadable ({exc})") from exc
        model.load_state_dict(state)
    return model.eval(), meta
