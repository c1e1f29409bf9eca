"""The toy space's child network, registered for the trainer only (``KUBENAS_TRAINER_PLUGINS``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from controller_policy.contract import ModelSpec
from nas_trainer.registry import register_builder


@register_builder("toy-mlp")
def build_toy_mlp(genotype: dict[str, Any], *, spec: ModelSpec,
                  input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    act = nn.ReLU() if genotype["activation"] == "relu" else nn.Tanh()
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, genotype["width"]),
                         act, nn.Linear(genotype["width"], num_classes))
