"""ENAS micro space: 40 tokens, code op ids, published arc, exact size (docs/papers.md §4, §5,
§6), errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller_policy.spaces import SPACES, Choice, InvalidArchitecture
from controller_policy.spaces.enas_micro import EnasMicroSpace

ENAS_ARC = [
    int(t)
    for t in (
        "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 "  # normal cell
        "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"  # reduction cell
    ).split()
]


def test_registered_as_image_space() -> None:
    assert SPACES["enas-micro"] is EnasMicroSpace
    assert EnasMicroSpace.kind == "image"


def test_40_tokens_idx_op_idx_op_per_node() -> None:
    space = EnasMicroSpace()
    assert space.num_tokens == 40
    assert [s.name for s in space.slots[4:8]] == [
        "normal.node1.input1", "normal.node1.op1", "normal.node1.input2", "normal.node1.op2"
    ]
    assert space.slots[20].name == "reduction.node0.input1"
    node4_index = space.steps[16]
    assert isinstance(node4_index, Choice) and node4_index.values == (0, 1, 2, 3, 4, 5)
    assert {s.group for s in space.steps} == {"enas-micro.index", "enas-micro.op"}


def test_published_arc_decodes_with_the_code_operation_ids() -> None:
    genotype = EnasMicroSpace().decode(ENAS_ARC)
    assert genotype["vocabulary"] == [
        "sep_conv3x3", "sep_conv5x5", "avg_pool3x3", "max_pool3x3", "identity"
    ]
    normal, reduction = genotype["normal"], genotype["reduction"]
    assert normal["nodes"][0] == {"inputs": [0, 0], "ops": ["avg_pool3x3", "sep_conv3x3"]}
    assert normal["nodes"][1] == {"inputs": [0, 0], "ops": ["identity", "sep_conv5x5"]}
    assert reduction["nodes"][2] == {"inputs": [1, 3], "ops": ["sep_conv5x5", "sep_conv5x5"]}
    assert normal["concat"] == [2, 3, 4, 5, 6]  # no node reads another node
    assert reduction["concat"] == [2, 4, 5, 6]  # node 1 (state 3) is read by node 2
    assert EnasMicroSpace().encode(json.loads(json.dumps(genotype))) == ENAS_ARC


def test_unread_cell_inputs_are_loose_ends_as_in_the_reference_code() -> None:
    space = EnasMicroSpace({"nodes": 2})
    # normal: both nodes read only h_i (1): h_{i-1} (0) is never read
    genotype = space.decode([1, 0, 1, 4, 2, 1, 1, 0] + [1, 0, 1, 0, 1, 0, 1, 0])
    assert genotype["normal"]["concat"] == [0, 3]
    assert genotype["reduction"]["concat"] == [0, 2, 3]


def test_size_matches_the_formula_not_the_papers_approximation() -> None:
    """Exact ordered count per cell: prod over nodes n = 0..4 of (2+n)^2 * 5^2 = 720^2 * 5^10.

    The paper quotes (5 x (B-2)!)^4 = 600^4 = 1.3e11 for the pair of cells; the
    ordered token lists number 5.1e12 per cell and 2.6e25 for the pair (docs/papers.md §6).
    """
    space = EnasMicroSpace()
    per_cell = 1
    for n in range(5):
        per_cell *= (2 + n) ** 2 * 5**2
    assert per_cell == 720**2 * 5**10
    assert f"{per_cell:.1e}" == "5.1e+12"
    assert space.size() == per_cell**2
    assert f"{space.size():.1e}" == "2.6e+25"
    assert f"{(5 * 120) ** 4:.1e}" == "1.3e+11"  # the paper's figure, a different count
    assert EnasMicroSpace({"nodes": 1}).size() == (2 * 2 * 5 * 5) ** 2


@st.composite
def _space_and_tokens(draw: st.DrawFn) -> tuple[EnasMicroSpace, list[int]]:
    space = EnasMicroSpace({"nodes": draw(st.integers(1, 7))})
    return space, [draw(st.integers(0, s.num_values - 1)) for s in space.slots]


@settings(max_examples=60)
@given(_space_and_tokens())
def test_tokens_genotype_tokens_round_trip_through_json(case) -> None:
    space, tokens = case
    genotype = json.loads(json.dumps(space.decode(tokens)))
    assert space.encode(genotype) == tokens
    assert EnasMicroSpace.for_genotype(genotype).encode(genotype) == tokens
    for cell in ("normal", "reduction"):
        nodes = genotype[cell]["nodes"]
        read = {i for node in nodes for i in node["inputs"]}
        assert genotype[cell]["concat"] == [i for i in range(2 + len(nodes)) if i not in read]
        assert set(genotype[cell]) == {"nodes", "concat"}
        assert all("combine" not in node for node in nodes)


# --- errors: one test per class, each names the position or field --------------------


def test_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidArchitecture, match="expected 40 tokens, got 41"):
        EnasMicroSpace().validate_tokens([*ENAS_ARC, 0])


def test_out_of_range_token_names_its_position() -> None:
    tokens = list(ENAS_ARC)
    tokens[9] = 5  # normal node 2, op1: ids 0..4
    with pytest.raises(
        InvalidArchitecture, match=r"token 9 \(normal\.node2\.op1\) = 5 .*allowed 0\.\.4"
    ):
        EnasMicroSpace().validate_tokens(tokens)


def test_unknown_operation_name_lists_the_vocabulary() -> None:
    genotype = EnasMicroSpace().decode(ENAS_ARC)
    genotype["normal"]["nodes"][3]["ops"][0] = "conv3x3"  # a NASNet op, not an ENAS micro one
    with pytest.raises(
        InvalidArchitecture,
        match=r"genotype\.normal\.nodes\[3\]\.ops\[0\] = 'conv3x3'.*sep_conv3x3, sep_conv5x5",
    ):
        EnasMicroSpace().encode(genotype)


def test_bad_input_index_in_genotype_names_the_node() -> None:
    genotype = EnasMicroSpace().decode(ENAS_ARC)
    genotype["reduction"]["nodes"][0]["inputs"] = [2, 1]  # node 0 reads only the cell inputs
    with pytest.raises(
        InvalidArchitecture,
        match=r"genotype\.reduction\.nodes\[0\]\.inputs\[0\] = 2.*0\.\.1 \(0 = cell two back",
    ):
        EnasMicroSpace().encode(genotype)


def test_concat_other_than_the_loose_ends_is_refused() -> None:
    genotype = EnasMicroSpace().decode(ENAS_ARC)
    genotype["reduction"]["concat"] = [3, 4, 5, 6]
    with pytest.raises(
        InvalidArchitecture, match=r"genotype\.reduction\.concat.*loose ends, here \[2, 4, 5, 6\]"
    ):
        EnasMicroSpace().encode(genotype)
    genotype["reduction"]["concat"] = [2, 7]
    with pytest.raises(InvalidArchitecture, match=r"reduction\.concat names states \[7\]"):
        EnasMicroSpace().encode(genotype)


def test_combine_field_is_not_part_of_enas_micro() -> None:
    genotype = EnasMicroSpace().decode(ENAS_ARC)
    genotype["normal"]["nodes"][0]["combine"] = "add"
    with pytest.raises(InvalidArchitecture, match=r"genotype\.normal\.nodes\[0\] has unknown"):
        EnasMicroSpace().encode(genotype)


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="blocks"):
        EnasMicroSpace({"blocks": 5})
    with pytest.raises(ValidationError, match="nodes"):
        EnasMicroSpace({"nodes": 0})
