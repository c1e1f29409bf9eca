"""The network as a ``torch.export`` program: one graph of ATen operators with its weights.

Image models are exported whole with a dynamic batch dimension. A recurrent
model's forward unrolls its time loop, so a program is fixed in its sequence
length; we export one *time step* (``tokens[B, 1]`` and the state in, logits and
the new state out, batch dynamic) and run sequences by stepping it, which is what
the recurrence does anyway (docs/design.md). Both are traced in eval mode: no
dropout, no drop-path, BatchNorm on its running statistics, no auxiliary head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MAX_BATCH = 1 << 16
EXAMPLE_BATCH = 2
"""Batch of the example inputs; any batch in 1..MAX_BATCH runs (dynamic dimension)."""


def example_inputs(model: nn.Module, meta: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """Inputs of the exported signature: images, or one step's tokens plus the zero state."""
    inp = meta["input"]
    gen = torch.Generator().manual_seed(0)
    if inp["kind"] == "image":
        return (torch.randn(EXAMPLE_BATCH, *inp["shape"], generator=gen),)
    tokens = torch.randint(0, int(inp["vocabSize"]), (EXAMPLE_BATCH, 1), generator=gen)
    return (tokens, tuple(model.init_hidden(EXAMPLE_BATCH)))


def export_program(model: nn.Module, meta: dict[str, Any]) -> torch.export.ExportedProgram:
    """Trace ``model`` (eval mode) for ``meta``'s input with a dynamic batch dimension."""
    model = model.eval()
    inputs = example_inputs(model, meta)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    if meta["input"]["kind"] == "image":
        dynamic: tuple[Any, ...] = ({0: batch},)
    else:
        dynamic = ({0: batch}, tuple({1: batch} for _ in inputs[1]))
    with torch.no_grad():
        return torch.export.export(model, inputs, dynamic_shapes=dynamic)
