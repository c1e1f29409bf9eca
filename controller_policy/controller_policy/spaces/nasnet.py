"""NASNet cell search space (Zoph et al. 2018; docs/papers.md §3, §5, §6).

A Normal cell then a Reduction cell, each of B blocks predicted as
``[input1, input2, op1, op2, combine]`` - the order of the paper's controller,
so 2 x 5B = 50 tokens for B = 5. Inputs: 0 = h_{i-1}, 1 = h_i, 2+b = block b.

This module also holds ``TwoCellSpace``, the machinery NASNet shares with ENAS
micro (``enas_micro``): both are "normal cell + reduction cell of nodes that
each read two earlier states through two operations". Only the token fields per
node, the operation vocabulary and the loose-end rule differ.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from controller_policy.spaces.base import (
    Choice,
    InvalidArchitecture,
    SearchSpace,
    SpaceOptions,
    Step,
)
from controller_policy.spaces.graph import Graph, two_cell_graphs
from controller_policy.spaces.registry import register

CELLS = ("normal", "reduction")

NASNET_OPERATIONS: tuple[str, ...] = (
    "identity",
    "conv1x3_3x1",
    "conv1x7_7x1",
    "dil_conv3x3",
    "avg_pool3x3",
    "max_pool3x3",
    "max_pool5x5",
    "max_pool7x7",
    "conv1x1",
    "conv3x3",
    "sep_conv3x3",
    "sep_conv5x5",
    "sep_conv7x7",
)
"""The 13 operations in the paper's order (token id = index), as named in ``ops.IMAGE_OPS``."""

COMBINE_OPERATIONS: tuple[str, ...] = ("add", "concat")
"""Block combiners in the paper's order: add = 0, concat = 1."""


@dataclass(frozen=True)
class NodeLayout:
    """One block/node: two input states, one operation per input, how the two results merge."""

    inputs: tuple[int, int]
    ops: tuple[str, str]
    combine: str = "add"


@dataclass(frozen=True)
class CellLayout:
    """What a model builder needs of one cell: its nodes and which states are concatenated out."""

    nodes: tuple[NodeLayout, ...]
    concat: tuple[int, ...]


def consumed_states(nodes: Sequence[NodeLayout]) -> set[int]:
    """States that some node reads."""
    return {i for node in nodes for i in node.inputs}


