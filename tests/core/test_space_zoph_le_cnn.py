"""Zoph & Le CNN space: token layout, exact sizes (docs/papers.md §6), genotype round trip,
errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller_policy.spaces import SPACES, Anchor, Choice, InvalidArchitecture
from controller_policy.spaces.zoph_le_cnn import ZophLeCnnSpace


def _magnitude(n: int, digits: int) -> str:
    return f"{n:.{digits - 1}e}"


def test_registered_as_image_space() -> None:
    assert SPACES["zoph-le-cnn"] is ZophLeCnnSpace
    assert ZophLeCnnSpace.kind == "image"


@pytest.mark.parametrize("layers", [1, 2, 6, 15])
@pytest.mark.parametrize("strides", [False, True])
def test_token_count_follows_the_paper_formula(layers: int, strides: bool) -> None:
    space = ZophLeCnnSpace({"layers": layers, "predictStrides": strides})
    per_layer = 5 if strides else 3
    assert space.num_tokens == layers * per_layer + layers * (layers - 1) // 2


def test_layer_steps_are_fh_fw_strides_filters_then_anchor_over_all_earlier_layers() -> None:
    space = ZophLeCnnSpace({"layers": 3, "predictStrides": True})
    layer3 = space.steps[12:]
    assert [s.name for s in layer3] == [
        "layer3.filter_height", "layer3.filter_width", "layer3.stride_height",
        "layer3.stride_width", "layer3.filters", "layer3",
    ]
    assert isinstance(layer3[-1], Anchor) and layer3[-1].sources == (0, 1)
    assert all(isinstance(s, Choice) for s in layer3[:-1])
    assert layer3[4].values == (24, 36, 48, 64)
    assert layer3[2].values == (1, 2, 3)


def test_sizes_equal_the_formulas_and_the_published_magnitudes() -> None:
    l6 = ZophLeCnnSpace({"layers": 6}).size()
    assert l6 == 64**6 * 2**15 and _magnitude(l6, 1) == "2e+15"
    l15 = ZophLeCnnSpace({"layers": 15}).size()
    assert l15 == 64**15 * 2**105 and _magnitude(l15, 1) == "5e+58"
    l20 = ZophLeCnnSpace({"layers": 20, "predictStrides": True}).size()
    assert l20 == (4 * 4 * 3 * 3 * 4) ** 20 * 2**190 and _magnitude(l20, 2) == "2.5e+112"
    pooling = ZophLeCnnSpace({"pooling": True}).size()
    assert pooling == 64**13 * 2**78 and _magnitude(pooling, 1) == "9e+46"


def test_pooling_variant_defaults_to_13_layers_and_small_filters() -> None:
    space = ZophLeCnnSpace({"pooling": True})
    assert space.options.layers == 13
    assert space.vocabulary()["filters"] == [6, 12, 24, 36]
    assert ZophLeCnnSpace({"pooling": True, "layers": 4}).options.layers == 4
    assert ZophLeCnnSpace().options.layers == 6


def test_documented_layer_encodes_to_its_tokens() -> None:
    space = ZophLeCnnSpace({"layers": 4})
    layers = [{"fh": 1, "fw": 1, "filters": 24, "inputs": []} for _ in range(3)]
    layers.append({"fh": 3, "fw": 5, "filters": 36, "inputs": [1, 3]})
    tokens = space.encode({"space": "zoph-le-cnn", "layers": layers})
    # layer 4: fh=3 -> 1, fw=5 -> 2, 36 -> 1, skips from layers 1,2,3 -> 1,0,1
    assert tokens[-6:] == [1, 2, 1, 1, 0, 1]
    assert space.decode(tokens)["layers"][3]["inputs"] == [1, 3]


@st.composite
def _space_and_tokens(draw: st.DrawFn) -> tuple[ZophLeCnnSpace, list[int]]:
    pooling = draw(st.booleans())
    strides = False if pooling else draw(st.booleans())
    space = ZophLeCnnSpace(
        {"layers": draw(st.integers(1, 9)), "predictStrides": strides, "pooling": pooling}
    )
    tokens = [draw(st.integers(0, slot.num_values - 1)) for slot in space.slots]
    return space, tokens


@settings(max_examples=60, deadline=None)
@given(_space_and_tokens())
def test_tokens_genotype_tokens_round_trip_through_json(case) -> None:
    space, tokens = case
    genotype = json.loads(json.dumps(space.decode(tokens)))
    assert space.encode(genotype) == tokens
    assert genotype["strides"] is space.options.predictStrides
    for i, layer in enumerate(genotype["layers"], start=1):
        assert all(1 <= j < i for j in layer["inputs"])
        assert ("sh" in layer) is space.options.predictStrides
    assert ZophLeCnnSpace.for_genotype(genotype).encode(genotype) == tokens


# --- errors: one class each, the message names the position / field ---------------------


def test_wrong_length_is_refused() -> None:
    space = ZophLeCnnSpace({"layers": 2})
    with pytest.raises(InvalidArchitecture, match="expected 7 tokens, got 6"):
        space.validate_tokens([0] * 6)


def test_out_of_range_token_names_its_position() -> None:
    space = ZophLeCnnSpace({"layers": 2})
    with pytest.raises(InvalidArchitecture, match=r"token 2 \(layer1\.filters\) = 4.*0\.\.3"):
        space.validate_tokens([0, 0, 4, 0, 0, 0, 0])
    with pytest.raises(InvalidArchitecture, match=r"token 6 \(layer2\.skip_from_0\) = 2.*0\.\.1"):
        space.validate_tokens([0, 0, 0, 0, 0, 0, 2])


def test_bad_filter_value_names_the_genotype_field() -> None:
    space = ZophLeCnnSpace({"layers": 2})
    genotype = space.decode([0] * 7)
    genotype["layers"][1]["filters"] = 40
    with pytest.raises(InvalidArchitecture, match=r"genotype\.layers\[1\]\.filters = 40.*\[24, 36, 48, 64\]"):
        space.encode(genotype)


def test_bad_stride_value_names_the_genotype_field() -> None:
    space = ZophLeCnnSpace({"layers": 1, "predictStrides": True})
    genotype = space.decode([0] * 5)
    genotype["layers"][0]["sw"] = 4
    with pytest.raises(InvalidArchitecture, match=r"genotype\.layers\[0\]\.sw = 4.*\[1, 2, 3\]"):
        space.encode(genotype)


def test_input_not_earlier_than_the_layer_is_refused() -> None:
    space = ZophLeCnnSpace({"layers": 3})
    genotype = space.decode(space.sample(0))
    genotype["layers"][2]["inputs"] = [1, 3]
    with pytest.raises(InvalidArchitecture, match=r"layers\[2\]\.inputs \(layer 3\): 3 is not an earlier layer; allowed 1\.\.2"):
        space.encode(genotype)
    genotype["layers"][2]["inputs"] = [0]
    with pytest.raises(InvalidArchitecture, match="0 is not an earlier layer"):
        space.encode(genotype)
    genotype["layers"][2]["inputs"] = [2, 2]
    with pytest.raises(InvalidArchitecture, match="2 is listed twice"):
        space.encode(genotype)


def test_genotype_shape_errors_name_the_field() -> None:
    space = ZophLeCnnSpace({"layers": 2})
    good = space.decode([0] * 7)
    with pytest.raises(InvalidArchitecture, match=r"genotype\.layers must be a list of 2"):
        space.encode({**good, "layers": good["layers"][:1]})
    missing = {**good, "layers": [good["layers"][0], {"fh": 1, "fw": 1, "inputs": []}]}
    with pytest.raises(InvalidArchitecture, match=r"layers\[1\].*missing \['filters'\]"):
        space.encode(missing)
    with pytest.raises(InvalidArchitecture, match=r"genotype\.strides = True"):
        space.encode({**good, "strides": True})
    with pytest.raises(InvalidArchitecture, match=r"genotype\.vocabulary\.filters"):
        space.encode({**good, "vocabulary": {**good["vocabulary"], "filters": [6, 12, 24, 36]}})
    with pytest.raises(InvalidArchitecture, match="genotype.space must be 'zoph-le-cnn'"):
        space.encode({**good, "space": "enas-macro"})


def test_unknown_or_inconsistent_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="predictStride"):
        ZophLeCnnSpace({"predictStride": True})
    with pytest.raises(ValidationError, match="layers"):
        ZophLeCnnSpace({"layers": 0})
    with pytest.raises(ValidationError, match="pooling and predictStrides"):
        ZophLeCnnSpace({"pooling": True, "predictStrides": True})
    with pytest.raises(ValidationError, match="filterChoices"):
        ZophLeCnnSpace({"filterChoices": [24, 24]})


def test_filter_choices_override_changes_vocabulary_and_size() -> None:
    space = ZophLeCnnSpace({"layers": 2, "filterChoices": [40]})
    assert space.vocabulary()["filters"] == [40]
    assert space.size() == 16 * 16 * 2
    assert space.decode([0, 0, 0, 3, 3, 0, 1])["layers"][1] == {
        "fh": 7, "fw": 7, "filters": 40, "inputs": [1]
    }
