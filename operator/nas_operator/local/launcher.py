"""Trials as local processes: one ``python -m nas_trainer`` per attempt, over the pod contract.

``kubenas run`` drives the very loop the operator drives; this launcher plays
the Job controller and the kubelet on one machine. Each attempt gets the same
inputs a pod gets (trial document file, report URL, bearer token, termination
file) and the launcher reports what a kubelet would: started, exited with a
code and a termination message, or lost.

Everything an attempt leaves behind lives in its folder, so a runner killed
with SIGKILL can find its trainers again (``adopt``)::

    <root>/<trial>/checkpoint/        trainer checkpointDir, shared by the attempts
    <root>/<trial>/model/             final training only: the trained model (outputDir)
    <root>/<trial>/a<N>/trial.json    the attempt's trial document
    <root>/<trial>/a<N>/output.log    its stdout and stderr
    <root>/<trial>/a<N>/termination.json   the final report the trainer writes
    <root>/<trial>/a<N>/pid           pid and kernel start time, written at spawn
    <root>/<trial>/a<N>/exit          exit code, once this launcher saw the exit

Trainers run in their own session (process group), so a Ctrl-C in the terminal
reaches only the runner, which then stops them itself (SIGTERM, then SIGKILL
after a grace period), and a killed runner leaves them running to be adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller_policy.contract import (
    ENV_REPORT_TOKEN,
    ENV_REPORT_URL,
    ENV_TERMINATION_FILE,
    ENV_TRIAL_FILE,
    Report,
)
from controller_policy.files import atomic_write
from nas_operator.launcher import Launcher, LaunchRequest, TrialObserver

log = logging.getLogger(__name__)

DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "nas_trainer")
GRACE_SECONDS = 10.0
"""SIGTERM to SIGKILL: time for a trainer to checkpoint and send its last report."""
POLL_SECONDS = 0.25
"""How often a trainer is checked for its exit. Polling, rather than asyncio's child
watchers, because asyncio kills a child whose transport is closed, and a runner that stops
must leave its trainers to the next one; adopted trainers are not our children anyway."""
REPORT_RETRY_SECONDS = "10"
"""Trainer report retry budget on loopback (the trainer's own default, 60 s, suits clusters)."""


@dataclass
class _Attempt:
    trial: str
    attempt: int
    folder: Path
    pid: int
    start_token: str | None
    started_at: float
    deadline: int | None
    process: subprocess.Popen[bytes] | None = None
    """Our child; None for an attempt adopted from an earlier runner."""
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False
    """Cancelled or timed out: its exit is not reported (again)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


def process_start_token(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a pid reused later apart."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from /proc, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_alive(pid: int, start_token: str | None) -> bool:
    """Whether ``pid`` still runs the process that had ``start_token`` (zombies count as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else: the start token decides
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc").is_dir()  # no /proc at all: trust kill(0)
    state, start = stat
    if state in ("Z", "X"):
        return False
    return start_token is None or start == start_token


class LocalLauncher(Launcher):
    """Runs trial attempts as local trainer processes under ``root``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        command: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        grace_seconds: float = GRACE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.root = Path(root)
        self.command = list(command or DEFAULT_COMMAND)
        if not self.command:
            raise ValueError("the trainer command is empty")
        self.env = dict(env or {})
        """Extra environment for every trainer (e.g. OMP_NUM_THREADS), over the runner's own."""
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.observer: TrialObserver | None = None
        self._attempts: dict[tuple[str, int], _Attempt] = {}

    # --- the Launcher interface ------------------------------------------------------------
    def attach(self, observer: TrialObserver) -> None:
        self.observer = observer

    @property
    def running(self) -> int:
        """Attempts whose process has not ended yet."""
        return sum(1 for a in self._attempts.values() if not a.done.is_set())

    def attempt_folder(self, trial: str, attempt: int) -> Path:
        return self.root / trial / f"a{attempt}"

    def checkpoint_folder(self, trial: str) -> Path:
        return self.root / trial / "checkpoint"

    def model_folder(self, trial: str) -> Path:
        """Where a final trial's trainer saves its model (``kubenas export`` reads it)."""
        return self.root / trial / "model"

    async def launch(self, request: LaunchRequest) -> None:
        key = (request.trial, request.attempt)
        if key in self._attempts:
            return
        folder = self.attempt_folder(request.trial, request.attempt)
        if (folder / "pid").exists():  # started by an earlier runner: adopt, never duplicate
            if await self.adopt(request):
                return
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = self.checkpoint_folder(request.trial)
        checkpoint.mkdir(parents=True, exist_ok=True)
        update = {"checkpointDir": str(checkpoint)}
        if request.stage == "final":
            update["outputDir"] = str(self.model_folder(request.trial))
        document = request.document.model_copy(update=update)
        (folder / "trial.json").write_text(document.model_dump_json(indent=2))
        termination = folder / "termination.json"
        termination.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBENAS_REPORT_RETRY_SECONDS":
               os.environ.get("KUBENAS_REPORT_RETRY_SECONDS", REPORT_RETRY_SECONDS),
               **self.env, ENV_TRIAL_FILE: str(folder / "trial.json"),
               ENV_TERMINATION_FILE: str(termination), ENV_REPORT_TOKEN: request.token}
        env.pop(ENV_REPORT_URL, None)
        if request.report_url:
            env[ENV_REPORT_URL] = request.report_url
        with open(folder / "output.log", "ab") as logfile:
            try:
                process = subprocess.Popen(
                    self.command, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                    stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise RuntimeError(
                    f"cannot start the trainer command {' '.join(self.command)!r}: {exc}"
                ) from exc
        record = _Attempt(request.trial, request.attempt, folder, process.pid,
                          process_start_token(process.pid), time.time(),
                          request.active_deadline_seconds, process=process)
        _write_json(folder / "pid", {"pid": record.pid, "start": record.start_token,
                                     "startedAt": record.started_at, "command": self.command})
        self._attempts[key] = record
        record.watcher = asyncio.get_running_loop().create_task(self._watch(record))
        self._notify("on_trial_started", request.trial, request.attempt)

    async def cancel(self, trial: str, attempt: int) -> None:
        record = self._attempts.get((trial, attempt)) or self._unwatched(trial, attempt)
        if record is None or record.done.is_set():
            return
        record.stopping = True
        await self._terminate(record)
        if record.watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await record.watcher

    def _unwatched(self, trial: str, attempt: int) -> _Attempt | None:
        """An attempt an earlier runner started and this one never adopted (its trial ended
        while no runner watched, e.g. stopped early just before a restart), still alive."""
        folder = self.attempt_folder(trial, attempt)
        info = _read_json(folder / "pid")
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return None
        if not process_alive(info["pid"], info.get("start")):
            return None
        return _Attempt(trial, attempt, folder, info["pid"], info.get("start"), time.time(), None)

    async def adopt(self, request: LaunchRequest) -> bool:
        """Re-attach to an attempt an earlier runner started: watch it if it still runs, take
        its termination message if it ended; an attempt with no pid file was never started."""
        key = (request.trial, request.attempt)
        if key in self._attempts:
            return True
        folder = self.attempt_folder(request.trial, request.attempt)
        info = _read_json(folder / "pid")
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return False
        record = _Attempt(request.trial, request.attempt, folder, info["pid"], info.get("start"),
                          float(info.get("startedAt") or time.time()),
                          request.active_deadline_seconds)
        self._attempts[key] = record
        record.watcher = asyncio.get_running_loop().create_task(self._watch(record))
        return True

    # --- shutdown ---------------------------------------------------------------------------
    def hurry(self) -> None:
        """Second Ctrl-C: skip the grace period of every stop from now on."""
        self.grace_seconds = 0.0

    async def drain(self, timeout: float) -> None:
        """After the search ended: give trainers still exiting (they report before they exit)
        ``timeout`` seconds, then stop the rest, so a finished run leaves no process behind."""
        records = [r for r in self._attempts.values() if not r.done.is_set()]
        for record in records:
            record.stopping = True
        end = time.monotonic() + timeout
        for record in records:
            if not await self._ended_within(record, max(0.0, end - time.monotonic())):
                await self._terminate(record)

    async def close(self, *, terminate: bool = False) -> None:
        """Stop watching (trainers keep running for the next runner) or, with ``terminate``,
        stop every trainer first. Nothing is reported to the loop either way."""
        records = list(self._attempts.values())
        for record in records:
            record.stopping = True
        if terminate:
            await asyncio.gather(*(self._terminate(r) for r in records if not r.done.is_set()))
        for record in records:
            if record.watcher is not None and not record.watcher.done():
                record.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await record.watcher

    # --- watching ---------------------------------------------------------------------------
    def _ended(self, record: _Attempt) -> bool:
        if record.process is not None:
            return record.process.poll() is not None
        return not process_alive(record.pid, record.start_token)

    def _exit_code(self, record: _Attempt) -> int | None:
        """Our child's exit code, or what an earlier runner recorded for it (else None)."""
        if record.process is not None:
            return record.process.returncode
        recorded = _read_text(record.folder / "exit")
        return int(recorded) if recorded and recorded.strip().lstrip("-").isdigit() else None

    async def _watch(self, record: _Attempt) -> None:
        try:
            deadline_at = None
            if record.deadline is not None:
                deadline_at = record.started_at + record.deadline
            while not self._ended(record):
                if deadline_at is not None and time.time() >= deadline_at:
                    await self._deadline_passed(record)
                    break
                await asyncio.sleep(self.poll_seconds)
            code = self._exit_code(record)
            if record.process is not None and code is not None:
                atomic_write(record.folder / "exit", str(code))
        finally:
            record.done.set()
            self._attempts.pop((record.trial, record.attempt), None)
        if not record.stopping:
            message = _read_text(record.folder / "termination.json")
            self._notify("on_trial_exit", record.trial, record.attempt, code, message)

    async def _deadline_passed(self, record: _Attempt) -> None:
        """Fail the attempt first (so the reason is the deadline, not the trainer's 'interrupted'
        report), then stop its process."""
        if record.stopping:
            return
        record.stopping = True
        reason = (f"ran past spec.trial.activeDeadlineSeconds ({record.deadline} s); "
                  "stopped by the local launcher")
        failed = Report(kind="failed", trial=record.trial, attempt=record.attempt, reason=reason)
        self._notify("on_trial_exit", record.trial, record.attempt, None,
                     failed.model_dump_json())
        await self._terminate(record)

    async def _terminate(self, record: _Attempt) -> None:
        """SIGTERM the attempt's process group, SIGKILL it after the grace period."""
        _signal_group(record.pid, signal.SIGTERM)
        if not await self._ended_within(record, self.grace_seconds):
            _signal_group(record.pid, signal.SIGKILL)
            await self._ended_within(record, 30.0)

    async def _ended_within(self, record: _Attempt, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not self._ended(record):
            if time.monotonic() >= end:
                return False
            await asyncio.sleep(min(self.poll_seconds, 0.1))
        return True

    def _notify(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            result = getattr(self.observer, method)(*args)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)
        except Exception:  # the loop must never take the launcher down with it
            log.exception("observer %s%r failed", method, args)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # start_new_session: the trainer leads its own group


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace") or None
    except OSError:
        return None


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
