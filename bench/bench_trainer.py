"""Trainer throughput: our image training loop vs a plain hand-written PyTorch loop.

Same model, same data, same seed, same batches (the plain loop draws the same
per-epoch order), same optimizer and per-step cosine schedule; only the loop
differs. Throughput counts training steps only (data indexing, normalization,
forward, backward, optimizer and schedule), not the per-epoch evaluation.
Runs alternate ours/plain and the median of the repeats is reported, because
this machine is shared. The final weights of the two loops are compared too:
equal weights show both loops did exactly the same work.

    python -m bench.bench_trainer [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.table import format_table
from controller_policy.spaces import make_space
from nas_trainer.checkpoint import StopRequest
from nas_trainer.child import DATA_SPLIT_SEED, build_child
from nas_trainer.contract import TrialDocument
from nas_trainer.datasets import ImageData, load_dataset
from nas_trainer.loop import TrialContext
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import seed_everything, setup_runtime
from nas_trainer.train_image import steps_per_epoch, train_image


class PlainCNN(nn.Module):
    """A hand-written baseline network: three conv-BN-ReLU layers and a linear classifier."""

    def __init__(self, channels: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * channels), nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def trial(epochs: int, batch: int, architecture: dict[str, Any] | None,
          options: dict[str, Any]) -> TrialDocument:
    return TrialDocument.model_validate({
        "search": "bench", "trial": "bench", "seed": 0,
        "architecture": architecture, "spaceOptions": options,
        "dataset": {"name": "digits"},
        "training": {"epochs": epochs, "batchSize": batch, "learningRate": 0.05,
                     "augment": False, "threads": 1,
                     "model": {"filters": 16, "cellsPerStage": 1, "stemMultiplier": 2}},
    })


def build(doc: TrialDocument) -> tuple[nn.Module, ImageData]:
    """The model (seeded identically for both loops) and the digits data."""
    if doc.architecture is not None:
        model, data = build_child(doc)
    else:
        data = load_dataset(doc.dataset, DATA_SPLIT_SEED, kind="image")
        seed_everything(doc.seed)
        model = PlainCNN()
    assert isinstance(data, ImageData)
    return model, data


def run_ours(doc: TrialDocument, model: nn.Module, data: ImageData) -> float:
    """Samples/s of ``train_image`` (training time only, from its per-epoch metrics)."""
    ctx = TrialContext(doc, setup_runtime(doc.training), Reporter(None, None, None, echo_stdout=False),
                       StopRequest())
    result = train_image(ctx, model, data)
    seen = steps_per_epoch(len(data.train), doc.training.batchSize) * doc.training.batchSize
    seconds = sum(seen / h["samples_per_second"] for h in result.history)
    return seen * len(result.history) / seconds


def run_plain(doc: TrialDocument, model: nn.Module, data: ImageData) -> float:
    """Samples/s of the textbook loop on the same batches."""
    t = doc.training
    images, labels = data.train.images, data.train.labels
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    steps = len(labels) // t.batchSize
    total = steps * t.epochs
    opt = torch.optim.SGD(model.parameters(), lr=t.learningRate, momentum=t.momentum,
                          nesterov=True, weight_decay=t.weightDecay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    seconds = 0.0
    for epoch in range(t.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(doc.seed * 1_000_003 + epoch))
        started = time.perf_counter()
        for step in range(steps):
            idx = order[step * t.batchSize : (step + 1) * t.batchSize]
            x = (images[idx].float() * data.scale - mean) / std
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        seconds += time.perf_counter() - started
        model.eval()
        with torch.no_grad():  # per-epoch validation, untimed as in ours
            model((data.val.images.float() * data.scale - mean) / std)
    return steps * t.batchSize * t.epochs / seconds


def measure(key: str, doc: TrialDocument) -> tuple[float, list[torch.Tensor]]:
    model, data = build(doc)
    rate = (run_ours if key == "ours" else run_plain)(doc, model, data)
    return rate, [p.detach().clone() for p in model.parameters()]


def compare(name: str, doc: TrialDocument, repeats: int) -> list[object]:
    """Median samples/s of both loops; a warm-up run of each first, then alternating order."""
    warm = doc.model_copy(update={"training": doc.training.model_copy(update={"epochs": 1})})
    measure("ours", warm), measure("plain", warm)  # one-time kernel and allocator warm-up
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    same = True
    for r in range(repeats):
        weights = {}
        for key in ("ours", "plain") if r % 2 == 0 else ("plain", "ours"):
            rate, weights[key] = measure(key, doc)
            rates[key].append(rate)
        same = same and all(
            torch.allclose(a, b, atol=1e-5) for a, b in zip(weights["ours"], weights["plain"], strict=True)
        )
    steps = steps_per_epoch(1200, doc.training.batchSize) * doc.training.epochs
    o, p = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    return [name, steps, repeats, round(o), round(p), round(o / p, 3), "yes" if same else "NO"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and one repeat")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    epochs = 2 if args.quick else 8
    micro = make_space("enas-micro")
    cases = [
        ("plain CNN (3 conv)", trial(epochs, 32, None, {}), 1 if args.quick else 5),
        ("enas-micro child", trial(epochs, 32, micro.architecture(micro.sample(0)).model_dump(), {}),
         1 if args.quick else 3),
    ]
    rows = [compare(name, doc, repeats) for name, doc, repeats in cases]
    print("Trainer loop vs plain PyTorch loop: digits (1200 train images, 8x8, batch 32), "
          f"CPU, 1 torch thread, torch {torch.__version__}; median of the repeats\n")
    print(format_table(
        ["model", "steps", "repeats", "ours samples/s", "plain samples/s", "ratio", "same weights"],
        rows,
    ))


if __name__ == "__main__":
    main()
