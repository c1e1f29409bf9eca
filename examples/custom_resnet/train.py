"""A user's own training script, searched by kubenas: a small ResNet-style family on digits.

Nothing here is kubenas's trainer: the model, the data pipeline and the training loop are
the script's own. kubenas only hands it an architecture and collects its metrics, through
the trial SDK (``kubenas_trial``)::

    genotype = {"stem": 16,
                "stage": [{"blocks": 2, "width": 32, "kernel": 3, "dilation": 1, "skip": []},
                          {"blocks": 1, "width": 16, "kernel": 5, "skip": [0]},
                          ...]}

Each stage has ``blocks`` residual blocks of ``width`` channels with ``kernel`` x ``kernel``
convolutions (``dilation`` only exists for 3x3 kernels); stages after the first halve the
resolution; ``skip`` lists earlier stages whose output is added to the stage's input
(a 1x1 projection and pooling make the shapes fit). The data are scikit-learn's bundled
8x8 digits, so the example runs offline on a laptop CPU.

Run by ``kubenas run examples/custom-resnet-local.yaml`` (see the README, "Search your own
model"); a preempted attempt resumes from its checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from kubenas_trial import Trial

EXIT_PREEMPTED = 143
SPLIT_SEED = 0
"""The same train/validation split for every trial, so their accuracies compare."""


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the (projected) input: a basic residual block."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, stride: int) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.conv1 = nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel, 1, pad, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SearchedResNet(nn.Module):
    """The network a genotype describes."""

    def __init__(self, genotype: dict[str, Any], classes: int = 10) -> None:
        super().__init__()
        stem = int(genotype["stem"])
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU())
        self.stages = nn.ModuleList()
        self.skips: list[list[int]] = []
        self.projections = nn.ModuleDict()
        widths: list[int] = []
        cin = stem
        for i, stage in enumerate(genotype["stage"]):
            width, kernel = int(stage["width"]), int(stage["kernel"])
            dilation = int(stage.get("dilation", 1))
            blocks = [Block(cin if b == 0 else width, width, kernel, dilation,
                            stride=2 if (i > 0 and b == 0) else 1)
                      for b in range(int(stage["blocks"]))]
            self.stages.append(nn.Sequential(*blocks))
            skips = [int(j) for j in stage.get("skip", [])]
            for j in skips:  # an earlier stage's output, brought to this stage's input width
                self.projections[f"{j}to{i}"] = nn.Conv2d(widths[j], cin, 1, bias=False)
            self.skips.append(skips)
            widths.append(width)
            cin = width
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        outputs: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            for j in self.skips[i]:
                extra = F.adaptive_avg_pool2d(outputs[j], x.shape[-2:])
                x = x + self.projections[f"{j}to{i}"](extra)
            x = stage(x)
            outputs.append(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def load_data(trial: Trial) -> tuple[torch.Tensor, ...]:
    """Digits scaled to [0, 1]; validation held out as the search's dataset settings say."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.tensor(np.random.default_rng(SPLIT_SEED).permutation(len(labels)))
    held = trial.dataset.validationSize or 300
    val, train = order[:held], order[held:]
    if trial.dataset.maxTrainExamples:
        train = train[: trial.dataset.maxTrainExamples]
    return images[train], labels[train], images[val], labels[val]


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(images)
        loss = F.cross_entropy(logits, labels).item()
        accuracy = (logits.argmax(1) == labels).float().mean().item()
    return accuracy, loss


def save(path: Path, state: dict[str, Any]) -> None:
    """All or nothing: a preemption mid-write must not leave a torn checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def main() -> int:
    with Trial.from_env() as trial:
        trial.watch_preemption()
        settings = trial.training
        torch.manual_seed(trial.seed)
        torch.set_num_threads(settings.threads or 1)
        x_train, y_train, x_val, y_val = load_data(trial)
        model = SearchedResNet(trial.genotype)
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.learningRate,
                                    momentum=settings.momentum, weight_decay=settings.weightDecay,
                                    nesterov=settings.nesterov and settings.momentum > 0)
        checkpoint = trial.checkpoint_dir() / "resnet.pt"
        start = 0
        if checkpoint.exists():  # an earlier attempt was preempted: continue where it stopped
            state = torch.load(checkpoint, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["epoch"]) + 1
            print(f"resuming at epoch {start}", flush=True)
        params = float(sum(p.numel() for p in model.parameters()))
        generator = torch.Generator().manual_seed(trial.seed)
        for epoch in range(start, settings.epochs):
            model.train()
            order = torch.randperm(len(y_train), generator=generator)
            total = 0.0
            for batch in order.split(settings.batchSize):
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            accuracy, val_loss = evaluate(model, x_val, y_val)
            trial.report_epoch(epoch, val_accuracy=accuracy, val_loss=val_loss,
                               train_loss=total / len(y_train), params=params)
            print(f"epoch {epoch + 1}/{settings.epochs}: val_accuracy {accuracy:.4f}", flush=True)
            save(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "epoch": epoch})
            if trial.preempted:
                trial.report_interrupted("SIGTERM: checkpoint saved")
                return EXIT_PREEMPTED
        if trial.output_dir() is not None:  # final training: keep the trained model
            trial.output_dir().mkdir(parents=True, exist_ok=True)
            torch.save({"genotype": trial.genotype, "model": model.state_dict()},
                       trial.output_dir() / "model.pt")
        trial.report_final()
    return 0


if __name__ == "__main__":
    sys.exit(main())