class TwoCellSpace(SearchSpace):
    """A normal and a reduction cell of ``num_nodes`` two-input nodes each (NASNet, ENAS micro).

    Subclasses say which token fields a node has, in emission order (from
    ``input1``, ``input2``, ``op1``, ``op2``, ``combine``), the genotype key of
    the node list, the decision groups, and whether unconsumed cell *inputs*
    count as loose ends.
    """

    kind = "image"
    node_fields: ClassVar[tuple[str, ...]]
    node_key: ClassVar[str]
    """Genotype key of a cell's node list ("blocks" or "nodes")."""
    node_noun: ClassVar[str]
    """Used in token names, e.g. ``normal.block3.op1``."""
    input_group: ClassVar[str]
    op_group: ClassVar[str]
    combine_group: ClassVar[str] = ""
    inputs_are_loose_ends: ClassVar[bool]
    explicit_concat: ClassVar[bool]
    """Whether a genotype may list a concat other than the loose ends."""
    state_legend: ClassVar[str]
    """How input indices read, for error messages."""

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        return two_cell_graphs(genotype)

    @property
    @abstractmethod
    def num_nodes(self) -> int:
        """Computed nodes per cell (B)."""

    @property
    @abstractmethod
    def vocabulary(self) -> tuple[str, ...]:
        """Operation names; the op token is an index into this tuple."""

    @property
    def combine_vocabulary(self) -> tuple[str, ...]:
        return ("add",)

    # --- structure ------------------------------------------------------------
    def build_steps(self) -> list[Step]:
        steps: list[Step] = []
        for cell in CELLS:
            for n in range(self.num_nodes):
                for field in self.node_fields:
                    steps.append(self._choice(cell, n, field))
        return steps

    def _choice(self, cell: str, n: int, field: str) -> Choice:
        name = f"{cell}.{self.node_noun}{n}.{field}"
        if field.startswith("input"):
            # A node may read the two cell inputs and every earlier node: masked sizes.
            return Choice(name, self.input_group, tuple(range(2 + n)))
        if field.startswith("op"):
            return Choice(name, self.op_group, self.vocabulary)
        return Choice(name, self.combine_group, self.combine_vocabulary)

    # --- genotype --------------------------------------------------------------
    def loose_ends(self, nodes: Sequence[NodeLayout]) -> tuple[int, ...]:
        """States no node consumes, concatenated into the cell output."""
        first = 0 if self.inputs_are_loose_ends else 2
        used = consumed_states(nodes)
        return tuple(i for i in range(first, 2 + len(nodes)) if i not in used)

    def layouts(self, tokens: Sequence[int]) -> dict[str, CellLayout]:
        """Valid tokens -> ``{"normal": CellLayout, "reduction": CellLayout}`` with loose-end concat."""
        per_node = len(self.node_fields)
        out: dict[str, CellLayout] = {}
        for c, cell in enumerate(CELLS):
            nodes = []
            for n in range(self.num_nodes):
                start = (c * self.num_nodes + n) * per_node
                t = dict(zip(self.node_fields, tokens[start : start + per_node], strict=True))
                nodes.append(
                    NodeLayout(
                        inputs=(t["input1"], t["input2"]),
                        ops=(self.vocabulary[t["op1"]], self.vocabulary[t["op2"]]),
                        combine=self.combine_vocabulary[t.get("combine", 0)],
                    )
                )
            out[cell] = CellLayout(tuple(nodes), self.loose_ends(nodes))
        return out

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        genotype: dict[str, Any] = {"space": self.type_name, "vocabulary": list(self.vocabulary)}
        if "combine" in self.node_fields:
            genotype["combineVocabulary"] = list(self.combine_vocabulary)
        for cell, layout in self.layouts(tokens).items():
            genotype[cell] = {
                self.node_key: [self._node_json(node) for node in layout.nodes],
                "concat": list(layout.concat),
            }
        return genotype

    def _node_json(self, node: NodeLayout) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": list(node.inputs), "ops": list(node.ops)}
        if "combine" in self.node_fields:
            out["combine"] = node.combine
        return out

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        layouts = self.parse_genotype(genotype)  # validates every field, concat included
        tokens: list[int] = []
        for cell in CELLS:
            for node in layouts[cell].nodes:
                values = {
                    "input1": node.inputs[0],
                    "input2": node.inputs[1],
                    "op1": self.vocabulary.index(node.ops[0]),
                    "op2": self.vocabulary.index(node.ops[1]),
                    "combine": self.combine_vocabulary.index(node.combine),
                }
                tokens += [values[f] for f in self.node_fields]
        return tokens

    def parse_genotype(self, genotype: dict[str, Any]) -> dict[str, CellLayout]:
        """Validated genotype -> layouts, keeping an explicit ``concat`` where the space allows it."""
        allowed_top = {"space", "vocabulary", *CELLS}
        if "combine" in self.node_fields:
            allowed_top.add("combineVocabulary")
        _no_extra_keys(genotype, allowed_top, "genotype")
        for key in ("vocabulary", "combineVocabulary"):
            if key in genotype and not _is_str_list(genotype[key]):
                raise InvalidArchitecture(f"genotype.{key} must be a list of names")
        out: dict[str, CellLayout] = {}
        for cell in CELLS:
            where = f"genotype.{cell}"
            body = genotype.get(cell)
            if not isinstance(body, dict):
                raise InvalidArchitecture(
                    f"{where} must be an object with {self.node_key!r} and optional 'concat'"
                )
            _no_extra_keys(body, {self.node_key, "concat"}, where)
            raw_nodes = body.get(self.node_key)
            if not isinstance(raw_nodes, list) or len(raw_nodes) != self.num_nodes:
                got = len(raw_nodes) if isinstance(raw_nodes, list) else type(raw_nodes).__name__
                raise InvalidArchitecture(
                    f"{where}.{self.node_key} must list {self.num_nodes} {self.node_noun}s "
                    f"(the space's size), got {got}"
                )
            nodes = [
                self._parse_node(raw, f"{where}.{self.node_key}[{n}]", n)
                for n, raw in enumerate(raw_nodes)
            ]
            concat = self._parse_concat(body.get("concat"), nodes, f"{where}.concat")
            out[cell] = CellLayout(tuple(nodes), concat)
        return out

    def _parse_node(self, raw: Any, where: str, n: int) -> NodeLayout:
        """One node object of the genotype -> ``NodeLayout``; errors name the field."""
        if not isinstance(raw, dict):
            raise InvalidArchitecture(f"{where} must be an object with 'inputs' and 'ops'")
        keys = {"inputs", "ops"} | ({"combine"} if "combine" in self.node_fields else set())
        _no_extra_keys(raw, keys, where)
        inputs, ops = raw.get("inputs"), raw.get("ops")
        if not isinstance(inputs, list) or len(inputs) != 2:
            raise InvalidArchitecture(f"{where}.inputs must be a list of 2 state indices")
        if not isinstance(ops, list) or len(ops) != 2:
            raise InvalidArchitecture(f"{where}.ops must be a list of 2 operation names")
        for j, idx in enumerate(inputs):
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < 2 + n:
                raise InvalidArchitecture(
                    f"{where}.inputs[{j}] = {idx!r} is not allowed; {self.node_noun} {n} may "
                    f"read 0..{1 + n} ({self.state_legend})"
                )
        for j, name in enumerate(ops):
            _check_name(name, self.vocabulary, f"{where}.ops[{j}]", "operation")
        combine = "add"
        if "combine" in self.node_fields:
            if "combine" not in raw:
                raise InvalidArchitecture(
                    f"{where}.combine is missing; allowed: {', '.join(self.combine_vocabulary)}"
                )
            combine = raw["combine"]
            _check_name(combine, self.combine_vocabulary, f"{where}.combine", "combiner")
        return NodeLayout((inputs[0], inputs[1]), (ops[0], ops[1]), combine)

    def _parse_concat(
        self, raw: Any, nodes: Sequence[NodeLayout], where: str
    ) -> tuple[int, ...]:
        """Default to the loose ends; an explicit list must name distinct existing states."""
        loose = self.loose_ends(nodes)
        if raw is None:
            return loose
        last = 1 + len(nodes)
        if (
            not isinstance(raw, list)
            or not raw
            or any(isinstance(i, bool) or not isinstance(i, int) for i in raw)
        ):
            raise InvalidArchitecture(
                f"{where} must be a non-empty list of state indices in 0..{last}, got {raw!r}"
            )
        bad = [i for i in raw if not 0 <= i <= last]
        if bad:
            raise InvalidArchitecture(
                f"{where} names states {bad} that do not exist; allowed 0..{last} "
                f"({self.state_legend})"
            )
        if len(set(raw)) != len(raw):
            raise InvalidArchitecture(f"{where} repeats a state: {raw}")
        if not self.explicit_concat and tuple(raw) != loose:
            raise InvalidArchitecture(
                f"{where} = {raw} but {self.type_name} always concatenates the loose ends, "
                f"here {list(loose)}; omit concat or give exactly that list"
            )
        return tuple(raw)


