"""The custom space (``searchSpace.type: custom``): token layout, exact sizes counted by hand
and by brute force, token <-> genotype round trips, sampling, drawings, and a bad space
refused with the field named, through the spec a user writes."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller_policy.spaces import SPACES, Anchor, Choice, InvalidArchitecture, make_space
from controller_policy.spaces.custom import CustomSpace
from nas_operator import cli
from nas_operator.api import SpecError, parse_search
from nas_operator.local.genotype_graph import genotype_graphs, genotype_summary
from tests.support.custom_space import valid_token_lists

STAGES = {"name": "stage", "repeat": 3, "decisions": [
    {"name": "kernel", "choices": [3, 5, 7]},
    {"name": "width", "choices": [32, 64, 128]},
    {"name": "inputs", "inputs": {"maxInputs": 2}},
    {"name": "dilation", "choices": [1, 2], "when": {"kernel": [3]}},
]}
EXAMPLE = {"decisions": [
    {"name": "stem", "choices": [16, 24, 32]},
    {"name": "blocks", "range": {"low": 1, "high": 4, "step": 1}},
    STAGES,
]}
"""The agreed example: a categorical, a range, and a repeated block with input selection
and a condition."""


def space(decisions: list[dict[str, Any]]) -> CustomSpace:
    s = make_space("custom", {"decisions": decisions})
    assert isinstance(s, CustomSpace)
    return s


def test_registered_with_sane_defaults_and_no_builtin_trainer() -> None:
    assert SPACES["custom"] is CustomSpace
    assert CustomSpace.paper_strategy == "reinforce" and not CustomSpace.builtin_trainer
    search = parse_search({"metadata": {"name": "c"},
                           "spec": {"searchSpace": {"type": "custom", "options": EXAMPLE}}})
    assert search.spec.strategy.type == "reinforce" and search.spec.strategy.batchSize == 8
    assert search.spec.objective is not None and search.spec.objective.metric == "val_accuracy"


def test_token_layout_choices_then_one_skip_bit_per_earlier_repeat() -> None:
    s = make_space("custom", EXAMPLE)
    assert [slot.name for slot in s.slots] == [
        "stem", "blocks",
        "stage[0].kernel", "stage[0].width", "stage[0].dilation",
        "stage[1].kernel", "stage[1].width", "stage[1].inputs.from_0", "stage[1].dilation",
        "stage[2].kernel", "stage[2].width", "stage[2].inputs.from_0", "stage[2].inputs.from_1",
        "stage[2].dilation",
    ]
    assert [slot.num_values for slot in s.slots] == [3, 4, 3, 3, 2, 3, 3, 2, 2, 3, 3, 2, 2, 2]
    anchors = [step for step in s.steps if isinstance(step, Anchor)]
    assert [(a.name, a.sources) for a in anchors] == [
        ("stage[0].inputs", ()), ("stage[1].inputs", (0,)), ("stage[2].inputs", (0, 1))]
    kernels = [step for step in s.steps if isinstance(step, Choice) and step.name.endswith("kernel")]
    assert {k.group for k in kernels} == {"stage.kernel"}  # repeats share a controller head
    blocks = s.steps[1]
    assert isinstance(blocks, Choice) and blocks.values == (1, 2, 3, 4)


def test_size_of_the_example_by_hand_and_by_brute_force() -> None:
    s = make_space("custom", EXAMPLE)
    # Per repeat: kernel 3 with 2 dilations, or 5, or 7 (4 ways) x 3 widths x the input subsets
    # of r earlier repeats with at most 2 members (1, 2, 4); stem 3 x blocks 4 in front.
    by_hand = 3 * 4 * (4 * 3 * 1) * (4 * 3 * 2) * (4 * 3 * 4)
    assert s.size() == by_hand == 165_888


@pytest.mark.parametrize(("decisions", "size"), [
    # a condition on a top-level choice: x with 3 values of b, or y alone
    ([{"name": "a", "choices": ["x", "y"]},
      {"name": "b", "choices": [1, 2, 3], "when": {"a": ["x"]}}], 3 + 1),
    # a chain: c exists when b is 1, b when a is x
    ([{"name": "a", "choices": ["x", "y"]},
      {"name": "b", "choices": [1, 2, 3], "when": {"a": ["x"]}},
      {"name": "c", "choices": [True, False], "when": {"b": [1]}}], (2 + 2) + 1),
    # a block reading a top-level decision: on (2 x 2)^2, off 2^2
    ([{"name": "mode", "choices": ["on", "off"]},
      {"name": "s", "repeat": 2, "decisions": [
          {"name": "k", "choices": [1, 2]},
          {"name": "e", "choices": ["a", "b"], "when": {"mode": ["on"]}}]}], 16 + 4),
    # at most one input per repeat: 1 x 2 x 3 x 4 subsets
    ([{"name": "s", "repeat": 4, "decisions": [{"name": "in", "inputs": {"maxInputs": 1}}]}],
     24),
    # two conditions at once (both must hold), over a range
    ([{"name": "n", "range": {"low": 0, "high": 6, "step": 3}},
      {"name": "f", "choices": [0.5, 1.5]},
      {"name": "g", "choices": ["p", "q"], "when": {"n": [3, 6], "f": [0.5]}}],
     3 * 2 + 2 * 1 * 1),
    # a conditional input selection: 3 earlier repeats when wide, none otherwise
    ([{"name": "s", "repeat": 3, "decisions": [
        {"name": "wide", "choices": [True, False]},
        {"name": "in", "inputs": {}, "when": {"wide": [True]}}]}],
     (1 + 1) * (2 + 1) * (4 + 1)),
])
def test_sizes_counted_by_hand_match_brute_force(decisions: list[dict[str, Any]], size: int) -> None:
    s = space(decisions)
    assert s.size() == size
    members = valid_token_lists(s)
    assert len(members) == size
    genotypes = {json.dumps(s.decode(t), sort_keys=True) for t in members}
    assert len(genotypes) == size  # one genotype per token list, and back
    for t in members:
        assert s.encode(json.loads(json.dumps(s.decode(t)))) == t


def test_genotype_is_readable_with_absent_inactive_decisions() -> None:
    s = make_space("custom", EXAMPLE)
    genotype = {"space": "custom", "stem": 24, "blocks": 2, "stage": [
        {"kernel": 3, "width": 64, "inputs": [], "dilation": 1},
        {"kernel": 5, "width": 32, "inputs": [0]},
        {"kernel": 7, "width": 128, "inputs": [0, 1]},
    ]}
    tokens = s.encode(genotype)
    assert tokens == [1, 1, 0, 1, 0, 1, 0, 1, 0, 2, 2, 1, 1, 0]
    assert s.decode(tokens) == genotype
    assert list(s.decode(tokens)) == ["space", "stem", "blocks", "stage"]


@settings(max_examples=150)
@given(st.integers(0, 2**32 - 1))
def test_any_token_list_is_either_refused_or_round_trips_exactly(seed: int) -> None:
    s = make_space("custom", EXAMPLE)
    rng = random.Random(seed)
    tokens = [rng.randrange(slot.num_values) for slot in s.slots]
    try:
        genotype = s.decode(tokens)
    except InvalidArchitecture as exc:
        assert "token" in str(exc)
        return
    assert s.encode(json.loads(json.dumps(genotype))) == tokens


@settings(max_examples=100)
@given(st.integers(0, 2**32 - 1))
def test_samples_are_members_and_round_trip(seed: int) -> None:
    s = make_space("custom", EXAMPLE)
    tokens = s.sample(seed)
    genotype = s.decode(tokens)
    assert s.encode(genotype) == tokens
    for r, entry in enumerate(genotype["stage"]):
        assert ("dilation" in entry) == (entry["kernel"] == 3)
        assert entry["inputs"] == sorted(set(entry["inputs"])) and len(entry["inputs"]) <= 2
        assert all(0 <= j < r for j in entry["inputs"])


def test_sampling_covers_every_value_and_respects_max_inputs() -> None:
    s = space([{"name": "s", "repeat": 5, "decisions": [
        {"name": "k", "choices": [1, 2, 3]},
        {"name": "in", "inputs": {"maxInputs": 2}},
        {"name": "d", "choices": ["a", "b"], "when": {"k": [1]}}]}])
    rng = random.Random(0)
    seen_k, seen_d, sizes = set(), set(), set()
    for _ in range(600):
        g = s.decode(s.sample(rng))
        for entry in g["s"]:
            seen_k.add(entry["k"])
            seen_d.add(entry.get("d"))
            sizes.add(len(entry["in"]))
    assert seen_k == {1, 2, 3} and seen_d == {"a", "b", None} and sizes == {0, 1, 2}
    assert s.sample(7) == s.sample(7) and s.sample(7) != s.sample(8)


@pytest.mark.parametrize(("tokens", "message"), [
    ([0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0], "token 8 (stage[1].dilation) = 1, but "
     "stage[1].dilation exists only when kernel in [3]"),
    ([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0], None),  # two inputs are allowed
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0], "token 12 (stage[2].inputs.from_1) = 2"),
    ([0] * 13, "expected 14 tokens, got 13"),
])
def test_token_errors_name_the_position_and_the_decision(tokens: list[int], message: str | None
                                                          ) -> None:
    s = make_space("custom", EXAMPLE)
    if message is None:
        assert s.decode(tokens)["stage"][2]["inputs"] == [0, 1]
        return
    with pytest.raises(InvalidArchitecture, match=re.escape(message)):
        s.decode(tokens)


def test_more_inputs_than_max_inputs_is_refused() -> None:
    s = space([{"name": "s", "repeat": 3, "decisions": [{"name": "in", "inputs": {"maxInputs": 1}}]}])
    with pytest.raises(InvalidArchitecture, match=r"s\[2\].in\) select 2 inputs; maxInputs is 1"):
        s.decode([0, 1, 1])


def _genotype(**changes: Any) -> dict[str, Any]:
    g: dict[str, Any] = {"space": "custom", "stem": 24, "blocks": 2, "stage": [
        {"kernel": 3, "width": 64, "inputs": [], "dilation": 1},
        {"kernel": 5, "width": 32, "inputs": [0]},
        {"kernel": 7, "width": 128, "inputs": [0, 1]},
    ]}
    for key, value in changes.items():
        if key.startswith("stage"):
            r, field = int(key[5]), key[7:]
            if value is ...:
                del g["stage"][r][field]
            else:
                g["stage"][r][field] = value
        else:
            g[key] = value
    return g


@pytest.mark.parametrize(("genotype", "field"), [
    (_genotype(stem=25), r"genotype.stem = 25 is not allowed; allowed \[16, 24, 32\]"),
    (_genotype(stem=24.0), "genotype.stem = 24.0 is not allowed"),
    (_genotype(blocks=True), "genotype.blocks = True is not allowed"),
    (_genotype(depth=3), "genotype.depth: not a decision of this space"),
    (_genotype(stage1_dilation=2), r"genotype.stage\[1\].dilation: present, but 'dilation' "
     r"exists only when kernel in \[3\]"),
    (_genotype(stage0_dilation=...), r"genotype.stage\[0\].dilation: missing"),
    (_genotype(stage2_inputs=[1, 0]), "once, in increasing order"),
    (_genotype(stage1_inputs=[1]), r"genotype.stage\[1\].inputs = \[1\]: not all earlier repeats; "
     r"allowed 0..0"),
    (_genotype(stage0_inputs=[0]), "allowed none"),
    (_genotype(stage2_inputs="0,1"), "must be a list of earlier repeat numbers"),
    (_genotype(stage1_colour="red"), r"genotype.stage\[1\].colour: not a decision of block 'stage'"),
    ({"space": "custom", "stem": 24, "blocks": 2, "stage": []},
     "genotype.stage must be a list of 3 objects"),
    ({**_genotype(), "space": "nasnet"}, "genotype.space must be 'custom'"),
])
def test_genotype_errors_name_the_field(genotype: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArchitecture, match=field):
        make_space("custom", EXAMPLE).encode(genotype)


def test_a_genotype_is_drawn_with_its_skips() -> None:
    g = _genotype()
    (graph,) = genotype_graphs(g)
    labels = [n.label for n in graph.nodes]
    assert labels[1] == "stem=24\nblocks=2"
    assert labels[2:5] == ["stage[0]: kernel=3 width=64 dilation=1", "stage[1]: kernel=5 width=32",
                           "stage[2]: kernel=7 width=128"]
    assert ("stage0", "stage2", "inputs") in {(e.src, e.dst, e.label) for e in graph.edges}
    summary = genotype_summary(g)
    assert "stage[2]: kernel=7 width=128<-stage[1]+stage[0]/inputs" in summary


def with_stage(**inner: Any) -> dict[str, Any]:
    """The example with the block's first decision replaced by ``inner``."""
    block = {**STAGES, "decisions": [inner, *STAGES["decisions"][1:]]}
    return {"decisions": [*EXAMPLE["decisions"][:2], block]}


