"""DARTS relaxation of zoph-le-cnn: one-hot alphas give the supernet's child, and the bilevel step moves alpha."""

from __future__ import annotations

import random

import pytest
import torch

from controller_policy.contract import DartsSpec, TrainingSpec
from controller_policy.spaces import make_space
from nas_trainer.darts.bilevel import Bilevel
from nas_trainer.darts.collective import Collective
from nas_trainer.darts.zoph_cnn import KERNELS, RelaxedZophCnn, bit_index
from nas_trainer.enas.supernet_zoph_cnn import ZophCnnSupernet

IMAGES = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(8) % 10


def relaxed(layers: int = 3) -> RelaxedZophCnn:
    torch.manual_seed(0)
    space = make_space("zoph-le-cnn", {"layers": layers, "filterChoices": [4]})
    return RelaxedZophCnn(ZophCnnSupernet(space, input_shape=(1, 12, 12), num_classes=10))


def set_one_hot(model: RelaxedZophCnn, tokens: list[int]) -> None:
    """Alphas so large that softmax is exactly one-hot on ``tokens``."""
    with torch.no_grad():
        model.alpha_kernel.fill_(-1e4)
        model.alpha_skip.fill_(-1e4)
        it = iter(tokens)
        for i in range(1, model.layers + 1):
            fh, fw, _ = next(it), next(it), next(it)
            model.alpha_kernel[i - 1, fh * 4 + fw] = 1e4
            for j in range(1, i):
                model.alpha_skip[bit_index(i, j), next(it)] = 1e4


def test_one_hot_alphas_compute_the_supernets_child_and_derive_it() -> None:
    model = relaxed()
    rng = random.Random(0)
    for _ in range(6):
        tokens = [rng.randrange(s.num_values) for s in model.supernet.space.slots]
        set_one_hot(model, tokens)
        torch.testing.assert_close(model(IMAGES), model.supernet(IMAGES, tokens), atol=1e-5, rtol=1e-5)
        assert model.derive() == tokens
        assert model.log_probability(tokens) == pytest.approx(0.0, abs=1e-6)
        flipped = list(tokens)
        flipped[6] = 1 - flipped[6]  # layer 2's skip bit (tokens: 3 for layer 1, then fh, fw, filters, bit)
        assert model.log_probability(flipped) < -1e3


def test_bit_rows_are_distinct() -> None:
    rows = [bit_index(i, j) for i in range(1, 6) for j in range(1, i)]
    assert rows == list(range(10))
    assert len(KERNELS) == 16 and KERNELS[1] == (1, 3)


def test_a_first_order_step_moves_alpha_and_the_derivation_is_valid() -> None:
    model = relaxed(2)
    training = TrainingSpec.model_validate({"batchSize": 8})
    w_opt = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9)
    bilevel = Bilevel(model, w_opt, DartsSpec(order="first", archLearningRate=0.01),  # type: ignore[arg-type]
                      training, Collective())
    before = [a.detach().clone() for a in model.arch_parameters()]
    for _ in range(3):
        bilevel.arch_step((IMAGES, LABELS), (IMAGES, LABELS))
        bilevel.weight_step((IMAGES, LABELS))
    assert all(not torch.equal(a, b) for a, b in zip(model.arch_parameters(), before, strict=True))
    tokens = model.derive()
    assert model.supernet.space.validate_tokens(tokens) == tokens


def test_spaces_it_cannot_relax_are_refused() -> None:
    space = make_space("zoph-le-cnn", {"layers": 2, "filterChoices": [4, 8]})
    with pytest.raises(ValueError, match="one filter count"):
        RelaxedZophCnn(ZophCnnSupernet(space, input_shape=(1, 12, 12), num_classes=10))