def _no_extra_keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise InvalidArchitecture(
            f"{where} has unknown field(s) {extra}; allowed: {sorted(allowed)}"
        )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_name(name: Any, vocabulary: Sequence[str], where: str, what: str) -> None:
    if isinstance(name, str) and name in vocabulary:
        return
    raise InvalidArchitecture(
        f"{where} = {name!r} is not an {what} of this space; allowed: {', '.join(vocabulary)}"
    )


class NasnetOptions(SpaceOptions):
    """``searchSpace`` options of ``nasnet``."""

    blocks: int = Field(default=5, ge=1, le=32, description="B: blocks per cell (paper: 5).")
    operations: tuple[str, ...] | None = Field(
        default=None,
        description="Subset of the 13 operations; kept in paper order. Default: all 13.",
    )
    combine: tuple[Literal["add", "concat"], ...] = Field(
        default=COMBINE_OPERATIONS,
        description="Allowed combiners; ['add'] restricts to addition (as NASNet-A uses).",
    )

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [v for v in value if v not in NASNET_OPERATIONS]
        if unknown:
            raise ValueError(
                f"unknown operation(s) {unknown}; allowed: {', '.join(NASNET_OPERATIONS)}"
            )
        if not value or len(set(value)) != len(value):
            raise ValueError("operations must be a non-empty list without repeats")
        return tuple(op for op in NASNET_OPERATIONS if op in value)

    @field_validator("combine")
    @classmethod
    def _combine_set(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("combine must be a non-empty list of 'add'/'concat' without repeats")
        return tuple(c for c in COMBINE_OPERATIONS if c in value)


@register
class NasnetSpace(TwoCellSpace):
    """NASNet: 2 cells x B blocks x [input1, input2, op1, op2, combine] (docs/papers.md §5).

    The concat of a cell defaults to its loose ends: the blocks no block reads
    (the paper concatenates "unused hidden states generated in the cell", so the
    cell inputs never count). A genotype may list ``concat`` explicitly - NASNet-A's
    hand-listed outputs (docs/papers.md §7) are not loose ends - and builders honour it.
    """

    type_name = "nasnet"
    options_model = NasnetOptions
    node_fields = ("input1", "input2", "op1", "op2", "combine")
    node_key = "blocks"
    node_noun = "block"
    input_group = "nasnet.input"
    op_group = "nasnet.op"
    combine_group = "nasnet.combine"
    inputs_are_loose_ends = False
    explicit_concat = True
    state_legend = "0 = h_{i-1}, 1 = h_i, 2+b = block b"
    options: NasnetOptions
    paper_strategy = "ppo"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        "lstm_layers": 1,  # [P] one layer
        "hidden_size": 100,  # [P] 100 units
        "init_range": 0.1,  # [P] U(-0.1, 0.1)
        "learning_rate": 3.5e-4,  # [P] 0.00035
        "batch_size": 20,  # [P] minibatches of 20 architectures
        "baseline_decay": 0.95,  # [P] EMA 0.95
        "entropy_weight": 1e-5,  # [P] 0.00001
        "entropy_mode": "loss",  # ours: the paper does not say where the bonus goes
    }
    """NASNet's controller (docs/papers.md; [P] paper, "ours" where it does not say)."""

    @property
    def num_nodes(self) -> int:
        return self.options.blocks

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.options.operations or NASNET_OPERATIONS

    @property
    def combine_vocabulary(self) -> tuple[str, ...]:
        return self.options.combine

    @classmethod
    def for_genotype(cls, genotype: dict[str, Any]) -> NasnetSpace:
        """The widest space (all operations and combiners) with the genotype's block count.

        Builders use it to validate a genotype on its own: operations are matched by name.
        """
        return cls({"blocks": _node_count(genotype, "blocks", default=5)})


def _node_count(genotype: Any, key: str, default: int) -> int:
    try:
        return max(1, len(genotype["normal"][key]))
    except (KeyError, TypeError):
        return default  # malformed: let validation report the field
