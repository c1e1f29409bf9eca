"""The pieces of the training recipes: losses, drop-path schedule, clipping, BPTT, CPU runtime."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from controller_policy.contract import TrainingSpec, TrialDocument
from controller_policy.spaces import make_space
from nas_trainer.checkpoint import StopRequest
from nas_trainer.child import build_child
from nas_trainer.epochs import TrialContext
from nas_trainer.optim import build_optimizer
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import setup_runtime
from nas_trainer.train_image import classification_loss, train_image
from nas_trainer.train_language import batchify, detach_hidden, get_window, window_starts


def test_auxiliary_loss_is_added_with_its_weight_and_label_smoothing_applies() -> None:
    torch.manual_seed(0)
    logits, aux, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    spec = TrainingSpec.model_validate({"labelSmoothing": 0.1, "model": {"auxiliaryWeight": 0.4}})
    loss, main_logits = classification_loss((logits, aux), y, spec)
    expected = F.cross_entropy(logits, y, label_smoothing=0.1) + 0.4 * F.cross_entropy(
        aux, y, label_smoothing=0.1
    )
    assert torch.allclose(loss, expected) and main_logits is logits
    plain, _ = classification_loss(logits, y, TrainingSpec())
    assert torch.allclose(plain, F.cross_entropy(logits, y))


def test_gradient_clipping_bounds_the_update() -> None:
    rt = setup_runtime(TrainingSpec(threads=1))
    w = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([w], TrainingSpec(learningRate=1.0, momentum=0.0, nesterov=False, weightDecay=0.0))
    loss = (w * torch.tensor([1e3, -1e3, 1e3])).sum()
    rt.backward_and_step(loss, opt, [w], grad_clip=0.5)
    assert float(w.detach().norm()) == pytest.approx(0.5, rel=1e-5)


def test_amp_and_channels_last_are_ignored_on_cpu_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="nas_trainer"):
        rt = setup_runtime(TrainingSpec(device="cpu", amp="bf16", channelsLast=True, threads=1))
    assert rt.amp_dtype is None and rt.scaler is None and not rt.channels_last
    assert "training.amp=bf16 ignored" in caplog.text
    assert "training.channelsLast ignored" in caplog.text


def test_batchify_and_bptt_windows_cover_every_target_once() -> None:
    ids = torch.arange(103)
    streams = batchify(ids, 4)
    assert streams.shape == (4, 25)
    assert torch.equal(streams[1], torch.arange(25, 50)), "each row is one contiguous stretch"
    targets = []
    for start in window_starts(streams.shape[1], 7):
        x, y = get_window(streams, start, 7)
        assert torch.equal(y[:, :-1], x[:, 1:]), "targets are the inputs shifted by one"
        targets.append(y)
    assert torch.equal(torch.cat(targets, dim=1), streams[:, 1:])


def test_detach_hidden_keeps_values_and_cuts_the_graph() -> None:
    h = torch.ones(2, requires_grad=True) * 3
    out = detach_hidden((h, [h * 2]))
    assert not out[0].requires_grad and not out[1][0].requires_grad
    assert torch.equal(out[1][0], torch.full((2,), 6.0))


def test_recipe_options_together_auxiliary_head_drop_path_cutout_and_test_accuracy() -> None:
    space = make_space("enas-micro", {"nodes": 1})
    doc = TrialDocument.model_validate({
        "search": "s", "trial": "recipe", "seed": 0,
        "architecture": space.architecture(space.sample(5)).model_dump(),
        "spaceOptions": {"nodes": 1},
        "dataset": {"name": "digits", "maxTrainExamples": 96, "validationSize": 64},
        "training": {"epochs": 2, "batchSize": 32, "threads": 1, "labelSmoothing": 0.1,
                     "cutout": 2, "gradClip": 5.0, "schedule": "sgdr", "reportTestAccuracy": True,
                     "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1,
                               "auxiliaryHead": True, "dropPath": 0.3}},
    })
    model, data = build_child(doc)
    ctx = TrialContext(doc, setup_runtime(doc.training), Reporter(None, None, None, echo_stdout=False),
                       StopRequest())
    result = train_image(ctx, model, data)
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0 and result.metrics["test_loss"] > 0
    # ScheduledDropPath: linear in the step, reaching dropPath * (last step / total steps).
    assert model.drop_path_prob == pytest.approx(0.3 * 5 / 6)
    assert result.metrics["params"] < sum(p.numel() for p in model.parameters()), (
        "params leaves the auxiliary head out, as the papers count"
    )
