"""SIGTERM handling and atomic checkpoints, so a preempted trial resumes where it stopped.

Kubernetes sends SIGTERM and waits ``terminationGracePeriodSeconds`` before
SIGKILL. The handler only sets a flag; the training loop sees it at the next
step, saves everything needed to continue bit-for-bit (model, optimizer,
scheduler, RNG states, progress inside the epoch, metrics so far), reports
``interrupted`` and exits with ``EXIT_INTERRUPTED``. A checkpoint is written to
a temporary file and renamed over the old one, so a kill mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch

from controller_policy.files import atomic_write
from nas_trainer.runtime import ConfigError, rng_state, set_rng_state

log = logging.getLogger("nas_trainer.checkpoint")

EXIT_INTERRUPTED = 143
"""128 + SIGTERM: what a shell reports for a process killed by SIGTERM."""
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


class StopRequest:
    """Turns SIGTERM (and SIGINT) into a flag the training loop polls between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> StopRequest:
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def request(self, name: str = "stop requested") -> None:
        """Ask the loop to stop (the signal handler's job; also handy for embedding and tests)."""
        self.requested = True
        self.signal_name = self.signal_name or name

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class GeneratorState:
    """Adapts a ``torch.Generator`` to the state_dict protocol."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["state"])


@dataclass
class Progress:
    """Where training stands: completed epochs, steps into the next one, metrics so far."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)
    """Running sums of the unfinished epoch (so its metrics match an uninterrupted run)."""
    carry: dict[str, Any] = field(default_factory=dict)
    """Loop-specific tensors to carry over (e.g. a language model's hidden state)."""


class CheckpointMismatch(ConfigError):
    """The checkpoint directory holds another trial's (or architecture's) state."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


class Checkpointer:
    """Saves and restores named stateful objects plus ``Progress`` in ``directory``.

    ``identity`` (trial, architecture, ...) is stored and must match on resume,
    so a reused directory never silently continues someone else's training.
    With no directory, ``save`` does nothing and ``restore`` starts fresh.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None, identity: dict[str, Any],
        objects: dict[str, Stateful],
    ) -> None:
        self.directory = Path(directory) if directory else None
        self.identity = identity
        self.objects = objects

    @property
    def path(self) -> Path | None:
        return self.directory / CHECKPOINT_FILE if self.directory else None

    def save(self, progress: Progress) -> Path | None:
        if self.path is None:
            return None
        state = {
            "format": FORMAT_VERSION,
            "identity": self.identity,
            "progress": asdict(progress),
            "rng": rng_state(),
            "objects": {name: obj.state_dict() for name, obj in self.objects.items()},
        }
        try:
            atomic_torch_save(state, self.path)
        except OSError as exc:
            raise ConfigError(f"checkpointDir {self.directory}: cannot write a checkpoint ({exc})") from exc
        return self.path

    def restore(self) -> Progress:
        """Load the checkpoint if there is one (restoring every object and RNG), else fresh."""
        if self.path is None or not self.path.exists():
            return Progress()
        try:
            # Our own file (python and numpy RNG states need full unpickling).
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any load failure means an unusable file
            raise ConfigError(
                f"checkpointDir {self.directory}: {CHECKPOINT_FILE} is unreadable ({exc}); "
                "delete it to start the trial afresh"
            ) from exc
        if state.get("format") != FORMAT_VERSION:
            raise ConfigError(f"checkpointDir {self.directory}: unknown checkpoint format")
        if state["identity"] != self.identity:
            raise CheckpointMismatch(
                f"checkpointDir {self.directory} holds a checkpoint of {state['identity']}, "
                f"not of {self.identity}; give each trial its own checkpointDir"
            )
        missing = set(self.objects) - set(state["objects"])
        if missing:
            raise ConfigError(f"checkpointDir {self.directory}: checkpoint lacks {sorted(missing)}")
        for name, obj in self.objects.items():
            obj.load_state_dict(state["objects"][name])
        set_rng_state(state["rng"])
        progress = Progress(**state["progress"])
        log.info(
            "resumed from %s at epoch %d step %d", self.path, progress.epoch, progress.step
        )
        return progress
