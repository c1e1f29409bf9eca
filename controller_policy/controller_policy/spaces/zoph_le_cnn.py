"""Zoph & Le (2017) layer-wise CNN space (docs/papers.md §1, §5, §6).

Per layer i = 1..L the controller emits ``[fh, fw, (sh, sw), nf]`` and then an
anchor whose i-1 binary skip tokens choose which earlier layers feed layer i.
Anchor ``a`` is layer ``a + 1``, so the skip token named
``layer{i}.skip_from_{a}`` selects layer ``a + 1`` as an input of layer ``i``.

Genotype (inputs are 1-based earlier layer numbers; empty means the image)::

    {"space": "zoph-le-cnn",
     "vocabulary": {"filterSize": [1, 3, 5, 7], "filters": [24, 36, 48, 64], "strides": [1]},
     "strides": false, "pooling": false,
     "layers": [{"fh": 3, "fw": 5, "filters": 36, "inputs": []}, ...]}

With ``predictStrides`` each layer also carries ``"sh"`` and ``"sw"``.

The pooling variant (``pooling: true``) is the paper's 39-layer net: the
controller predicts 13 layers, each expanded by the model builder into a densely
connected block of 3 convolutions, with filters {6, 12, 24, 36}. docs/papers.md marks
that filter set and the block expansion [?] (recalled, not re-checked); we
implement them as documented there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from controller_policy.spaces.base import (
    Anchor,
    Choice,
    InvalidArchitecture,
    SearchSpace,
    SpaceOptions,
    Step,
)
from controller_policy.spaces.graph import Graph
from controller_policy.spaces.registry import register

FILTER_SIZES: tuple[int, ...] = (1, 3, 5, 7)
FILTERS: tuple[int, ...] = (24, 36, 48, 64)
POOLING_FILTERS: tuple[int, ...] = (6, 12, 24, 36)
MAX_FILTERS = 4096
"""Most filters a predicted layer may choose (the paper's largest is 64)."""
STRIDES: tuple[int, ...] = (1, 2, 3)
DEFAULT_LAYERS = 6
"""The paper's depth schedule starts at 6 layers (+2 every 1,600 samples)."""
POOLING_LAYERS = 13
"""The pooling variant predicts 13 layers (each a 3-convolution block: 39 layers)."""


class ZophLeCnnOptions(SpaceOptions):
    """Options of the Zoph & Le CNN space; ``layers`` defaults to 6, or 13 with ``pooling``."""

    layers: int = Field(default=DEFAULT_LAYERS, ge=1, le=100, description="Predicted layers L.")
    predictStrides: bool = Field(default=False, description="Predict stride height/width {1,2,3}.")
    pooling: bool = Field(
        default=False,
        description="Max-pool variant: each predicted layer is a dense 3-conv block.",
    )
    filterChoices: tuple[int, ...] | None = Field(
        default=None, max_length=64, description="Override of the filter-count values (default per variant)."
    )

    @model_validator(mode="before")
    @classmethod
    def _pooling_depth(cls, data: Any) -> Any:
        # The pooling variant's paper depth is 13 predicted layers, not the schedule's 6.
        if isinstance(data, dict) and data.get("pooling") and "layers" not in data:
            data = {**data, "layers": POOLING_LAYERS}
        return data

    @field_validator("filterChoices")
    @classmethod
    def _distinct_positive(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return v
        if not v or any(not 1 <= f <= MAX_FILTERS for f in v) or len(set(v)) != len(v):
            raise ValueError(f"filterChoices must be distinct integers in [1, {MAX_FILTERS}], "
                             f"got {list(v)}")
        return v

    @model_validator(mode="after")
    def _no_strides_with_pooling(self) -> ZophLeCnnOptions:
        if self.pooling and self.predictStrides:
            raise ValueError(
                "pooling and predictStrides cannot both be true: the paper's pooling "
                "variant predicts no strides"
            )
        return self

    @property
    def filters(self) -> tuple[int, ...]:
        if self.filterChoices is not None:
            return self.filterChoices
        return POOLING_FILTERS if self.pooling else FILTERS


def indices_to_bits(
    field: str, indices: Any, allowed: Sequence[int], offset: int = 0,
    what: str = "an earlier layer",
) -> list[int]:
    """Selected indices -> one bit per allowed index; errors name ``field`` and what is allowed.

    ``offset`` is subtracted from each index to find its bit (1-based numbering uses 1).
    """
    if not isinstance(indices, list):
        raise InvalidArchitecture(f"{field} must be a list of integers, got {indices!r}")
    bits = [0] * len(allowed)
    for idx in indices:
        if isinstance(idx, bool) or not isinstance(idx, int) or idx not in allowed:
            shown = f"{allowed[0]}..{allowed[-1]}" if allowed else "none"
            raise InvalidArchitecture(f"{field}: {idx!r} is not {what}; allowed {shown}")
        if bits[idx - offset]:
            raise InvalidArchitecture(f"{field}: {idx} is listed twice")
        bits[idx - offset] = 1
    return bits


def bits_to_indices(bits: Sequence[int], offset: int = 0) -> list[int]:
    """One bit per earlier anchor -> the selected indices (``offset`` added)."""
    return [j + offset for j, b in enumerate(bits) if b]


def value_index(field: str, value: Any, allowed: Sequence[Any]) -> int:
    """Position of ``value`` in a vocabulary, or an error naming the field and allowed values."""
    if not isinstance(value, bool):
        for i, a in enumerate(allowed):
            if value == a and type(value) is type(a):
                return i
    raise InvalidArchitecture(f"{field} = {value!r} is not allowed; allowed {list(allowed)}")


def require_dict(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArchitecture(f"{field} must be a JSON object, got {value!r}")
    return value


def require_list(field: str, value: Any, length: int) -> list[Any]:
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} entries" if isinstance(value, list) else repr(value)
        raise InvalidArchitecture(f"{field} must be a list of {length} entries, got {got}")
    return value


def check_vocabulary(space: str, genotype: dict[str, Any], expected: dict[str, list[Any]]) -> None:
    """A genotype's vocabulary, when given, must equal the space's (else tokens are ambiguous)."""
    if "vocabulary" not in genotype:
        return
    vocab = require_dict("genotype.vocabulary", genotype["vocabulary"])
    for key, values in expected.items():
        if key in vocab and list(vocab[key]) != list(values):
            raise InvalidArchitecture(
                f"genotype.vocabulary.{key} = {vocab[key]!r} does not match this {space} "
                f"space; expected {list(values)}"
            )


@register
class ZophLeCnnSpace(SearchSpace):
    """Layer-wise CNN of Zoph & Le: per-layer filter shape/count, optional strides, skip anchors."""

    type_name: ClassVar[str] = "zoph-le-cnn"
    options_model: ClassVar[type[SpaceOptions]] = ZophLeCnnOptions
    kind: ClassVar[str] = "image"
    paper_strategy: ClassVar[str] = "reinforce"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        "lstm_layers": 2,  # [P] 2-layer LSTM
        "hidden_size": 35,  # [P] 35 units per layer
        "init_range": 0.08,  # [P] U(-0.08, 0.08)
        "learning_rate": 6e-4,  # [P] Adam 0.0006
        "batch_size": 8,  # [P] m = 8 children per replica update
        "baseline_decay": 0.95,  # ours: the paper gives none; NASNet's 0.95
        "entropy_weight": 0.0,  # [P] no entropy term is mentioned
    }
    """Zoph & Le's controller (docs/papers.md; [P] paper, [C] code, "ours" where neither says)."""
    enas_steps_per_epoch: ClassVar[int | None] = 50
    """ours: weight sharing over this space (``enas.supernet_zoph_cnn``) is not in the paper; the
    ENAS macro search's 50 controller steps per epoch."""
    options: ZophLeCnnOptions

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        graph = Graph("network")
        graph.node("image", "image", "input")
        for i, layer in enumerate(genotype["layers"], start=1):
            label = f"{layer['fh']}x{layer['fw']} conv\n{layer['filters']} filters"
            if genotype.get("strides"):
                label += f"\nstride {layer.get('sh', 1)}x{layer.get('sw', 1)}"
            graph.node(f"L{i}", f"L{i}: {label}")
            for src in layer.get("inputs") or ["image"]:
                graph.edge("image" if src == "image" else f"L{src}", f"L{i}")
        graph.close("softmax")
        return [graph]

    @property
    def strides(self) -> tuple[int, ...]:
        return STRIDES if self.options.predictStrides else (1,)

    def vocabulary(self) -> dict[str, list[int]]:
        return {
            "filterSize": list(FILTER_SIZES),
            "filters": list(self.options.filters),
            "strides": list(self.strides),
        }

    def build_steps(self) -> list[Step]:
        steps: list[Step] = []
        for i in range(1, self.options.layers + 1):
            steps.append(Choice(f"layer{i}.filter_height", "filter_height", FILTER_SIZES))
            steps.append(Choice(f"layer{i}.filter_width", "filter_width", FILTER_SIZES))
            if self.options.predictStrides:
                steps.append(Choice(f"layer{i}.stride_height", "stride_height", STRIDES))
                steps.append(Choice(f"layer{i}.stride_width", "stride_width", STRIDES))
            steps.append(Choice(f"layer{i}.filters", "filters", self.options.filters))
            steps.append(Anchor(f"layer{i}", i - 1, tuple(range(i - 1))))
        return steps

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        it = iter(tokens)
        layers: list[dict[str, Any]] = []
        for i in range(1, self.options.layers + 1):
            layer: dict[str, Any] = {"fh": FILTER_SIZES[next(it)], "fw": FILTER_SIZES[next(it)]}
            if self.options.predictStrides:
                layer["sh"] = STRIDES[next(it)]
                layer["sw"] = STRIDES[next(it)]
            layer["filters"] = self.options.filters[next(it)]
            layer["inputs"] = bits_to_indices([next(it) for _ in range(i - 1)], offset=1)
            layers.append(layer)
        return {
            "space": self.type_name,
            "vocabulary": self.vocabulary(),
            "strides": self.options.predictStrides,
            "pooling": self.options.pooling,
            "layers": layers,
        }

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        check_vocabulary(self.type_name, genotype, self.vocabulary())
        for flag, want in (("strides", self.options.predictStrides),
                           ("pooling", self.options.pooling)):
            if flag in genotype and genotype[flag] is not want:
                raise InvalidArchitecture(
                    f"genotype.{flag} = {genotype[flag]!r} but this space has {flag} = {want}"
                )
        layers = require_list("genotype.layers", genotype.get("layers"), self.options.layers)
        keys = ["fh", "fw", "sh", "sw", "filters", "inputs"]
        if not self.options.predictStrides:
            keys.remove("sh")
            keys.remove("sw")
        tokens: list[int] = []
        for i, raw in enumerate(layers, start=1):
            where = f"genotype.layers[{i - 1}]"
            layer = require_dict(where, raw)
            unknown = sorted(set(layer) - set(keys))
            missing = [k for k in keys if k not in layer]
            if unknown or missing:
                raise InvalidArchitecture(
                    f"{where} (layer {i}) must have exactly the fields {keys}; "
                    f"unknown {unknown}, missing {missing}"
                )
            tokens.append(value_index(f"{where}.fh", layer["fh"], FILTER_SIZES))
            tokens.append(value_index(f"{where}.fw", layer["fw"], FILTER_SIZES))
            if self.options.predictStrides:
                tokens.append(value_index(f"{where}.sh", layer["sh"], STRIDES))
                tokens.append(value_index(f"{where}.sw", layer["sw"], STRIDES))
            tokens.append(value_index(f"{where}.filters", layer["filters"], self.options.filters))
            tokens += indices_to_bits(
                f"{where}.inputs (layer {i})", layer["inputs"], list(range(1, i)), offset=1
            )
        return tokens

    @classmethod
    def for_genotype(cls, genotype: dict[str, Any]) -> ZophLeCnnSpace:
        """The space a self-describing genotype belongs to (model builders validate with it)."""
        g = require_dict("genotype", genotype)
        vocab = require_dict("genotype.vocabulary", g.get("vocabulary"))
        layers = g.get("layers")
        if not isinstance(layers, list) or not layers:
            raise InvalidArchitecture("genotype.layers must be a non-empty list of layers")
        try:
            options = ZophLeCnnOptions(
                layers=len(layers),
                predictStrides=bool(g.get("strides", False)),
                pooling=bool(g.get("pooling", False)),
                filterChoices=tuple(vocab.get("filters", FILTERS)),
            )
        except ValueError as exc:
            raise InvalidArchitecture(
                f"genotype does not describe a {cls.type_name} space: {exc}"
            ) from None
        return cls(options)
