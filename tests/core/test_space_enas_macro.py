"""ENAS macro space: 78 tokens, code op order, exact size (docs/papers.md §5, §6), round trip,
errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller_policy.spaces import SPACES, Anchor, Choice, InvalidArchitecture
from controller_policy.spaces.enas_macro import EnasMacroSpace


def test_registered_as_image_space() -> None:
    assert SPACES["enas-macro"] is EnasMacroSpace
    assert EnasMacroSpace.kind == "image"


def test_78_tokens_op_then_k_skip_bits_per_layer() -> None:
    space = EnasMacroSpace()
    assert space.num_tokens == 78
    for k in range(12):
        op, anchor = space.steps[2 * k], space.steps[2 * k + 1]
        assert isinstance(op, Choice) and op.name == f"layer{k}.op" and op.group == "op"
        assert isinstance(anchor, Anchor) and anchor.index == k
        assert anchor.sources == tuple(range(k))


def test_operation_ids_follow_the_code_order() -> None:
    assert EnasMacroSpace().vocabulary()["ops"] == [
        "conv3x3", "sep_conv3x3", "conv5x5", "sep_conv5x5", "avg_pool3x3", "max_pool3x3"
    ]


def test_size_is_6_to_the_12_times_2_to_the_66() -> None:
    size = EnasMacroSpace().size()
    assert size == 6**12 * 2**66
    assert f"{size:.1e}" == "1.6e+29"
    assert EnasMacroSpace({"layers": 24}).size() == 6**24 * 2**276


def test_skip_vocabulary_names_the_nodes_of_the_code_convention() -> None:
    space = EnasMacroSpace({"layers": 4})
    assert space.vocabulary()["skips"] == ["stem", "layer0", "layer1"]
    tokens = [0, 1, 0, 2, 1, 1, 5, 1, 0, 1]
    genotype = space.decode(tokens)
    assert genotype["layers"][3] == {"op": "max_pool3x3", "skips": [0, 2]}
    assert genotype["layers"][1] == {"op": "sep_conv3x3", "skips": []}
    assert genotype["layers"][2] == {"op": "conv5x5", "skips": [0, 1]}


@st.composite
def _space_and_tokens(draw: st.DrawFn) -> tuple[EnasMacroSpace, list[int]]:
    space = EnasMacroSpace({"layers": draw(st.integers(1, 14))})
    return space, [draw(st.integers(0, s.num_values - 1)) for s in space.slots]


@settings(max_examples=60, deadline=None)
@given(_space_and_tokens())
def test_tokens_genotype_tokens_round_trip_through_json(case) -> None:
    space, tokens = case
    genotype = json.loads(json.dumps(space.decode(tokens)))
    assert space.encode(genotype) == tokens
    assert all(all(0 <= j < k for j in layer["skips"]) for k, layer in enumerate(genotype["layers"]))
    assert EnasMacroSpace.for_genotype(genotype).encode(genotype) == tokens


def test_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidArchitecture, match="expected 78 tokens, got 77"):
        EnasMacroSpace().validate_tokens([0] * 77)


def test_out_of_range_token_names_its_position() -> None:
    space = EnasMacroSpace({"layers": 3})
    with pytest.raises(InvalidArchitecture, match=r"token 3 \(layer2\.op\) = 6.*0\.\.5"):
        space.validate_tokens([0, 0, 0, 6, 0, 0])
    with pytest.raises(InvalidArchitecture, match=r"token 5 \(layer2\.skip_from_1\) = -1"):
        space.validate_tokens([0, 0, 0, 0, 0, -1])


def test_unknown_operation_names_the_genotype_field() -> None:
    space = EnasMacroSpace({"layers": 3})
    genotype = space.decode([0] * 6)
    genotype["layers"][2]["op"] = "conv7x7"
    with pytest.raises(InvalidArchitecture, match=r"genotype\.layers\[2\]\.op = 'conv7x7'.*sep_conv3x3"):
        space.encode(genotype)


def test_skip_index_not_earlier_than_the_layer_is_refused() -> None:
    space = EnasMacroSpace({"layers": 3})
    genotype = space.decode([0] * 6)
    genotype["layers"][2]["skips"] = [2]
    with pytest.raises(InvalidArchitecture, match=r"layers\[2\]\.skips \(layer 2\): 2 is not a skip index.*allowed 0\.\.1"):
        space.encode(genotype)
    genotype["layers"][0]["skips"] = [0]
    genotype["layers"][2]["skips"] = []
    with pytest.raises(InvalidArchitecture, match=r"layers\[0\]\.skips \(layer 0\): 0 .*allowed none"):
        space.encode(genotype)


def test_genotype_of_another_depth_or_vocabulary_is_refused() -> None:
    space = EnasMacroSpace({"layers": 3})
    genotype = space.decode([0] * 6)
    with pytest.raises(InvalidArchitecture, match=r"genotype\.layers must be a list of 3"):
        space.encode({**genotype, "layers": genotype["layers"][:2]})
    paper_order = ["conv3x3", "conv5x5", "sep_conv3x3", "sep_conv5x5", "max_pool3x3", "avg_pool3x3"]
    with pytest.raises(InvalidArchitecture, match=r"genotype\.vocabulary\.ops"):
        space.encode({**genotype, "vocabulary": {"ops": paper_order}})


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValidationError, match="numLayers"):
        EnasMacroSpace({"numLayers": 12})
    with pytest.raises(ValidationError, match="layers"):
        EnasMacroSpace({"layers": 0})
