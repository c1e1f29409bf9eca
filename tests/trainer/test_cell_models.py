"""Cell networks of the nasnet and enas-micro spaces: published sizes, any input, drop path, aux."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from controller_policy.contract import ModelSpec
from controller_policy.spaces import InvalidArchitecture
from controller_policy.spaces.enas_micro import EnasMicroSpace
from controller_policy.spaces.nasnet import NasnetSpace
from nas_trainer.models import build_model
from nas_trainer.models.cells import CellNetwork, build_enas_micro, build_nasnet

NASNET_A = [
    int(t)
    for t in (
        "1,0,11,10,0,0,0,11,10,0,1,0,4,0,0,0,0,4,4,0,1,1,10,0,0,"
        "1,0,11,12,0,1,0,5,12,0,1,0,4,11,0,3,2,0,4,0,2,1,10,5,0"
    ).split(",")
]
ENAS_ARC = [
    int(t)
    for t in "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1".split()
]
CIFAR = (3, 32, 32)


def nasnet_a_genotype() -> dict:
    genotype = NasnetSpace().decode(NASNET_A)
    genotype["normal"]["concat"] = [0, 2, 3, 4, 5, 6]
    genotype["reduction"]["concat"] = [3, 4, 5, 6]
    return genotype


def test_nasnet_a_6_at_768_has_the_published_3_3m_parameters() -> None:
    """NASNet-A 6@768 on CIFAR-10: N = 6 cells per stage, F = 32 (stem 3 x 32 = 96).

    The last cell concatenates 6 states of 4 x 32 = 128 filters = 768 channels.
    Measured: 3,328,234 parameters without the auxiliary head (paper: 3.3M).
    """
    spec = ModelSpec(cellsPerStage=6, filters=32, stemMultiplier=3, auxiliaryHead=True)
    model = build_nasnet(nasnet_a_genotype(), spec=spec, input_shape=CIFAR, num_classes=10)
    assert len(model.cells) == 6 * 3 + 2
    assert model.cells[-1].out_channels == 768
    assert model.classifier.in_features == 768
    count = model.parameter_count()
    assert count == pytest.approx(3.3e6, rel=0.10)
    assert count == 3_328_234
    assert model.parameter_count(include_auxiliary=True) > count


def test_enas_micro_final_model_matches_the_published_4_6m_with_aux_head() -> None:
    """The published arc at N = 5 per stage, 36 channels (stem 108), aux head (docs/papers.md §7).

    Measured: 3,729,430 without and 4,205,856 with the auxiliary head. The paper
    says 4.6M; the reference code prints 3,894,372 for this model plus 494,848 for
    its aux head (4.39M), so the paper's figure matches neither exactly. Our count
    differs from the reference's by exactly two things, asserted below: its cells
    pass h_i through a second ReLU-1x1conv-BN ("layer_base" after "calibrate"),
    C*C + 2C parameters per cell, which we do not repeat; and our classifier has a
    bias (10 parameters). Its aux head reads the next cell (720 channels), ours the
    second reduction cell's output (576), as docs/papers.md §7 words it.
    """
    spec = ModelSpec(cellsPerStage=5, filters=36, stemMultiplier=3, auxiliaryHead=True)
    model = build_enas_micro(
        EnasMicroSpace().decode(ENAS_ARC), spec=spec, input_shape=CIFAR, num_classes=10
    )
    assert model.cells[-1].out_channels == 5 * 144
    total = model.parameter_count(include_auxiliary=True)
    assert total == pytest.approx(4.6e6, rel=0.10)
    assert total == 4_205_856
    without_aux = model.parameter_count()
    assert without_aux == 3_729_430
    second_h_i_conv = sum(cell.channels**2 + 2 * cell.channels for cell in model.cells)
    assert without_aux + second_h_i_conv - 10 == 3_894_372


def test_build_model_honours_nasnet_a_hand_listed_concat() -> None:
    """build_model keeps the genotype's concat when it encodes to the architecture's tokens."""
    architecture = {"space": "nasnet", "tokens": NASNET_A, "genotype": nasnet_a_genotype()}
    spec = ModelSpec(cellsPerStage=1, filters=4)
    model = build_model(architecture, spec, input_shape=(1, 8, 8), num_classes=3)
    normal, reduction = model.cells[0], model.cells[1]
    assert normal.layout.concat == (0, 2, 3, 4, 5, 6) and normal.out_channels == 6 * 4
    assert reduction.layout.concat == (3, 4, 5, 6) and reduction.out_channels == 4 * 8
    inferred = build_model(
        {"space": "nasnet", "tokens": NASNET_A, "genotype": {}}, spec, input_shape=(1, 8, 8),
        num_classes=3,
    )
    assert inferred.cells[0].out_channels == 5 * 4  # loose ends only
    assert inferred.cells[1].out_channels == 3 * 8


def test_builder_refuses_a_bad_genotype_by_field() -> None:
    genotype = nasnet_a_genotype()
    genotype["normal"]["blocks"][0]["inputs"] = [0, 5]
    with pytest.raises(InvalidArchitecture, match=r"genotype\.normal\.blocks\[0\]\.inputs\[1\]"):
        build_nasnet(genotype, spec=ModelSpec(), input_shape=(1, 8, 8), num_classes=3)


def _train_step(model: CellNetwork, shape: tuple[int, int, int], classes: int) -> torch.Tensor:
    """One forward + backward on 2 images; returns the main logits."""
    torch.manual_seed(0)
    x = torch.randn(2, *shape)
    out = model(x)
    logits, aux = out if isinstance(out, tuple) else (out, None)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, classes - 1]))
    if aux is not None:
        assert aux.shape == (2, classes)
        loss = loss + 0.4 * torch.nn.functional.cross_entropy(aux, torch.tensor([0, 1]))
    loss.backward()
    stem_grad = model.stem[0].weight.grad
    assert stem_grad is not None and torch.isfinite(stem_grad).all() and stem_grad.abs().sum() > 0
    return logits


_SHAPES = st.sampled_from([(3, 8, 8), (1, 8, 8), (3, 7, 9), (1, 16, 12)])


@settings(max_examples=12)
@given(
    tokens_seed=st.integers(0, 2**31),
    blocks=st.integers(1, 5),
    combine=st.sampled_from([["add"], ["add", "concat"]]),
    filters=st.integers(4, 8),
    shape=_SHAPES,
    aux=st.booleans(),
)
def test_random_nasnet_cells_round_trip_build_and_train(
    tokens_seed, blocks, combine, filters, shape, aux
) -> None:
    space = NasnetSpace({"blocks": blocks, "combine": combine})
    tokens = space.sample(tokens_seed)
    genotype = space.decode(tokens)
    assert space.encode(genotype) == tokens
    spec = ModelSpec(cellsPerStage=1, filters=filters, auxiliaryHead=aux, dropout=0.1)
    model = build_nasnet(genotype, spec=spec, input_shape=shape, num_classes=5)
    model.drop_path_prob = 0.2
    model.train()
    assert _train_step(model, shape, 5).shape == (2, 5)
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 5)


@settings(max_examples=12)
@given(
    tokens_seed=st.integers(0, 2**31),
    nodes=st.integers(1, 5),
    filters=st.integers(4, 8),
    shape=_SHAPES,
    aux=st.booleans(),
)
def test_random_enas_micro_cells_round_trip_build_and_train(
    tokens_seed, nodes, filters, shape, aux
) -> None:
    space = EnasMicroSpace({"nodes": nodes})
    tokens = space.sample(tokens_seed)
    genotype = space.decode(tokens)
    assert space.encode(genotype) == tokens
    spec = ModelSpec(cellsPerStage=1, filters=filters, auxiliaryHead=aux)
    model = build_enas_micro(genotype, spec=spec, input_shape=shape, num_classes=4)
    model.drop_path_prob = 0.2
    model.train()
    assert _train_step(model, shape, 4).shape == (2, 4)


def test_unread_inputs_of_a_reduction_cell_are_reduced_into_the_concat() -> None:
    space = EnasMicroSpace({"nodes": 1})
    # both cells: node 0 = sep3(h_i) + max3(h_i); h_{i-1} (state 0) is a loose end
    genotype = space.decode([1, 0, 1, 3] * 2)
    assert genotype["reduction"]["concat"] == [0, 2]
    model = build_enas_micro(
        genotype, spec=ModelSpec(cellsPerStage=1, filters=4), input_shape=(1, 8, 8), num_classes=2
    )
    reduction = model.cells[1]
    assert reduction.out_channels == 2 * 8
    out = reduction(torch.randn(2, 12, 8, 8), torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 16, 4, 4)


def test_concat_combine_doubles_the_block_width() -> None:
    space = NasnetSpace({"blocks": 2})
    # block 0 = concat(conv3x3(h_{i-1}), identity(h_i)); block 1 = add(identity(block0), avg(h_i))
    block0 = [0, 1, 9, 0, 1]
    block1 = [2, 1, 0, 4, 0]
    genotype = space.decode(block0 + block1 + block0 + block1)
    model = build_nasnet(
        genotype, spec=ModelSpec(cellsPerStage=1, filters=4), input_shape=(1, 8, 8), num_classes=2
    )
    assert model.cells[0].out_channels == 4  # only block 1 is a loose end, width C
    genotype["normal"]["concat"] = [2, 3]
    model = build_nasnet(
        genotype, spec=ModelSpec(cellsPerStage=1, filters=4), input_shape=(1, 8, 8), num_classes=2
    )
    assert model.cells[0].out_channels == 2 * 4 + 4
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 2)


def _one_block_net(op: str) -> CellNetwork:
    space = NasnetSpace({"blocks": 1, "combine": ["add"]})
    ops = space.vocabulary
    tokens = [0, 1, ops.index(op), ops.index(op), 0] * 2
    return build_nasnet(
        space.decode(tokens),
        spec=ModelSpec(cellsPerStage=1, filters=4),
        input_shape=(1, 8, 8),
        num_classes=3,
    )


def test_scheduled_drop_path_drops_whole_non_identity_paths_in_training_only() -> None:
    torch.manual_seed(0)
    s0, s1 = torch.randn(8, 12, 8, 8), torch.randn(8, 12, 8, 8)
    cell = _one_block_net("sep_conv3x3").cells[0]  # block 0 = sep3(h_{i-1}) + sep3(h_i)
    cell.train()
    assert torch.equal(cell(s0, s1, 0.0), cell(s0, s1, 0.0))
    torch.manual_seed(1)
    first, second = cell(s0, s1, 0.5), cell(s0, s1, 0.5)
    assert not torch.equal(first, second)
    # a path is dropped per example: where both paths drop, the example's output is all zero
    zeroed = (first.flatten(1) == 0).all(dim=1)
    assert 0 < int(zeroed.sum()) < 8
    cell.eval()
    assert torch.equal(cell(s0, s1, 0.5), cell(s0, s1, 0.0))

    identities = _one_block_net("identity").cells[0]
    identities.train()
    torch.manual_seed(1)
    kept = identities(s0, s1, 0.9)
    assert torch.equal(kept, identities.pre0(s0) + identities.pre1(s1))


def test_network_passes_its_drop_path_prob_to_every_cell() -> None:
    model = _one_block_net("sep_conv3x3")
    seen: list[float] = []
    for cell in model.cells:
        cell.register_forward_hook(lambda _m, args, _out: seen.append(args[2]))
    model.drop_path_prob = 0.3
    model(torch.randn(2, 1, 8, 8))
    assert seen == [0.3, 0.3, 0.3, 0.3, 0.3]


def test_auxiliary_logits_only_in_training_mode() -> None:
    model = build_enas_micro(
        EnasMicroSpace().decode(ENAS_ARC),
        spec=ModelSpec(cellsPerStage=1, filters=4, auxiliaryHead=True),
        input_shape=(3, 32, 32),
        num_classes=10,
    )
    x = torch.randn(2, 3, 32, 32)
    model.train()
    logits, aux = model(x)
    assert logits.shape == aux.shape == (2, 10)
    model.eval()
    assert model(x).shape == (2, 10)
