"""Where and how a trial computes: device, CPU threads, AMP, channels_last, seeds.

One place decides these so that the plain, language and ENAS loops behave the
same way: AMP and channels_last only exist on CUDA (on CPU they are ignored with
one log line, never an error, so one trial document runs anywhere).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from controller_policy.contract import TrainingSpec

log = logging.getLogger("nas_trainer")


class ConfigError(ValueError):
    """A trial setting that cannot be honoured; the message names the field and the fix."""


@dataclass
class Runtime:
    """The resolved execution settings of one trial."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    scaler: torch.amp.GradScaler | None = field(default=None, repr=False)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision around forward passes, or a no-op when AMP is off."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def prepare_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def backward_and_step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        grad_clip: float | None,
    ) -> None:
        """Backward, optional global-norm clipping, optimizer step (fp16 via the grad scaler)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if grad_clip is not None:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(
            f"training.device {name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"training.device {name!r} asks for CUDA but none is available; use 'auto' or 'cpu'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"training.device {name!r}: only 'cpu' and 'cuda' are supported")
    return device


def setup_runtime(training: TrainingSpec) -> Runtime:
    """Resolve device, threads, AMP and memory format for ``training``."""
    if training.threads is not None:
        torch.set_num_threads(training.threads)
    device = resolve_device(training.device)
    rt = Runtime(device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if training.amp == "bf16":
            rt.amp_dtype = torch.bfloat16
        elif training.amp == "fp16":
            rt.amp_dtype = torch.float16
            rt.scaler = torch.amp.GradScaler("cuda")
        rt.channels_last = training.channelsLast
    else:
        if training.amp != "off":
            log.info("training.amp=%s ignored: mixed precision is used on CUDA only", training.amp)
        if training.channelsLast:
            log.info("training.channelsLast ignored: channels_last is used on CUDA only")
    return rt


def seed_everything(seed: int) -> None:
    """Seed every RNG a trial touches (python, numpy, torch CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, for checkpoints (restoring it makes a resume bit-exact on CPU)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a different GPU count on the new node
            torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluate without gradients, then restore the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
