"""NASNet space: 50 tokens, paper op order, NASNet-A fixture, exact size (docs/papers.md §3, §5,
§6), errors."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller_policy.spaces import SPACES, Choice, InvalidArchitecture
from controller_policy.spaces.nasnet import NASNET_OPERATIONS, NasnetSpace

NASNET_A_NORMAL = "1,0,11,10,0|0,0,11,10,0|1,0,4,0,0|0,0,4,4,0|1,1,10,0,0"
NASNET_A_REDUCTION = "1,0,11,12,0|1,0,5,12,0|1,0,4,11,0|3,2,0,4,0|2,1,10,5,0"
NASNET_A_TOKENS = [
    int(t) for t in f"{NASNET_A_NORMAL}|{NASNET_A_REDUCTION}".replace("|", ",").split(",")
]


def nasnet_a_genotype() -> dict:
    """NASNet-A with its hand-listed concat (docs/papers.md §5/§7), which loose ends cannot
    infer."""
    genotype = NasnetSpace().decode(NASNET_A_TOKENS)
    genotype["normal"]["concat"] = [0, 2, 3, 4, 5, 6]
    genotype["reduction"]["concat"] = [3, 4, 5, 6]
    return genotype


def test_registered_as_image_space() -> None:
    assert SPACES["nasnet"] is NasnetSpace
    assert NasnetSpace.kind == "image"


def test_50_tokens_in_the_paper_order_normal_cell_first() -> None:
    space = NasnetSpace()
    assert space.num_tokens == 50
    names = [s.name for s in space.slots[:5]]
    assert names == [f"normal.block0.{f}" for f in ("input1", "input2", "op1", "op2", "combine")]
    assert space.slots[25].name == "reduction.block0.input1"
    # inputs grow with the block index and share one masked head
    block4_input = space.steps[20]
    assert isinstance(block4_input, Choice)
    assert block4_input.group == "nasnet.input" and block4_input.values == (0, 1, 2, 3, 4, 5)
    assert {s.group for s in space.steps} == {"nasnet.input", "nasnet.op", "nasnet.combine"}


NASNET_NAMES_IN_PAPER_ORDER = (
    "identity", "conv1x3_3x1", "conv1x7_7x1", "dil_conv3x3", "avg_pool3x3", "max_pool3x3",
    "max_pool5x5", "max_pool7x7", "conv1x1", "conv3x3", "sep_conv3x3", "sep_conv5x5",
    "sep_conv7x7",
)  # fmt: skip


def test_vocabulary_is_the_13_operations_in_paper_order() -> None:
    genotype = NasnetSpace().decode(NASNET_A_TOKENS)
    assert genotype["vocabulary"] == list(NASNET_NAMES_IN_PAPER_ORDER)
    assert genotype["combineVocabulary"] == ["add", "concat"]


def test_nasnet_a_decodes_to_the_published_cells() -> None:
    genotype = NasnetSpace().decode(NASNET_A_TOKENS)
    normal = genotype["normal"]["blocks"]
    assert normal[0] == {"inputs": [1, 0], "ops": ["sep_conv5x5", "sep_conv3x3"], "combine": "add"}
    assert normal[4] == {"inputs": [1, 1], "ops": ["sep_conv3x3", "identity"], "combine": "add"}
    reduction = genotype["reduction"]["blocks"]
    assert reduction[3] == {"inputs": [3, 2], "ops": ["identity", "avg_pool3x3"], "combine": "add"}
    # Loose ends: the blocks nothing reads. NASNet-A lists h_{i-1} (normal) and block 1
    # (reduction) as well, so the inferred concat differs from the published one.
    assert genotype["normal"]["concat"] == [2, 3, 4, 5, 6]
    assert genotype["reduction"]["concat"] == [4, 5, 6]


def test_explicit_concat_survives_and_encodes_to_the_same_tokens() -> None:
    space = NasnetSpace()
    genotype = json.loads(json.dumps(nasnet_a_genotype()))
    assert space.encode(genotype) == NASNET_A_TOKENS
    layouts = space.parse_genotype(genotype)
    assert layouts["normal"].concat == (0, 2, 3, 4, 5, 6)
    assert layouts["reduction"].concat == (3, 4, 5, 6)
    del genotype["reduction"]["concat"]
    assert space.parse_genotype(genotype)["reduction"].concat == (4, 5, 6)


def test_size_matches_the_formula_and_the_published_magnitude() -> None:
    """Per cell: prod_b (2+b)^2 * 13^2 * 2 over B = 5 blocks; the pair squares it."""
    space = NasnetSpace()
    per_cell = 1
    for b in range(5):
        per_cell *= (2 + b) ** 2 * 13**2 * 2
    assert per_cell == (2 * 3 * 4 * 5 * 6) ** 2 * 13**10 * 2**5
    assert f"{per_cell:.1e}" == "2.3e+18"
    assert space.size() == per_cell**2
    assert f"{space.size():.1e}" == "5.2e+36"


def test_options_restrict_operations_and_combiners() -> None:
    space = NasnetSpace({"blocks": 2, "operations": ["sep_conv3x3", "identity"], "combine": ["add"]})
    assert space.num_tokens == 20
    assert space.vocabulary == ("identity", "sep_conv3x3")  # paper order, whatever the input order
    assert space.size() == ((2 * 2 * 2 * 2 * 1) * (3 * 3 * 2 * 2 * 1)) ** 2
    genotype = space.decode([0, 1, 1, 0, 0, 2, 0, 0, 1, 0] * 2)
    assert genotype["normal"]["blocks"][0]["ops"] == ["sep_conv3x3", "identity"]
    assert genotype["combineVocabulary"] == ["add"]
    # a genotype using an operation outside the subset is not in this space
    genotype["normal"]["blocks"][0]["ops"][0] = "conv3x3"
    with pytest.raises(InvalidArchitecture, match=r"genotype\.normal\.blocks\[0\]\.ops\[0\]"):
        space.encode(genotype)


@st.composite
def _space_and_tokens(draw: st.DrawFn) -> tuple[NasnetSpace, list[int]]:
    ops = draw(st.lists(st.sampled_from(NASNET_OPERATIONS), min_size=1, max_size=13, unique=True))
    combine = draw(st.sampled_from([["add"], ["concat"], ["add", "concat"]]))
    space = NasnetSpace({"blocks": draw(st.integers(1, 6)), "operations": ops, "combine": combine})
    return space, [draw(st.integers(0, s.num_values - 1)) for s in space.slots]


@settings(max_examples=60)
@given(_space_and_tokens())
def test_tokens_genotype_tokens_round_trip_through_json(case) -> None:
    space, tokens = case
    genotype = json.loads(json.dumps(space.decode(tokens)))
    assert space.encode(genotype) == tokens
    # the widest space with the same block count reads the genotype by operation name
    wide = NasnetSpace.for_genotype(genotype)
    assert wide.decode(wide.encode(genotype))["normal"] == genotype["normal"]
    for cell in ("normal", "reduction"):
        blocks = genotype[cell]["blocks"]
        read = {i for block in blocks for i in block["inputs"]}
        assert genotype[cell]["concat"] == [i for i in range(2, 2 + len(blocks)) if i not in read]
        assert genotype[cell]["concat"][-1] == 1 + len(blocks)  # the last block is always loose


def test_sampling_is_uniform_per_position_and_valid() -> None:
    space = NasnetSpace()
    samples = [space.sample(seed) for seed in range(200)]
    for tokens in samples:
        space.validate_tokens(tokens)
    firsts = {t[0] for t in samples}  # block 0, input 1: only h_{i-1} or h_i
    assert firsts == {0, 1}
    assert {t[2] for t in samples} == set(range(13))


# --- errors: one test per class, each names the position or field --------------------


def test_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidArchitecture, match="expected 50 tokens, got 49"):
        NasnetSpace().validate_tokens(NASNET_A_TOKENS[:-1])


def test_out_of_range_token_names_its_position() -> None:
    tokens = list(NASNET_A_TOKENS)
    tokens[5] = 3  # block 1 may read 0..2
    with pytest.raises(
        InvalidArchitecture, match=r"token 5 \(normal\.block1\.input1\) = 3 .*allowed 0\.\.2"
    ):
        NasnetSpace().validate_tokens(tokens)
    tokens = list(NASNET_A_TOKENS)
    tokens[27] = 13
    with pytest.raises(InvalidArchitecture, match=r"token 27 \(reduction\.block0\.op1\)"):
        NasnetSpace().validate_tokens(tokens)


def test_unknown_operation_name_lists_the_vocabulary() -> None:
    genotype = nasnet_a_genotype()
    genotype["reduction"]["blocks"][2]["ops"][1] = "conv9x9"
    with pytest.raises(
        InvalidArchitecture,
        match=r"genotype\.reduction\.blocks\[2\]\.ops\[1\] = 'conv9x9'.*sep_conv7x7",
    ):
        NasnetSpace().encode(genotype)


def test_unknown_combiner_is_refused() -> None:
    genotype = nasnet_a_genotype()
    genotype["normal"]["blocks"][1]["combine"] = "mul"
    with pytest.raises(InvalidArchitecture, match=r"normal\.blocks\[1\]\.combine = 'mul'.*add"):
        NasnetSpace().encode(genotype)


def test_bad_input_index_in_genotype_names_the_block() -> None:
    genotype = nasnet_a_genotype()
    genotype["normal"]["blocks"][2]["inputs"] = [0, 4]  # block 2 reads 0..3
    with pytest.raises(
        InvalidArchitecture, match=r"genotype\.normal\.blocks\[2\]\.inputs\[1\] = 4.*0\.\.3"
    ):
        NasnetSpace().encode(genotype)


@pytest.mark.parametrize(
    ("concat", "message"),
    [
        ([], "non-empty list"),
        ([2, 9], r"states \[9\] that do not exist; allowed 0\.\.6"),
        ([3, 3], "repeats a state"),
        ("2,3", "non-empty list"),
    ],
)
def test_bad_concat_is_refused(concat, message) -> None:
    genotype = nasnet_a_genotype()
    genotype["reduction"]["concat"] = concat
    with pytest.raises(InvalidArchitecture, match=rf"genotype\.reduction\.concat.*{message}"):
        NasnetSpace().encode(genotype)


def test_malformed_genotype_names_the_field() -> None:
    space = NasnetSpace()
    genotype = nasnet_a_genotype()
    genotype["normal"]["blocks"] = genotype["normal"]["blocks"][:4]
    with pytest.raises(InvalidArchitecture, match=r"genotype\.normal\.blocks must list 5 blocks"):
        space.encode(genotype)
    genotype = nasnet_a_genotype()
    genotype["normal"]["concats"] = [2]
    with pytest.raises(InvalidArchitecture, match=r"genotype\.normal has unknown field.*concats"):
        space.encode(genotype)
    genotype = copy.deepcopy(nasnet_a_genotype())
    genotype["space"] = "enas-micro"
    with pytest.raises(InvalidArchitecture, match="genotype.space must be 'nasnet'"):
        space.encode(genotype)


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="blockz"):
        NasnetSpace({"blockz": 5})
    with pytest.raises(ValidationError, match=r"operations[\s\S]*'conv9x9'.*allowed: identity"):
        NasnetSpace({"operations": ["conv3x3", "conv9x9"]})
    with pytest.raises(ValidationError, match="combine"):
        NasnetSpace({"combine": ["mul"]})
    with pytest.raises(ValidationError, match="blocks"):
        NasnetSpace({"blocks": 0})