P = "spec.searchSpace.options.decisions"
BAD: list[tuple[dict[str, Any], str]] = [
    ({"decisions": []}, f"{P}: empty; list at least one decision"),
    ({"decisions": [{"name": "a", "choices": [1, 2]}, {"name": "a", "choices": [3, 4]}]},
     f"{P}[1].name: 'a' is used twice"),
    (with_stage(name="width", choices=[1, 2]), f"{P}[2].decisions[1].name: 'width' is used twice "
     "in block 'stage'"),
    ({"decisions": [{"name": "a", "choices": []}]}, f"{P}[0].choices: empty"),
    ({"decisions": [{"name": "a", "choices": [1, "1"]}]}, f"{P}[0].choices: mixes int, str"),
    ({"decisions": [{"name": "a", "choices": [1, 1.5]}]}, f"{P}[0].choices: mixes float, int"),
    ({"decisions": [{"name": "a", "choices": [True, 1]}]}, f"{P}[0].choices: mixes bool, int"),
    ({"decisions": [{"name": "a", "choices": [1, None]}]}, f"{P}[0].choices[1]: None is not a "
     "JSON scalar"),
    ({"decisions": [{"name": "a", "choices": [[1], [2]]}]}, f"{P}[0].choices[0]: [1] is not"),
    ({"decisions": [{"name": "a", "choices": [1, 2, 1]}]}, f"{P}[0].choices[2]: 1 is listed twice"),
    ({"decisions": [{"name": "a", "range": {"low": 5, "high": 1}}]},
     f"{P}[0].range.low: 5 is above high 1"),
    ({"decisions": [{"name": "a", "range": {"low": 1, "high": 5, "step": 0}}]},
     f"{P}[0].range.step: must be at least 1, got 0"),
    ({"decisions": [{"name": "a", "range": {"low": 0, "high": 10**6}}]},
     f"{P}[0].range: 1,000,001 values, more than the 1024"),
    ({"decisions": [{"name": "a", "choices": [1, 2], "range": {"low": 0, "high": 1}}]},
     f"{P}[0]: decision 'a' needs exactly one of choices, range, inputs or repeat"),
    ({"decisions": [{"name": "a"}]}, f"{P}[0]: decision 'a' needs exactly one"),
    ({"decisions": [{"name": "a", "choices": [1, 2], "colour": 3}]}, f"{P}[0].colour: Extra inputs"),
    ({"decisions": [{"name": "2x", "choices": [1, 2]}]}, f"{P}[0].name: '2x' must start with a"),
    ({"decisions": [{"name": "space", "choices": [1, 2]}]}, f"{P}[0].name: 'space' is reserved"),
    (with_stage(name="k", choices=[3], when={"kernal": [3]}), f"{P}[2].decisions[0].when.kernal: "
     "no earlier decision is named 'kernal'"),
    ({"decisions": [{"name": "a", "choices": [1, 2], "when": {"b": [1]}},
                    {"name": "b", "choices": [1, 2]}]},
     f"{P}[0].when.b: no earlier decision is named 'b'"),
    ({"decisions": [*EXAMPLE["decisions"], {"name": "z", "choices": [1, 2], "when": {"kernel": [3]}}]},
     f"{P}[3].when.kernel: no earlier decision is named 'kernel'"),
    ({"decisions": [{"name": "a", "choices": [1, 2]},
                    {"name": "b", "choices": [1, 2], "when": {"a": [3]}}]},
     f"{P}[1].when.a[0]: 3 is not a value of 'a'; its values are [1, 2]"),
    ({"decisions": [{"name": "a", "choices": [1, 2]},
                    {"name": "b", "choices": [1, 2], "when": {"a": [True]}}]},
     f"{P}[1].when.a[0]: True is not a value of 'a'"),
    ({"decisions": [{"name": "a", "choices": [1, 2]},
                    {"name": "b", "choices": [1, 2], "when": {"a": []}}]}, f"{P}[1].when.a: empty"),
    (with_stage(name="x", choices=[1, 2], when={"stage": [1]}), f"{P}[2].decisions[0].when.stage: "
     "no earlier decision is named 'stage'"),
    ({"decisions": [{"name": "s", "repeat": 2, "decisions": [
        {"name": "in", "inputs": {}}, {"name": "k", "choices": [1, 2], "when": {"in": [0]}}]}]},
     f"{P}[0].decisions[1].when.in: 'in' is an input selection"),
    ({"decisions": [{"name": "in", "inputs": {}}, {"name": "a", "choices": [1, 2]}]},
     f"{P}[0].inputs: input selection picks earlier repeats of a block"),
    ({"decisions": [{"name": "s", "repeat": 0, "decisions": [{"name": "a", "choices": [1, 2]}]}]},
     f"{P}[0].repeat: must be between 1 and 64, got 0"),
    ({"decisions": [{"name": "s", "repeat": 1000, "decisions": [{"name": "a", "choices": [1, 2]}]}]},
     f"{P}[0].repeat: must be between 1 and 64, got 1000"),
    ({"decisions": [{"name": "s", "repeat": 2}]}, f"{P}[0].decisions: decision 's': 'decisions' "
     "goes with 'repeat'"),
    ({"decisions": [{"name": "s", "repeat": 2, "decisions": [
        {"name": "t", "repeat": 2, "decisions": [{"name": "a", "choices": [1, 2]}]}]}]},
     f"{P}[0].decisions[0].repeat: repeated blocks do not nest"),
    ({"decisions": [{"name": "a", "choices": [1, 2]}, {"name": "s", "repeat": 2, "when": {"a": [1]},
                     "decisions": [{"name": "b", "choices": [1, 2]}]}]},
     f"{P}[1].when: a repeated block cannot be conditional"),
    ({"decisions": [{"name": "a", "choices": [7]}, {"name": "b", "range": {"low": 2, "high": 2}}]},
     f"{P}: the space holds a single architecture"),
    ({"decisions": [{"name": f"d{i}", "range": {"low": 0, "high": 1023}} for i in range(257)]},
     f"{P}: Tuple should have at most 256 items"),
    ({"decisions": [{"name": "s", "repeat": 64, "decisions": [
        {"name": f"a{i}", "range": {"low": 0, "high": 1023}} for i in range(40)]}]},
     f"{P}: the space holds about 10^7706 architectures, more than the 10^1000 allowed"),
    ({"decisions": [{"name": "s", "repeat": 64, "decisions": [
        {"name": f"a{i}", "choices": [1, 2]} for i in range(40)]
        + [{"name": "in", "inputs": {}}]}]},
     f"{P}: the expanded space has 4,576 token positions, more than the 4,096 allowed"),
    ({"decisions": [{"name": "s", "repeat": 8, "decisions": [
        {"name": "in", "inputs": {"maxInputs": 1}}]}]},
     f"{P}[0].decisions[0].inputs.maxInputs: independent skip bits meet every maxInputs in only "
     "0.02% of draws"),
    ({"decisions": [{"name": f"c{i}", "choices": list(range(20)),
                     **({"when": {f"c{i - 1}": list(range(1, 20))}} if i else {})}
                    for i in range(8)]},
     f"{P}: the conditions read so many decisions that counting the space takes more than "
     "200,000 steps"),
]


