"""ENAS micro (cell) search space (Pham et al. 2018; docs/papers.md §4, §5, §7).

A normal cell then a reduction cell, each of ``nodes`` computed nodes (paper:
B = 7 nodes of which 2 are the cell inputs, so 5 computed; code ``num_cells=5``).
Every node adds two operations applied to two earlier states; states no node
reads - the cell inputs included, as in the reference code - are concatenated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from controller_policy.spaces.base import SpaceOptions
from controller_policy.spaces.enas_controller import ENAS_CONTROLLER
from controller_policy.spaces.nasnet import TwoCellSpace, _node_count
from controller_policy.spaces.registry import register

ENAS_MICRO_OPERATIONS: tuple[str, ...] = (
    "sep_conv3x3",
    "sep_conv5x5",
    "avg_pool3x3",
    "max_pool3x3",
    "identity",
)
"""Operation ids of the reference code (docs/papers.md §5): sep3, sep5, avg3, max3, identity = 0-4."""


class EnasMicroOptions(SpaceOptions):
    """``searchSpace`` options of ``enas-micro``."""

    nodes: int = Field(default=5, ge=1, le=32, description="Computed nodes per cell (paper: B - 2 = 5).")


@register
class EnasMicroSpace(TwoCellSpace):
    """ENAS micro: 2 cells x nodes x [idx1, op1, idx2, op2] (docs/papers.md §5), 40 tokens by default.

    Token order is the published encoding, ``idx1, op1, idx2, op2`` per node, so
    the published arc strings are token lists as they stand; the reference
    controller *samples* in the order idx1, idx2, op1, op2 and our controller emits
    tokens in encoding order instead. idx: 0 = the cell two back, 1 = the previous
    cell, 2+n = node n. Nodes always add; the concat is always the loose ends.
    """

    type_name = "enas-micro"
    options_model = EnasMicroOptions
    node_fields = ("input1", "op1", "input2", "op2")
    node_key = "nodes"
    node_noun = "node"
    input_group = "enas-micro.index"
    op_group = "enas-micro.op"
    inputs_are_loose_ends = True
    explicit_concat = False
    state_legend = "0 = cell two back, 1 = previous cell, 2+n = node n"
    options: EnasMicroOptions
    paper_strategy = "enas"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        **ENAS_CONTROLLER,
        "batch_size": 10,  # [C] 10 samples aggregated per controller step (micro)
    }
    enas_steps_per_epoch = 30  # [C] 30 controller steps per epoch (docs/papers.md §7)

    @property
    def num_nodes(self) -> int:
        return self.options.nodes

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return ENAS_MICRO_OPERATIONS

    @classmethod
    def for_genotype(cls, genotype: dict[str, Any]) -> EnasMicroSpace:
        """The space with the genotype's node count (builders validate genotypes on their own)."""
        return cls({"nodes": _node_count(genotype, "nodes", default=5)})
