"""ENAS macro space (docs/papers.md §4, §5, §7): one operation and a skip subset per layer.

For each layer k = 0..L-1 the controller emits ``[op_k]`` and then an anchor
with k binary skip tokens: 78 tokens at L = 12. Operation ids follow the
reference *code* order — conv3x3, sep_conv3x3, conv5x5, sep_conv5x5,
avg_pool3x3, max_pool3x3 — not the paper's listing (conv3, conv5, sep3, sep5,
max3, avg3); the genotype names its vocabulary so either reading is explicit.

Skip token j of layer k selects node j of ``[stem, layer0, layer1, ...]`` (the
code's convention); layer k - 1 (the stem for k = 0) is always an input, so the
k tokens cover every other earlier node. Genotype::

    {"space": "enas-macro",
     "vocabulary": {"ops": [...6 names...], "skips": ["stem", "layer0", ...]},
     "layers": [{"op": "conv3x3", "skips": []}, {"op": "max_pool3x3", "skips": [0]}, ...]}

where ``skips`` holds skip-token indices j, readable through ``vocabulary.skips``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from controller_policy.spaces.base import (
    Anchor,
    Choice,
    InvalidArchitecture,
    SearchSpace,
    SpaceOptions,
    Step,
)
from controller_policy.spaces.enas_controller import ENAS_CONTROLLER
from controller_policy.spaces.graph import Graph
from controller_policy.spaces.registry import register
from controller_policy.spaces.zoph_le_cnn import (
    bits_to_indices,
    check_vocabulary,
    indices_to_bits,
    require_dict,
    require_list,
    value_index,
)

OPS: tuple[str, ...] = (
    "conv3x3",
    "sep_conv3x3",
    "conv5x5",
    "sep_conv5x5",
    "avg_pool3x3",
    "max_pool3x3",
)
"""Operation ids 0..5 in the reference code's order (≠ the paper's listing)."""


class EnasMacroOptions(SpaceOptions):
    """Options of the ENAS macro space."""

    layers: int = Field(default=12, ge=1, le=100, description="Layers L (12 in search, 24 final).")


@register
class EnasMacroSpace(SearchSpace):
    """ENAS macro: per layer an operation and any subset of earlier nodes to concatenate."""

    type_name: ClassVar[str] = "enas-macro"
    options_model: ClassVar[type[SpaceOptions]] = EnasMacroOptions
    kind: ClassVar[str] = "image"
    paper_strategy: ClassVar[str] = "enas"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        **ENAS_CONTROLLER,
        "batch_size": 20,  # [C] 20 samples aggregated per controller step (macro)
        "skip_target": 0.4,  # [P] KL towards rho = 0.4
        "skip_weight": 0.8,  # [P] weight 0.8 ([C] adds it to the loss, as we do)
    }
    enas_steps_per_epoch: ClassVar[int | None] = 50  # [C] 50 steps per epoch (docs/papers.md §7)
    options: EnasMacroOptions

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        graph = Graph("network")
        graph.node("stem", "stem", "input")
        names = ["stem"] + [f"L{k}" for k in range(len(genotype["layers"]))]
        for k, layer in enumerate(genotype["layers"]):
            graph.node(f"L{k}", f"L{k}: {layer['op']}")
            # names[k] is the previous layer (the stem for k = 0), always an input; skip j is names[j]
            sources = {k} | {int(j) for j in layer.get("skips") or []}
            for j in sorted(sources):
                graph.edge(names[j], f"L{k}", "" if j == k else "skip")
        graph.node("out", "softmax", "output")
        graph.edge(names[-1], "out")
        return [graph]

    def vocabulary(self) -> dict[str, list[str]]:
        # Skip index j names node j of [stem, layer0, ...]; the last layer has L-1 of them.
        nodes = ["stem"] + [f"layer{k}" for k in range(self.options.layers - 2)]
        return {"ops": list(OPS), "skips": nodes[: self.options.layers - 1]}

    def build_steps(self) -> list[Step]:
        steps: list[Step] = []
        for k in range(self.options.layers):
            steps.append(Choice(f"layer{k}.op", "op", OPS))
            steps.append(Anchor(f"layer{k}", k, tuple(range(k))))
        return steps

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        it = iter(tokens)
        layers = []
        for k in range(self.options.layers):
            op = OPS[next(it)]
            layers.append({"op": op, "skips": bits_to_indices([next(it) for _ in range(k)])})
        return {"space": self.type_name, "vocabulary": self.vocabulary(), "layers": layers}

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        check_vocabulary(self.type_name, genotype, self.vocabulary())
        layers = require_list("genotype.layers", genotype.get("layers"), self.options.layers)
        tokens: list[int] = []
        for k, raw in enumerate(layers):
            where = f"genotype.layers[{k}]"
            layer = require_dict(where, raw)
            if set(layer) != {"op", "skips"}:
                raise InvalidArchitecture(
                    f"{where} must have exactly the fields ['op', 'skips'], got {sorted(layer)}"
                )
            tokens.append(value_index(f"{where}.op", layer["op"], OPS))
            tokens += indices_to_bits(
                f"{where}.skips (layer {k})", layer["skips"], list(range(k)),
                what="a skip index of this layer (node j of [stem, layer0, ...], j < k)",
            )
        return tokens

    @classmethod
    def for_genotype(cls, genotype: dict[str, Any]) -> EnasMacroSpace:
        """The space a genotype belongs to: its depth is the number of layers it lists."""
        layers = require_dict("genotype", genotype).get("layers")
        if not isinstance(layers, list) or not layers:
            raise InvalidArchitecture("genotype.layers must be a non-empty list of layers")
        return cls(EnasMacroOptions(layers=len(layers)))
