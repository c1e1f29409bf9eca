"""The zoph-le-cnn supernet computes the trainer's own child, and a step moves only that child's weights.

The child of a token list is ``models.cnn_zoph_le.ZophLeCNN``; the supernet must
compute the same function from its shared blocks (checked by copying the
blocks into a standalone child and comparing outputs, BN on batch statistics),
wire the sub-graph the tokens describe (conv and classifier shapes follow the
skip bit), and leave every block a child does not read untouched by a step.
"""

from __future__ import annotations

import random

import pytest
import torch

from controller_policy.spaces import make_space
from nas_trainer.enas.supernet_zoph_cnn import ZophCnnSupernet, block_key, kernel_key
from nas_trainer.runtime import ConfigError

TABLE_SPACE = {"layers": 2, "filterChoices": [16]}
IMAGES = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(8) % 10


def supernet(options: dict[str, object], init: str = "he") -> ZophCnnSupernet:
    torch.manual_seed(0)
    return ZophCnnSupernet(make_space("zoph-le-cnn", options), input_shape=(1, 12, 12), num_classes=10,
                           init=init)


@pytest.mark.parametrize("options", [TABLE_SPACE, {"layers": 3, "filterChoices": [4, 8], "predictStrides": True}])
def test_supernet_equals_the_standalone_child_with_its_weights(options: dict[str, object]) -> None:
    net = supernet(options)
    rng = random.Random(0)
    for _ in range(12):
        tokens = [rng.randrange(s.num_values) for s in net.space.slots]
        child = net.child_model(tokens).train()  # batch statistics, as the supernet's BN
        torch.testing.assert_close(child(IMAGES), net(IMAGES, tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("skip", "layer2_in", "head_in"), [(0, 1, 32), (1, 16, 16)])
def test_tokens_wire_the_sub_graph(skip: int, layer2_in: int, head_in: int) -> None:
    # tokens per layer: fh, fw, filters (one choice), then layer 2's skip bit
    net = supernet(TABLE_SPACE)
    tokens = [1, 3, 0, 2, 0, 0, skip]  # layer 1: 3x7; layer 2: 5x1
    layers = net.space.to_genotype(tokens)["layers"]
    assert net.conv_weight(1, layers[0], [16, 16]).shape == (16, 1, 3, 7)
    assert net.conv_weight(2, layers[1], [16, 16]).shape == (16, layer2_in, 5, 1)
    child = net.child_model(tokens)
    assert child.classifier.weight.shape == (10, head_in)  # skip 0: both layers are loose ends
    assert net(IMAGES, tokens).shape == (8, 10)


def test_a_shared_weight_step_moves_only_the_childs_weights() -> None:
    net = supernet(TABLE_SPACE)
    tokens = [0, 1, 0, 3, 2, 0, 1]  # 1x3 from the image, then 7x5 reading layer 1
    used = {f"blocks.{block_key(1, 1, 3, 0)}", f"blocks.{block_key(2, 7, 5, 1)}",
            f"bn_weight.{kernel_key(1, 1, 3)}", f"bn_bias.{kernel_key(1, 1, 3)}",
            f"bn_weight.{kernel_key(2, 7, 5)}", f"bn_bias.{kernel_key(2, 7, 5)}", "heads.1", "head_bias"}
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(net(IMAGES, tokens), LABELS).backward()
    opt.step()
    moved = {k for k, v in net.named_parameters() if not torch.equal(v, before[k])}
    assert moved == used
    # the other skip value reads the image in layer 2 and both layers' classifier blocks
    other = tokens[:-1] + [0]
    opt.zero_grad(set_to_none=True)
    net(IMAGES, other).sum().backward()
    assert {k for k, v in net.named_parameters() if v.grad is not None} >= {
        f"blocks.{block_key(2, 7, 5, 0)}", "heads.0", "heads.1"}
    assert net.blocks[block_key(2, 7, 5, 1)].grad is None


def test_identity_init_passes_layer_outputs_through() -> None:
    net = supernet(TABLE_SPACE, init="identity")
    w = net.blocks[block_key(2, 3, 3, 1)].detach()
    assert torch.equal(w[:, :, 1, 1], torch.eye(16)) and float(w.abs().sum()) == 16.0
    assert float(net.blocks[block_key(2, 3, 3, 0)].detach().abs().sum()) > 0  # image blocks keep He init


def test_the_pooling_variant_is_refused() -> None:
    with pytest.raises(ConfigError, match="pooling"):
        supernet({"layers": 2, "pooling": True})
