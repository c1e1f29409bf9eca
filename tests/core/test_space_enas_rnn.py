"""The ENAS RNN cell space (docs/papers.md §4, §5, §6, §7)."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller_policy.spaces import SPACES, InvalidArchitecture
from controller_policy.spaces.base import SearchSpace
from controller_policy.spaces.enas_rnn import ENAS_LM_FIXTURE, EnasRnnSpace, from_enas_lm

SPACE = EnasRnnSpace()


def test_default_space_has_23_tokens_with_growing_input_choices() -> None:
    assert SPACES["enas-rnn"] is EnasRnnSpace
    assert SPACE.kind == "language"
    assert SPACE.num_tokens == 23
    assert SPACE.slots[0].name == "node1.activation"
    assert (SPACE.slots[1].name, SPACE.slots[1].num_values) == ("node2.input", 1)
    assert (SPACE.slots[21].name, SPACE.slots[21].num_values) == ("node12.input", 11)
    assert all(slot.num_values == 4 for slot in SPACE.slots if slot.name.endswith("activation"))


def test_size_is_exactly_4_to_the_12_times_11_factorial() -> None:
    """The paper's 4^N * N! = 8.0e15 ("about 10^15") overcounts by N = 12.

    Node 1 has no input choice and node l chooses among l-1 earlier nodes, so the
    exact count of ordered token lists is 4^N (N-1)! = 6.7e14 (docs/papers.md §6).
    """
    assert SPACE.size() == 4**12 * math.factorial(11) == 669_692_775_628_800
    assert 4**12 * math.factorial(12) // SPACE.size() == 12
    for nodes in (2, 5, 9):
        space = EnasRnnSpace({"nodes": nodes})
        # the closed form agrees with the product over slots
        assert space.size() == SearchSpace.size(space) == 4**nodes * math.factorial(nodes - 1)


def test_genotype_names_vocabulary_and_loose_ends() -> None:
    chain = [0] + [t for node in range(2, 13) for t in (node - 2, 1)]  # l reads l-1, relu
    genotype = SPACE.decode(chain)
    assert genotype["vocabulary"] == {"activation": ["tanh", "relu", "identity", "sigmoid"]}
    assert genotype["nodes"][0] == {"node": 1, "input": ["x", "h"], "activation": "tanh"}
    assert genotype["nodes"][11] == {"node": 12, "input": 11, "activation": "relu"}
    assert genotype["output"] == "loose-ends"
    assert genotype["averaged"] == [12]
    star = [3] + [t for _ in range(2, 13) for t in (0, 2)]  # every node reads node 1
    assert SPACE.decode(star)["averaged"] == list(range(2, 13))
    assert SPACE.decode(star)["nodes"][5]["activation"] == "identity"
    all_nodes = EnasRnnSpace({"output": "all-nodes"})
    assert all_nodes.decode(chain)["averaged"] == list(range(2, 13))


@settings(max_examples=40)
@given(
    st.integers(min_value=2, max_value=12),
    st.sampled_from(["loose-ends", "all-nodes"]),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_random_tokens_round_trip_through_json_genotype(nodes: int, output: str, seed: int) -> None:
    space = EnasRnnSpace({"nodes": nodes, "output": output})
    tokens = space.sample(seed)
    assert len(tokens) == 2 * nodes - 1
    genotype = json.loads(json.dumps(space.decode(tokens)))
    assert space.encode(genotype) == tokens
    averaged = genotype["averaged"]
    assert nodes in averaged  # the last node is always used for h_t
    if output == "loose-ends":
        read = {n["input"] for n in genotype["nodes"][1:]}
        assert set(averaged) == set(range(1, nodes + 1)) - read


def test_enas_lm_fixture_converts_to_a_9_node_cell() -> None:
    """enas_lm's published arc: its input node + 8 searched nodes = our N = 9.

    enas_lm acts are tanh, relu, sigmoid, identity; ours tanh, relu, identity,
    sigmoid, so its 2 (sigmoid) becomes our 3 and its 3 would become our 2.
    """
    space, tokens = from_enas_lm("0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2")
    assert space.options.nodes == 9
    assert space.options.output == "all-nodes"
    assert tokens == [0, 0, 3, 1, 0, 2, 1, 2, 3, 4, 0, 5, 0, 3, 3, 6, 3]
    assert from_enas_lm(ENAS_LM_FIXTURE)[1] == tokens  # a list of ints works like the string
    genotype = space.decode(tokens)
    readable = [(n["node"], n["input"], n["activation"]) for n in genotype["nodes"][1:]]
    assert readable == [
        (2, 1, "sigmoid"),
        (3, 2, "tanh"),
        (4, 3, "relu"),
        (5, 3, "sigmoid"),
        (6, 5, "tanh"),
        (7, 6, "tanh"),
        (8, 4, "sigmoid"),
        (9, 7, "sigmoid"),
    ]
    assert genotype["averaged"] == list(range(2, 10))
    _, paper_tokens = from_enas_lm(ENAS_LM_FIXTURE, output="loose-ends")
    loose = EnasRnnSpace({"nodes": 9}).decode(paper_tokens)["averaged"]
    assert loose == [8, 9]


def test_enas_lm_converter_rejects_bad_arcs_by_position() -> None:
    with pytest.raises(InvalidArchitecture, match="pairs, got 3 numbers"):
        from_enas_lm([0, 1, 0])
    with pytest.raises(
        InvalidArchitecture, match=r"position 4 \(pair 2 prev\) = 3; allowed 0\.\.2"
    ):
        from_enas_lm("0 0 1 0 3 0")
    with pytest.raises(InvalidArchitecture, match=r"position 1 \(pair 0 act\) = 4"):
        from_enas_lm("0 4")


def test_wrong_length_is_rejected() -> None:
    with pytest.raises(InvalidArchitecture, match="expected 23 tokens, got 21"):
        SPACE.validate_tokens([0] * 21)


def test_input_not_earlier_than_the_node_names_the_position() -> None:
    tokens = [0] * 23
    tokens[5] = 3  # node4.input: earlier nodes 1..3 are tokens 0..2
    with pytest.raises(InvalidArchitecture, match=r"token 5 \(node4.input\) = 3 .*0\.\.2"):
        SPACE.validate_tokens(tokens)
    genotype = SPACE.decode([0] * 23)
    genotype["nodes"][3]["input"] = 4
    with pytest.raises(
        InvalidArchitecture, match=r"genotype.nodes\[3\].input = 4 .*earlier node 1\.\.3"
    ):
        SPACE.encode(genotype)


def test_unknown_activation_names_the_genotype_field() -> None:
    genotype = SPACE.decode([0] * 23)
    genotype["nodes"][6]["activation"] = "elu"
    with pytest.raises(
        InvalidArchitecture, match=r"genotype.nodes\[6\].activation = 'elu'.*sigmoid"
    ):
        SPACE.encode(genotype)


def test_genotype_that_contradicts_the_options_is_rejected() -> None:
    genotype = SPACE.decode([0] * 23)
    bad = copy.deepcopy(genotype)
    bad["output"] = "all-nodes"
    with pytest.raises(InvalidArchitecture, match="genotype.output = 'all-nodes'"):
        SPACE.encode(bad)
    bad = copy.deepcopy(genotype)
    bad["averaged"] = [1, 12]
    with pytest.raises(
        InvalidArchitecture, match=r"genotype.averaged = \[1, 12\] contradicts.*it is \[2, 3, "
    ):
        SPACE.encode(bad)
    with pytest.raises(InvalidArchitecture, match="list of 9 nodes"):
        EnasRnnSpace({"nodes": 9}).encode(genotype)


def test_unknown_or_invalid_option_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="cells"):
        EnasRnnSpace({"cells": 5})
    with pytest.raises(ValidationError, match="output"):
        EnasRnnSpace({"output": "last"})
    with pytest.raises(ValidationError, match="nodes"):
        EnasRnnSpace({"nodes": 1})
