"""Optimizer and learning-rate schedules follow the papers' recipes, per step."""

from __future__ import annotations

import math

import pytest
import torch

from controller_policy.contract import TrainingSpec
from nas_trainer.optim import build_optimizer, build_scheduler, lr_at
from nas_trainer.runtime import ConfigError


def spec(**kw: object) -> TrainingSpec:
    return TrainingSpec.model_validate(kw)


def test_optimizer_is_nesterov_sgd_with_weight_decay() -> None:
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(2))], spec(learningRate=0.05, weightDecay=2e-4))
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.05, 0.9, True, 2e-4,
    )


def test_nesterov_without_momentum_is_an_error_naming_the_fields() -> None:
    with pytest.raises(ConfigError, match=r"training\.nesterov needs training\.momentum"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], spec(momentum=0.0))


def test_cosine_falls_from_base_to_floor() -> None:
    s = spec(schedule="cosine", learningRate=0.1, learningRateMin=0.001, epochs=10)
    assert lr_at(s, 0) == pytest.approx(0.1)
    assert lr_at(s, 5) == pytest.approx((0.1 + 0.001) / 2)
    assert lr_at(s, 10) == pytest.approx(0.001)
    values = [lr_at(s, e / 4) for e in range(41)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_sgdr_restarts_after_10_then_20_epochs() -> None:
    """ENAS: l_max 0.05, l_min 0.001, T0 10, T_mul 2 -> restarts at epochs 10 and 30."""
    s = spec(schedule="sgdr", learningRate=0.05, learningRateMin=0.001, epochs=70)
    for restart in (0, 10, 30):
        assert lr_at(s, restart) == pytest.approx(0.05)
    assert lr_at(s, 9.999) == pytest.approx(0.001, abs=1e-6)
    assert lr_at(s, 20) == pytest.approx((0.05 + 0.001) / 2)  # middle of the 20-epoch cycle
    assert lr_at(s, 29.999) == pytest.approx(0.001, abs=1e-6)


def test_step_schedule_default_and_explicit_milestones() -> None:
    s = spec(schedule="step", learningRate=0.1, epochs=8)
    assert [round(lr_at(s, e), 6) for e in range(8)] == [0.1] * 4 + [0.01] * 2 + [0.001] * 2
    ptb = spec(schedule="step", learningRate=20, epochs=18, stepMilestones=[15, 16, 17], stepFactor=0.96)
    assert lr_at(ptb, 14.5) == 20 and lr_at(ptb, 17) == pytest.approx(20 * 0.96**3)


def test_constant_schedule() -> None:
    assert lr_at(spec(schedule="constant", learningRate=0.3), 123.4) == 0.3


def test_scheduler_steps_per_batch_and_its_state_resumes_exactly() -> None:
    s = spec(schedule="cosine", learningRate=0.1, epochs=2)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], s)
    sched = build_scheduler(opt, s, steps_per_epoch=5)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.3)))
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    opt2 = build_optimizer([torch.nn.Parameter(torch.zeros(1))], s)
    sched2 = build_scheduler(opt2, s, steps_per_epoch=5)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_bad_schedule_settings_name_the_field() -> None:
    p = [torch.nn.Parameter(torch.zeros(1))]
    s = spec(learningRate=0.01, learningRateMin=0.1)
    with pytest.raises(ConfigError, match=r"training\.learningRateMin \(0\.1\) exceeds"):
        build_scheduler(build_optimizer(p, s), s, 10)
    s = spec(schedule="step", stepMilestones=[0, 3])
    with pytest.raises(ConfigError, match=r"training\.stepMilestones must be epochs >= 1"):
        build_scheduler(build_optimizer(p, s), s, 10)
