"""Write the export folder of one network (see ``nas_trainer.export``)::

    model.pt2     torch.export program with the weights (torch.export.load(...).module())
    model.py      readable plain-torch module file; ``model.load()`` reads weights.pt
    weights.pt    the state_dict the trainer saved (or the fresh one with --untrained)
    model.json    architecture, model settings, input contract (from the saved model)
    vocab.txt     language models: the vocabulary, one token per line
    model.onnx    image models, where the onnx package is installed (``--no-onnx`` to skip)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_trainer.export.program import example_inputs, export_program
from nas_trainer.export.source import render_source
from nas_trainer.model_output import MODEL_FILE, VOCAB_FILE, WEIGHTS_FILE

PROGRAM_FILE = "model.pt2"
SOURCE_FILE = "model.py"
ONNX_FILE = "model.onnx"


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def write_bundle(model: nn.Module, meta: dict[str, Any], out: Path,
                 vocab: list[str] | None = None, onnx: bool | None = None) -> list[Path]:
    """Export ``model`` (eval mode) described by ``meta`` into ``out``; returns the files.

    ``onnx``: also write model.onnx (image models); None = where onnx is installed.
    """
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    program = export_program(model, meta)
    written = [out / PROGRAM_FILE, out / SOURCE_FILE, out / WEIGHTS_FILE, out / MODEL_FILE]
    torch.export.save(program, written[0])
    written[1].write_text(render_source(program, model, meta))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, written[2])
    written[3].write_text(json.dumps(meta, indent=2))
    if vocab is not None:
        (out / VOCAB_FILE).write_text("\n".join(vocab) + "\n")
        written.append(out / VOCAB_FILE)
    if onnx is None:
        onnx = onnx_available()
    if onnx and meta["input"]["kind"] == "image":
        written.append(write_onnx(model, meta, out / ONNX_FILE))
    return written


def write_onnx(model: nn.Module, meta: dict[str, Any], file: Path) -> Path:
    """ONNX through the torch.export-based exporter, batch dimension dynamic."""
    if not onnx_available():
        raise ValueError("ONNX export needs the onnx and onnxscript packages: "
                         "pip install 'kubenas[export]'")
    inputs = example_inputs(model, meta)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        torch.onnx.export(model, inputs, str(file), dynamo=True, input_names=["images"],
                          output_names=["logits"], dynamic_shapes=({0: batch},))
    return file


def copy_vocab(folder: Path) -> list[str] | None:
    file = folder / VOCAB_FILE
    return file.read_text().splitlines() if file.is_file() else None


def clear(out: Path) -> None:
    """Remove what an earlier export left (only our own file names)."""
    for name in (PROGRAM_FILE, SOURCE_FILE, WEIGHTS_FILE, MODEL_FILE, VOCAB_FILE, ONNX_FILE):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
