"""What a trial measures: parameters and multiply-adds counted on the meta device, latency timed.

The counts are checked against hand-computed figures for a tiny network, and for one
child of every built-in space against the same child built with real weights on the
CPU and counted without any shortcut: the meta count is the count of the real network.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from controller_policy.contract import DatasetSpec, ModelSpec, Report
from controller_policy.spaces import Architecture
from nas_trainer.measure import (
    Counter,
    CountError,
    count_model,
    device_name,
    example_input,
    latency_ms,
    parameter_count,
    trained_figures,
)
from nas_trainer.models import build_model


def tiny_net() -> nn.Module:
    """conv 1->4 (3x3, padding 1) on 8x8, batch norm, ReLU, then a 256 -> 10 classifier."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_a_tiny_conv_net_is_counted_as_by_hand() -> None:
    with torch.device("meta"):
        model = tiny_net()
    figures = count_model(model, torch.zeros(1, 1, 8, 8, device="meta"))
    conv_params, bn_params, fc_params = 4 * 9 + 4, 2 * 4, 256 * 10 + 10
    assert figures.params == conv_params + bn_params + fc_params == 2618
    # every output pixel of every filter: 3x3 multiply-adds; then 256 per class
    conv_macs, fc_macs = 8 * 8 * 4 * 9, 256 * 10
    assert figures.macs == conv_macs + fc_macs == 4864
    assert figures.as_metrics() == {"params": 2618.0, "flops": 4864.0}


def test_the_meta_device_holds_no_memory() -> None:
    """Ten billion weights (40 GB as float32) are built and counted without allocating them."""
    with torch.device("meta"):
        huge = nn.Linear(100_000, 100_000)
    assert all(p.is_meta for p in huge.parameters())
    figures = count_model(huge, torch.zeros(1, 100_000, device="meta"))
    assert figures.params == 100_000 * 100_000 + 100_000
    assert figures.macs == 100_000 * 100_000


CHILDREN = {
    "zoph-le-cnn": ({"layers": 3}, "image"),
    "zoph-le-rnn": ({}, "language"),
    "nasnet": ({"blocks": 2}, "image"),
    "enas-macro": ({"layers": 3}, "image"),
    "enas-micro": ({"nodes": 2}, "image"),
    "enas-rnn": ({"nodes": 3}, "language"),
}
MODEL = ModelSpec(cellsPerStage=1, filters=8, embeddingSize=16, hiddenSize=16)


@pytest.mark.parametrize("space", sorted(CHILDREN))
def test_one_child_per_space_counts_as_the_real_network(space: str) -> None:
    options, kind = CHILDREN[space]
    data = DatasetSpec(name="digits" if kind == "image" else "synthetic")
    counter = Counter(space, options, data, MODEL)
    tokens = counter.space.sample(random.Random(3))
    figures = counter.count(tokens)

    arch = Architecture(space=space, tokens=tokens, genotype=counter.space.to_genotype(tokens))
    real = build_model(arch, MODEL, space_options=options, **counter.inputs).eval()
    x = example_input(kind, counter.inputs, device="cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        real(x)  # every layer really run, nothing passed through
    assert figures.params == parameter_count(real) > 0
    assert figures.macs == flops.get_total_flops() // 2 > 0
    assert counter.count(tokens) is figures  # counted once per genotype


def test_latency_is_the_median_of_timed_passes_on_the_named_device() -> None:
    model = tiny_net()
    ms = latency_ms(model, torch.zeros(1, 1, 8, 8), warmup=1, iterations=5)
    assert math.isfinite(ms) and 0 < ms < 10_000
    assert model.training  # left as it was found
    metrics, device = trained_figures(model, "image", {"input_shape": (1, 8, 8)},
                                      torch.device("cpu"))
    assert device == device_name(torch.device("cpu")) == "cpu"
    assert metrics["params"] == 2618 and metrics["flops"] == 4864
    assert metrics["latency_batch"] == 1 and metrics["latency_ms"] > 0
    # the status API's checks take these figures beside an accuracy
    report = Report(kind="final", trial="s-t0000", device=device,
                    metrics={**metrics, "val_accuracy": 0.5})
    assert report.metrics["flops"] == 4864


def test_counting_refuses_what_it_cannot_count_naming_the_field(tmp_path) -> None:
    with pytest.raises(CountError, match=r"spec\.objective\.constraints: the input size of "
                                         r"dataset 'image-folder'"):
        Counter("nasnet", {}, DatasetSpec(name="image-folder", path=str(tmp_path / "none")), MODEL)
    with pytest.raises(CountError, match=r"spec\.objective\.constraints: space 'no-such' has no "
                                         r"model builder"):
        Counter("no-such", {}, DatasetSpec(), MODEL)


def test_cifar10_and_ptb_are_counted_without_their_files() -> None:
    """An operator pod mounts no data: the built-in data sets' inputs are known."""
    assert Counter("nasnet", {}, DatasetSpec(name="cifar10", path="/nonexistent"),
                   MODEL).inputs == {"input_shape": (3, 32, 32), "num_classes": 10}
    assert Counter("enas-rnn", {}, DatasetSpec(name="ptb", path="/nonexistent"),
                   MODEL).inputs == {"vocab_size": 10_000}
