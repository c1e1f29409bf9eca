"""Helpers for tests that run `kubenas run` for real: search files, run-folder readers, waiting
on a condition, reading a process's output as it comes, and the guard that leaves no trainer
process behind (each layer's ``processes`` fixture is its body)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from controller_policy.strategies import make_strategy
from nas_operator.api import space_class
from nas_operator.checkpoint import decode_checkpoint
from nas_operator.ledger import Ledger
from nas_operator.local.launcher import process_alive
from nas_operator.local.output import RunFolder
from tests.support import REPO


def image_search(name: str, *, max_trials: int, parallel: int, epochs: int = 1,
                 **spec: Any) -> dict[str, Any]:
    """A tiny real search: 2-layer Zoph & Le CNNs on a slice of digits, one thread per trainer."""
    doc: dict[str, Any] = {
        "apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch", "metadata": {"name": name},
        "spec": {
            "searchSpace": {"type": "zoph-le-cnn", "options": {"layers": 2,
                                                               "filterChoices": [4, 8]}},
            "strategy": {"type": "reinforce", "batchSize": 2, "seed": 3},
            "objective": {"lastEpochs": 1},
            "budget": {"maxTrials": max_trials, "parallelism": parallel},
            "trial": {
                "dataset": {"name": "digits", "maxTrainExamples": 300, "validationSize": 150},
                "training": {"epochs": epochs, "batchSize": 50, "learningRate": 0.05,
                             "augment": False, "device": "cpu", "threads": 1},
                "retries": 0,
            },
        },
    }  # fmt: skip
    for key, value in spec.items():
        doc["spec"][key] = {**doc["spec"].get(key, {}), **value}
    return doc


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def checkpoint_facts(folder: Path) -> tuple[dict[str, Any], Ledger, dict[str, Any]]:
    """(loop state, ledger, strategy summary) from the run folder's checkpoint."""
    run = RunFolder(folder)
    ckpt = decode_checkpoint(run.checkpoint_file.read_bytes())
    search = run.load_search()
    summary: dict[str, Any] = {}
    if ckpt.strategy:
        space = space_class(search.spec.searchSpace.type)(search.spec.searchSpace.options)
        strategy = make_strategy(search.spec.strategy.type, space, search.spec.strategy_config())
        strategy.load_bytes(ckpt.strategy)
        summary = strategy.summary()
    return ckpt.state, Ledger.from_state(ckpt.state["ledger"]), summary


def attempt_pids(folder: Path) -> dict[str, tuple[int, str | None]]:
    """pid file of every attempt that was started: 'trial/aN' -> (pid, start token)."""
    out = {}
    for pid_file in sorted((folder / "trials").glob("*/a*/pid")):
        info = json.loads(pid_file.read_text())
        out[f"{pid_file.parent.parent.name}/{pid_file.parent.name}"] = (info["pid"], info["start"])
    return out


def live_trainers(folder: Path) -> list[str]:
    return [k for k, (pid, start) in attempt_pids(folder).items() if process_alive(pid, start)]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class OutputTail:
    """Every line a runner prints, read by a thread as it comes, so a test can wait for what
    the runner itself printed (a trainer's log line reaches the runner's output later)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        wait_for(lambda: any(text in line for line in self.lines), timeout, repr(text))

    def finish(self, timeout: float) -> str:
        """Wait for the process to exit and return all it printed."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return "".join(self.lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runner_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas_operator.cli", *args]


class Processes:
    """Runner processes a test starts, and every trainer its run folders list; all are killed
    at teardown (by pid, each in its own process group), so no test leaves anything behind."""

    def __init__(self) -> None:
        self.runners: list[subprocess.Popen[str]] = []
        self.folders: list[Path] = []

    def start(self, args: list[str], folder: Path, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[str]:
        self.folders.append(folder)
        proc = subprocess.Popen(runner_command(*args), cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.runners.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.runners:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for folder in self.folders:
            for pid, start in attempt_pids(folder).values() if folder.exists() else []:
                if process_alive(pid, start):
                    os.killpg(pid, signal.SIGKILL)


def guarded_processes() -> Iterator[Processes]:
    """Body of each test file's ``processes`` fixture."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


FAKE_TRAINER = f"{sys.executable} {Path(__file__).resolve().with_name('fake_trainer.py')}"
"""``--trainer-command`` for tests/support/fake_trainer.py, the misbehaving stdlib trainer."""


def fake_search(name: str, *, max_trials: int, parallel: int, **spec: object) -> dict:
    """An image search for the fake trainer, whose reports end the objective after one epoch."""
    doc = image_search(name, max_trials=max_trials, parallel=parallel, **spec)
    doc["spec"]["objective"] = {"lastEpochs": 1}
    return doc
