"""What a child network costs: parameters, multiply-adds of one forward pass, and latency.

Counting builds the child on PyTorch's ``meta`` device: its tensors have shapes and
no storage, so a network of any size is built and run through in milliseconds
without memory, and ``torch.utils.flop_counter.FlopCounterMode`` adds up the
matrix products and convolutions of that forward pass. The counter reports FLOPs
as 2 per multiply-add; we report **multiply-adds** (``flops`` = FLOPs / 2, the
papers' "mult-adds"), of the network in evaluation mode (no auxiliary head) at
the trial's input size: one image of the dataset's shape, or one token for a
language model (multiply-adds per token). Elementwise work (activations,
additions, normalisation) is not counted, as in the papers; normalisation and
activation layers are passed through while counting (on ``meta`` they would cost
most of the time and add no multiply-adds).

Latency is measured on the trial's own device with the trained weights: the
median of ``LATENCY_ITERATIONS`` timed forward passes at ``LATENCY_BATCH``,
after ``LATENCY_WARMUP`` untimed ones, so a search on GPU nodes sees GPU latency
and one on CPU nodes CPU latency; the device is named beside the figure.

The same counting serves the search loop before launch (``nas_trainer.measure``
run as a process, ``serve``), so a limit is checked with the numbers the trial
would report.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from controller_policy.contract import DatasetSpec, ModelSpec
from controller_policy.spaces import Architecture, make_space
from nas_trainer.models import build_model
from nas_trainer.registry import model_builder

LATENCY_BATCH = 1
"""Examples per timed forward pass (one request at a time, as a deployed model answers)."""
LATENCY_WARMUP = 3
LATENCY_ITERATIONS = 10

KNOWN_INPUTS: dict[str, dict[str, Any]] = {
    "cifar10": {"input_shape": (3, 32, 32), "num_classes": 10},
    "ptb": {"vocab_size": 10_000},
}
"""Inputs of the built-in data sets whose files the counting process may not have (an operator
pod mounts no data): CIFAR-10's images and Mikolov's 10k-word PTB vocabulary."""


class CountError(ValueError):
    """The architecture or its input cannot be counted; the message names the field."""


@dataclass(frozen=True)
class Figures:
    """A network's size: trainable parameters (the papers' count, auxiliary head left out)
    and multiply-adds of one forward pass at the trial's input size."""

    params: int
    macs: int

    def as_metrics(self) -> dict[str, float]:
        return {"params": float(self.params), "flops": float(self.macs)}


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters, without an auxiliary head when the model can say (as the papers)."""
    counter = getattr(model, "parameter_count", None)
    if callable(counter):
        return int(counter())
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def example_input(kind: str, inputs: dict[str, Any], batch: int = 1,
                  device: torch.device | str = "meta") -> torch.Tensor:
    """One batch of the trial's input: images ``[B, C, H, W]``, or one token per sequence
    ``[B, 1]`` (a language model does the same work for every token)."""
    if kind == "image":
        return torch.zeros((batch, *inputs["input_shape"]), device=device)
    return torch.zeros((batch, 1), dtype=torch.long, device=device)


SHAPE_KEEPING: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU,
    nn.ELU, nn.LeakyReLU, nn.Dropout,
)
"""Layers that keep their input's shape and do no multiply-adds: passed through while counting."""


