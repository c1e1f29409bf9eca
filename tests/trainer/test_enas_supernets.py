"""ENAS supernets: weights are really shared, and a child touches only its own weights.

Each test builds a tiny supernet and checks what a user of weight sharing relies
on: two children that share an edge reach the *same* parameter tensor, a
child's backward pass leaves every weight it does not use without a gradient,
and (for the RNN, whose search cell equals the fixed cell) the supernet computes
exactly the fixed child network.
"""

from __future__ import annotations

import pytest
import torch

from controller_policy.contract import ModelSpec
from controller_policy.spaces import InvalidArchitecture, make_space
from controller_policy.spaces.enas_micro import ENAS_MICRO_OPERATIONS
from nas_trainer.enas.supernet_macro import MacroSupernet
from nas_trainer.enas.supernet_micro import MicroSupernet
from nas_trainer.enas.supernet_rnn import RnnSupernet, edge_key
from nas_trainer.models import build_model

IMAGES = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def grads_after(model: torch.nn.Module, loss: torch.Tensor) -> set[int]:
    """ids of the parameters that received a gradient from ``loss``."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {id(p) for p in model.parameters() if p.grad is not None}


def param_ids(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def micro_tokens(node0: tuple[int, int, int, int], rest: list[int]) -> list[int]:
    """nodes=2 tokens: normal node 0 = ``node0`` (idx1, op1, idx2, op2), then ``rest`` (12 tokens)."""
    return list(node0) + rest


# --- micro --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro() -> MicroSupernet:
    torch.manual_seed(0)
    space = make_space("enas-micro", {"nodes": 2})
    return MicroSupernet(space, input_shape=(1, 8, 8), num_classes=10, filters=4, cells_per_stage=1)


SEP3, SEP5, AVG, MAX, IDENTITY = range(5)


def test_micro_children_sharing_an_edge_share_its_weights(micro: MicroSupernet) -> None:
    # Both children apply sep_conv3x3 to the previous cell (input 1) in slot 0 of
    # normal node 0; everything else differs.
    a = micro_tokens((1, SEP3, 0, AVG), [2, SEP5, 1, MAX] + [0, MAX, 1, AVG, 2, IDENTITY, 0, SEP5])
    b = micro_tokens((1, SEP3, 1, IDENTITY), [0, MAX, 2, AVG] + [1, SEP3, 0, SEP3, 1, AVG, 2, MAX])
    first_normal = micro.cells[0]
    shared_edge = first_normal.edges[0][0][1].ops["sep_conv3x3"]
    got_a = grads_after(micro, micro(IMAGES, a).sum())
    got_b = grads_after(micro, micro(IMAGES, b).sum())
    assert param_ids(shared_edge) <= got_a & got_b
    # a's second node uses sep_conv5x5 on node 0's output (input 2) in slot 0; b never does
    only_a = first_normal.edges[1][0][2].ops["sep_conv5x5"]
    assert param_ids(only_a) <= got_a
    assert not param_ids(only_a) & got_b


def test_micro_child_gets_gradients_only_on_its_operations(micro: MicroSupernet) -> None:
    tokens = micro_tokens((0, SEP5, 1, SEP3), [2, SEP3, 2, SEP5] + [1, SEP3, 0, SEP5, 2, SEP3, 1, SEP5])
    got = grads_after(micro, torch.nn.functional.cross_entropy(micro(IMAGES, tokens), torch.arange(6)))
    layouts = micro.space.layouts(tokens)
    for cell, reduction in zip(micro.cells, micro.is_reduction, strict=True):
        layout = layouts["reduction" if reduction else "normal"]
        used = {
            (n, slot, idx, op)
            for n, node in enumerate(layout.nodes)
            for slot, (idx, op) in enumerate(zip(node.inputs, node.ops, strict=True))
        }
        for n, per_slot in enumerate(cell.edges):
            for slot, per_input in enumerate(per_slot):
                for idx, edge in enumerate(per_input):
                    for op in ("sep_conv3x3", "sep_conv5x5"):
                        ids = param_ids(edge.ops[op])
                        if (n, slot, idx, op) in used:
                            assert ids <= got, (n, slot, idx, op)
                        else:
                            assert not ids & got, (n, slot, idx, op)


def test_micro_weights_exist_per_node_slot_input_and_operation(micro: MicroSupernet) -> None:
    cell = micro.cells[0]
    assert [len(per_slot) for per_slot in cell.edges] == [2, 2]
    assert [len(cell.edges[n][0]) for n in range(2)] == [2, 3]  # node n reads 2 + n states
    assert set(cell.edges[1][1][2].ops) == set(ENAS_MICRO_OPERATIONS)
    w0 = cell.edges[0][0][1].ops["sep_conv3x3"]
    w1 = cell.edges[0][1][1].ops["sep_conv3x3"]
    assert w0 is not w1  # the two input slots of a node do not share weights
    assert micro(IMAGES, micro.space.sample(3)).shape == (6, 10)


def test_micro_search_reduction_is_factorized_reduce_plus_stride_one_cell(micro: MicroSupernet) -> None:
    assert micro.is_reduction == [False, True, False, True, False]
    layouts = micro.space.layouts(micro.space.sample(5))
    stem = micro.stem(IMAGES)
    x = micro.cells[0](stem, stem, layouts["normal"])
    assert x.shape[1:] == (4, 8, 8)
    reduced = micro.reducers["1"](x)
    assert reduced.shape[1:] == (8, 4, 4)  # half the size, twice the channels
    out = micro.cells[1](x, reduced, layouts["reduction"])
    assert out.shape == reduced.shape


def test_supernet_rejects_tokens_outside_its_space(micro: MicroSupernet) -> None:
    with pytest.raises(InvalidArchitecture, match="token 0"):
        micro(IMAGES, [7] + [0] * 15)


# --- macro --------------------------------------------------------------------------------------
def test_macro_weights_are_per_layer_and_operation() -> None:
    torch.manual_seed(0)
    space = make_space("enas-macro", {"layers": 3})
    net = MacroSupernet(space, input_shape=(1, 8, 8), num_classes=10, filters=4)
    # layer ops: conv3x3, avg_pool3x3, sep_conv5x5; layer 2 skips to the stem (node 0)
    a = [0, 4, 0, 3, 1, 0]
    b = [0, 2, 1, 1, 0, 0]  # conv3x3, conv5x5 (skip stem), sep_conv3x3
    got_a = grads_after(net, net(IMAGES, a).sum())
    got_b = grads_after(net, net(IMAGES, b).sum())
    shared = net.branches[0]["conv3x3"]
    assert param_ids(shared) <= got_a & got_b
    assert param_ids(net.branches[2]["sep_conv5x5"]) <= got_a - got_b
    assert not param_ids(net.branches[1]["max_pool3x3"]) & (got_a | got_b)
    # with L=3, nodes are reduced after layers 0 and 1; a reads only what layer 2 needs
    assert net.reduce_after == (0, 1)
    used_reducers = {i for i, r in enumerate(net.reducers["1"]) if param_ids(r) <= got_a}
    assert used_reducers == {0, 2}  # the stem (skip of layer 2) and layer 1 (its input)


# --- rnn ------------------------------------------------------------------------------------------
def test_rnn_supernet_computes_the_fixed_child_with_the_same_weights() -> None:
    torch.manual_seed(0)
    space = make_space("enas-rnn", {"nodes": 4})
    spec = ModelSpec(embeddingSize=8, hiddenSize=8)
    supernet = RnnSupernet(space, vocab_size=30, spec=spec).eval()
    tokens = [1, 0, 3, 0, 2, 1, 0]  # node2<-1 sigmoid, node3<-1 identity, node4<-2 tanh
    genotype = space.to_genotype(tokens)
    fixed = build_model(
        space.architecture(tokens), spec, vocab_size=30, space_options={"nodes": 4}
    ).eval()
    cell = fixed.cells[0]
    with torch.no_grad():
        fixed.embedding.weight.copy_(supernet.lm.embedding.weight)
        fixed.decoder.bias.copy_(supernet.lm.decoder.bias)
        cell.w_x.weight.copy_(supernet.cell.w_x.weight)
        cell.w_h.weight.copy_(supernet.cell.w_h.weight)
        for w, node in zip(cell.w_nodes, genotype["nodes"][1:], strict=True):
            w.weight.copy_(supernet.cell.edges[edge_key(node["node"], node["input"])].weight)
    x = torch.randint(0, 30, (3, 5), generator=torch.Generator().manual_seed(1))
    got, (h_got,) = supernet(x, tokens)
    want, (h_want,) = fixed(x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(h_got, h_want)


def test_rnn_child_gets_gradients_only_on_its_edges() -> None:
    torch.manual_seed(0)
    space = make_space("enas-rnn", {"nodes": 4})
    supernet = RnnSupernet(space, vocab_size=30, spec=ModelSpec(embeddingSize=8, hiddenSize=8))
    x = torch.randint(0, 30, (3, 5), generator=torch.Generator().manual_seed(1))
    a = [0, 0, 1, 1, 2, 0, 3]  # node2<-1, node3<-2, node4<-1
    b = [0, 0, 0, 0, 1, 2, 2]  # node2<-1, node3<-1, node4<-3
    logits, _ = supernet(x, a)
    got_a = grads_after(supernet, logits.sum())
    logits, _ = supernet(x, b)
    got_b = grads_after(supernet, logits.sum())
    edges = supernet.cell.edges
    assert id(edges["2_1"].weight) in got_a & got_b  # both read node 1 at node 2: one W_{2,1}
    assert id(edges["3_2"].weight) in got_a - got_b
    assert id(edges["4_3"].weight) in got_b - got_a
    assert id(edges["4_2"].weight) not in got_a | got_b