@pytest.mark.parametrize(("options", "error"), BAD, ids=[e[len(P):60] for _, e in BAD])
def test_bad_spaces_are_refused_with_the_field_named(options: dict[str, Any], error: str) -> None:
    doc = {"metadata": {"name": "c"}, "spec": {"searchSpace": {"type": "custom", "options": options}}}
    with pytest.raises(SpecError) as info:
        parse_search(doc)
    assert any(line.startswith(error) for line in info.value.errors), info.value.errors


@pytest.mark.parametrize("decisions", [
    [{"name": "a", "choices": [1, 2]}, {"name": "b", "choices": [1, 2], "when": {"a": [1]}}],
    [{"name": f"d{i}", "range": {"low": 0, "high": 1023}} for i in range(256)],  # ~10^770
    [{"name": "s", "repeat": 64, "decisions": [{"name": "in", "inputs": {}}]}],  # 2,016 bits
    [{"name": "s", "repeat": 6, "decisions": [{"name": "in", "inputs": {"maxInputs": 1}}]}],
])
def test_spaces_near_the_limits_are_accepted(decisions: list[dict[str, Any]]) -> None:
    doc = {"metadata": {"name": "c"}, "spec": {"searchSpace": {"type": "custom",
                                                               "options": {"decisions": decisions}}}}
    parse_search(doc)
    assert space(decisions).size() >= 3


def test_validate_refuses_a_custom_space_on_the_builtin_trainer(tmp_path, capsys) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch", "metadata": {"name": "mine"},
        "spec": {"searchSpace": {"type": "custom", "options": EXAMPLE}}}))
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "spec.searchSpace.type: 'custom' describes your own model family" in out
    out_dir = tmp_path / "run"
    assert cli.main(["run", str(path), "--out", str(out_dir)]) == 2
    assert "spec.searchSpace.type: 'custom'" in capsys.readouterr().out
