"""The Zoph & Le base-8 recurrent-cell space (docs/papers.md §2, §5, §6)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller_policy.spaces import SPACES, InvalidArchitecture
from controller_policy.spaces.zoph_le_rnn import NASCELL_TOKENS, ZophLeRnnSpace

SPACE = ZophLeRnnSpace()


def test_registered_as_language_space_with_34_tokens() -> None:
    assert SPACES["zoph-le-rnn"] is ZophLeRnnSpace
    assert SPACE.kind == "language"
    assert SPACE.num_tokens == 34
    names = [slot.name for slot in SPACE.slots]
    assert names[:2] == ["node0.combination", "node0.activation"]
    assert names[28:30] == ["node14.combination", "node14.activation"]
    assert names[30:] == [
        "inject.combination",
        "inject.activation",
        "cell.source",
        "cell.inject_into",
    ]
    assert [slot.num_values for slot in SPACE.slots[30:]] == [2, 4, 15, 15]


def test_size_is_exactly_8_to_the_16_times_15_squared() -> None:
    """docs/papers.md §6: 8^16 * 15^2 = 6.3e16, the paper's 'about 6e16'."""
    assert SPACE.size() == 8**16 * 15**2 == 63_331_869_759_897_600


def test_nascell_fixture_decodes_to_tensorflows_nascell() -> None:
    genotype = SPACE.decode(list(NASCELL_TOKENS))
    assert genotype["space"] == "zoph-le-rnn"
    assert genotype["vocabulary"] == {
        "combination": ["add", "mult"],
        "activation": ["identity", "tanh", "sigmoid", "relu"],
    }
    by_node = {n["node"]: (n["combination"], n["activation"]) for n in genotype["nodes"]}
    # TF NASCell: layer1_3 = relu(x3 * m3); l2_3 = sigmoid(l1_6 + l1_7);
    # l3_0 = l2_0 * l2_1 (no activation); new_m = tanh(l3_0 * l3_1).
    assert by_node[3] == ("mult", "relu")
    assert by_node[11] == ("add", "sigmoid")
    assert by_node[12] == ("mult", "identity")
    assert by_node[14] == ("mult", "tanh")
    assert genotype["nodes"][12]["inputs"] == [8, 9]
    assert genotype["nodes"][0]["inputs"] == ["x", "h"]
    assert genotype["output"] == 14
    # new_c = l3_0's pre-activation; l2_0 = tanh(l2_0 + c_prev).
    assert genotype["memory"] == {
        "combination": "add",
        "activation": "tanh",
        "source": 12,
        "injectInto": 8,
    }
    assert SPACE.encode(genotype) == list(NASCELL_TOKENS)


@settings(max_examples=40)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_random_tokens_round_trip_through_json_genotype(seed: int) -> None:
    tokens = SPACE.sample(seed)
    genotype = json.loads(json.dumps(SPACE.decode(tokens)))
    assert SPACE.encode(genotype) == tokens
    assert SPACE.architecture(tokens).genotype == genotype


def test_wrong_length_is_rejected() -> None:
    with pytest.raises(InvalidArchitecture, match="expected 34 tokens, got 33"):
        SPACE.validate_tokens(list(NASCELL_TOKENS)[:-1])


def test_out_of_range_token_names_position_and_range() -> None:
    tokens = list(NASCELL_TOKENS)
    tokens[33] = 15
    with pytest.raises(InvalidArchitecture, match=r"token 33 \(cell.inject_into\) = 15 .*0\.\.14"):
        SPACE.validate_tokens(tokens)
    tokens = list(NASCELL_TOKENS)
    tokens[5] = 4
    with pytest.raises(InvalidArchitecture, match=r"token 5 \(node2.activation\) = 4 .*0\.\.3"):
        SPACE.validate_tokens(tokens)


def test_unknown_activation_or_combination_names_the_genotype_field() -> None:
    genotype = SPACE.decode(list(NASCELL_TOKENS))
    bad = copy.deepcopy(genotype)
    bad["nodes"][3]["activation"] = "gelu"
    with pytest.raises(InvalidArchitecture, match=r"genotype.nodes\[3\].activation = 'gelu'.*relu"):
        SPACE.encode(bad)
    bad = copy.deepcopy(genotype)
    bad["memory"]["combination"] = "concat"
    with pytest.raises(InvalidArchitecture, match=r"genotype.memory.combination.*add, mult"):
        SPACE.encode(bad)


def test_bad_cell_index_or_tree_shape_names_the_genotype_field() -> None:
    genotype = SPACE.decode(list(NASCELL_TOKENS))
    bad = copy.deepcopy(genotype)
    bad["memory"]["source"] = 15
    with pytest.raises(InvalidArchitecture, match=r"genotype.memory.source = 15.*0\.\.14"):
        SPACE.encode(bad)
    bad = copy.deepcopy(genotype)
    bad["nodes"][9]["inputs"] = [1, 2]
    with pytest.raises(InvalidArchitecture, match=r"genotype.nodes\[9\].inputs.*\[2, 3\]"):
        SPACE.encode(bad)
    bad = copy.deepcopy(genotype)
    del bad["nodes"][14]
    with pytest.raises(InvalidArchitecture, match=r"genotype.nodes must be a list of 15.*14"):
        SPACE.encode(bad)


def test_unknown_option_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="base"):
        ZophLeRnnSpace({"base": 4})
