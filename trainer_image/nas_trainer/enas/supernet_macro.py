"""ENAS macro supernet: weights per (layer, operation), shared by every child.

Search-time network of the reference code (docs/papers.md §4, §7): stem (3x3 conv ->
BN) -> L layers at a constant C channels -> ReLU -> global pool -> FC. Layer k
reads node k of ``[stem, layer0, ...]`` (the preceding one); each operation is
preceded by its own ReLU-1x1-BN, so a layer holds one (1x1, op) pair per
operation. For k > 0 the chosen skip nodes are *summed* with the operation's
output and batch-normalised (the fixed model of ``models.enas_macro``
concatenates instead). After layers d-1 and 2d-1 (d = L // 3) every node a later
layer of the child reads is factorized-reduced, with weights per (pooling
position, node); nodes the child never reads again are not reduced, so their
reducers get no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces.enas_macro import OPS, EnasMacroSpace
from nas_trainer.datasets.images import ImageData
from nas_trainer.enas.shared import use_batch_statistics
from nas_trainer.models.enas_macro import ENAS_MACRO_OPS, reduction_layers
from nas_trainer.models.ops import FactorizedReduce, ReLUConvBN
from nas_trainer.registry import register_supernet
from nas_trainer.runtime import ConfigError


class MacroSupernet(nn.Module):
    """The ENAS macro search network; ``forward(images, tokens)`` runs that child only."""

    def __init__(
        self, space: EnasMacroSpace, *, input_shape: tuple[int, int, int], num_classes: int,
        filters: int,
    ) -> None:
        super().__init__()
        if filters % 2:
            raise ValueError(f"the macro supernet needs even filters (factorized reductions), got {filters}")
        self.space = space
        c = filters
        num_layers = space.options.layers
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.branches = nn.ModuleList(
            nn.ModuleDict(
                {op: nn.Sequential(ReLUConvBN(c, c, 1), ENAS_MACRO_OPS[op](c)) for op in OPS}
            )
            for _ in range(num_layers)
        )
        self.skip_bn = nn.ModuleDict({str(k): nn.BatchNorm2d(c) for k in range(1, num_layers)})
        self.reduce_after = reduction_layers(num_layers)
        # before reducing after layer k the nodes are stem, layer0..layer k: k + 2 of them
        self.reducers = nn.ModuleDict(
            {str(k): nn.ModuleList(FactorizedReduce(c, c) for _ in range(k + 2)) for k in self.reduce_after}
        )
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init (docs/papers.md §4)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        use_batch_statistics(self)

    def forward(self, x: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
        layers = self.space.to_genotype(self.space.validate_tokens(tokens))["layers"]
        nodes: list[torch.Tensor | None] = [self.stem(x)]
        for k, layer in enumerate(layers):
            inp = nodes[k]
            assert inp is not None
            out = self.branches[k][layer["op"]](inp)
            if k > 0:
                for j in layer["skips"]:
                    skip = nodes[j]
                    assert skip is not None
                    out = out + skip
                out = self.skip_bn[str(k)](out)
            nodes.append(out)
            if k in self.reduce_after:
                read_later = {j for later in layers[k + 1 :] for j in later["skips"]} | {k + 1}
                reduce = self.reducers[str(k)]
                nodes = [
                    reduce[n](node) if n in read_later and node is not None else None
                    for n, node in enumerate(nodes)
                ]
        last = nodes[-1]
        assert last is not None
        z = torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(last), 1), 1)
        return self.classifier(z)


@register_supernet("enas-macro")
def build_macro_supernet(space: EnasMacroSpace, spec: ModelSpec, data: object) -> MacroSupernet:
    """The enas-macro supernet sized by ``training.model`` for image ``data``."""
    if not isinstance(data, ImageData):
        raise ConfigError(f"dataset: {space.type_name} needs image data")
    return MacroSupernet(space, input_shape=data.input_shape, num_classes=data.num_classes,
                         filters=spec.filters)