@contextlib.contextmanager
def _shape_keeping_passed_through(model: nn.Module) -> Iterator[None]:
    """Normalisation and activation layers as identity for a while: shapes stay, no
    multiply-adds are lost, and on ``meta`` their Python decompositions no longer dominate
    the time a count takes."""
    norms = [m for m in model.modules() if isinstance(m, SHAPE_KEEPING)]
    for m in norms:
        m.forward = _identity  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in norms:
            del m.forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def multiply_adds(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of ``model(x)`` in evaluation mode (FlopCounterMode's FLOPs / 2)."""
    was_training = model.training
    model.eval()
    try:
        with (torch.no_grad(), _shape_keeping_passed_through(model),
              FlopCounterMode(display=False) as counter):
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def count_model(model: nn.Module, x: torch.Tensor) -> Figures:
    return Figures(parameter_count(model), multiply_adds(model, x))


def latency_ms(model: nn.Module, x: torch.Tensor, warmup: int = LATENCY_WARMUP,
               iterations: int = LATENCY_ITERATIONS) -> float:
    """Median milliseconds of one forward pass of ``x`` (evaluation mode, no gradients) on
    the device ``model`` and ``x`` are on, after ``warmup`` untimed passes."""
    cuda = x.device.type == "cuda"
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + iterations):
                if cuda:
                    torch.cuda.synchronize(x.device)
                started = time.perf_counter()
                model(x)
                if cuda:
                    torch.cuda.synchronize(x.device)
                if i >= warmup:
                    times.append((time.perf_counter() - started) * 1000.0)
    finally:
        model.train(was_training)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: what a latency figure was measured on."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def trained_figures(model: nn.Module, kind: str, inputs: dict[str, Any], device: torch.device) -> tuple[dict[str, float], str]:
    """The final metrics of what a trained child costs (params, flops, latency_ms,
    latency_batch) and the name of the device its latency was measured on."""
    figures = count_model(model, example_input(kind, inputs, 1, device))
    metrics = figures.as_metrics()
    x = example_input(kind, inputs, LATENCY_BATCH, device)
    metrics["latency_ms"] = latency_ms(model, x)
    metrics["latency_batch"] = float(LATENCY_BATCH)
    return metrics, device_name(device)


class Counter:
    """Counts architectures of one search (space, options, data, model size) on ``meta``,
    remembering every genotype it counted (a search proposes many twice)."""

    def __init__(self, space_type: str, space_options: dict[str, Any], dataset: DatasetSpec,
                 model: ModelSpec) -> None:
        if model_builder(space_type) is None:
            raise CountError(
                f"spec.objective.constraints: space {space_type!r} has no model builder to "
                "count its architectures with; remove the constraints or register a builder"
            )
        self.space = make_space(space_type, space_options)
        self.space_options = dict(space_options)
        self.model = model
        self.inputs = input_signature(dataset, self.space.kind)
        self._cache: dict[tuple[int, ...], Figures] = {}

    def count(self, tokens: list[int]) -> Figures:
        key = tuple(tokens)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._count(tokens)
        return found

    def _count(self, tokens: list[int]) -> Figures:
        try:
            arch = Architecture(space=self.space.type_name, tokens=list(tokens),
                                genotype=self.space.to_genotype(list(tokens)))
            with torch.device("meta"):
                model = build_model(arch, self.model, space_options=self.space_options,
                                    **self.inputs)
            return count_model(model, example_input(self.space.kind, self.inputs))
        except (ValueError, RuntimeError, TypeError, NotImplementedError) as exc:
            raise CountError(f"architecture {list(tokens)}: cannot be counted: {exc}") from exc


def input_signature(dataset: DatasetSpec, kind: str) -> dict[str, Any]:
    """What the model builder needs to know of the data (``input_shape`` and ``num_classes``,
    or ``vocab_size``), read from the data set when it is at hand."""
    from nas_trainer.datasets import DatasetError, load_dataset

    try:
        data = load_dataset(dataset, 0, kind="image" if kind == "image" else "language")
    except DatasetError as exc:
        if dataset.name in KNOWN_INPUTS and not (dataset.imageSize or dataset.channels):
            return dict(KNOWN_INPUTS[dataset.name])
        raise CountError(
            f"spec.objective.constraints: the input size of dataset {dataset.name!r} is needed "
            f"to count architectures and the data cannot be read here ({exc}); check "
            "spec.trial.dataset or remove the constraints"
        ) from exc
    if data.kind == "image":
        return {"input_shape": tuple(data.input_shape), "num_classes": data.num_classes}
    return {"vocab_size": data.vocab_size}
