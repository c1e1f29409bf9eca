"""Test suppliers shipped with the package: a launcher that simulates trials (no training).

``SimulatedLauncher`` is for tests and benchmarks only (the suite's loop harness,
``bench/bench_loop.py``): it plays a trainer that reports configurable metrics after a
configurable latency (or fails, or hangs) and then exits, and the kubelet that reports
its exit. Nothing in the operator or ``kubenas run`` imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from controller_policy.contract import Report
from controller_policy.spaces.base import Architecture
from nas_operator.launcher import Launcher, LaunchRequest, TrialObserver


@dataclass
class SimulatedOutcome:
    """What one simulated attempt does."""

    metrics: list[dict[str, float]] = field(default_factory=lambda: [{"val_accuracy": 0.5}])
    """Per-epoch metrics, oldest first."""
    latency: float = 0.0
    """Seconds between start and the final report."""
    start_delay: float = 0.0
    """Seconds between launch and the started event."""
    fail: str | None = None
    """If set, the trainer reports kind 'failed' with this reason and exits 1."""
    hang: bool = False
    """Never report and never exit (until cancelled)."""
    report: bool = True
    """POST the final report; if False, only the termination message carries it."""
    exit_code: int = 0
    termination_message: bool = True
    """Write the final report as the termination message (a crashed trainer writes none)."""
    epoch_reports: bool = False
    """Also POST one 'epoch' report per epoch before the final one."""
    architecture: Architecture | None = None
    """ENAS mode: the derived architecture the final report carries."""
    device: str | None = None
    """The device the final report names (where the trainer timed latency_ms)."""


Behaviour = Callable[[LaunchRequest], SimulatedOutcome]


def constant_behaviour(
    accuracy: float = 0.5, latency: float = 0.0, epochs: int = 1
) -> Behaviour:
    """Every attempt reports the same accuracy after ``latency`` seconds."""

    def behave(_: LaunchRequest) -> SimulatedOutcome:
        return SimulatedOutcome(metrics=[{"val_accuracy": accuracy}] * epochs, latency=latency)

    return behave


def random_behaviour(seed: int = 0, latency: float = 0.0, metric: str = "val_accuracy") -> Behaviour:
    """Deterministic pseudo-random metrics per (trial, attempt); perplexities in 50..200."""

    def behave(request: LaunchRequest) -> SimulatedOutcome:
        rng = random.Random(f"{seed}/{request.trial}/{request.attempt}")
        value = rng.uniform(0.1, 0.95) if metric == "val_accuracy" else rng.uniform(50.0, 200.0)
        return SimulatedOutcome(metrics=[{metric: value}], latency=latency)

    return behave


ReportSink = Callable[[str, Report], Any]
"""Where a simulated trainer POSTs: ``(trial, report) -> outcome`` (a loop's ``handle_report``)."""


class SimulatedLauncher(Launcher):
    """Plays the trainer and the kubelet for tests and benchmarks; trains nothing.

    Each launch runs a task that waits ``start_delay``, signals started, waits
    ``latency``, POSTs its reports to ``report_sink`` (default: the attached
    loop's ``handle_report``), writes the same final ``Report`` as its
    termination message and exits. ``launched`` records every request, so
    tests can count launches and duplicates.

    ``sigterm`` plays a real trainer's answer to being stopped (``cancel``): it
    POSTs an ``interrupted`` report and exits 143 with that report as its
    termination message. ``"during"``: before ``cancel`` returns (a local process,
    whose launcher waits for the exit); ``"late"``: after it returned (a deleted
    Job, whose pod reports within its grace period). ``None``: it vanishes
    silently. What the sink answered is kept in ``sigterm_results``.
    """

    def __init__(self, behaviour: Behaviour | None = None, report_sink: ReportSink | None = None,
                 sigterm: Literal["during", "late"] | None = None):
        self.behaviour = behaviour or constant_behaviour()
        self.report_sink = report_sink
        self.sigterm = sigterm
        self.sigterm_results: list[Any] = []
        self._requests: dict[tuple[str, int], LaunchRequest] = {}
        self._late: set[asyncio.Task[None]] = set()
        self.observer: TrialObserver | None = None
        self.launched: list[LaunchRequest] = []
        self.cancelled: list[tuple[str, int]] = []
        self.tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.adoptable: set[tuple[str, int]] | None = None
        """If set, ``adopt`` says True only for these (trial, attempt); None = the running tasks."""
        self.fail_launch: Callable[[LaunchRequest], bool] = lambda _: False

    def attach(self, observer: TrialObserver) -> None:
        self.observer = observer
        if self.report_sink is None and hasattr(observer, "handle_report"):
            self.report_sink = observer.handle_report  # type: ignore[attr-defined]

    @property
    def running(self) -> int:
        return sum(1 for t in self.tasks.values() if not t.done())

    async def launch(self, request: LaunchRequest) -> None:
        key = (request.trial, request.attempt)
        if key in self.tasks:
            return
        if self.fail_launch(request):
            raise RuntimeError(f"simulated launch failure of {request.job_name}")
        self.launched.append(request)
        self._requests[key] = request
        self.tasks[key] = asyncio.get_running_loop().create_task(self._run(request))

    async def cancel(self, trial: str, attempt: int) -> None:
        task = self.tasks.get((trial, attempt))
        if task is not None and not task.done():
            self.cancelled.append((trial, attempt))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            request = self._requests.get((trial, attempt))
            if self.sigterm == "during" and request is not None:
                await self.interrupt(request)
            elif self.sigterm == "late" and request is not None:
                late = asyncio.get_running_loop().create_task(self.interrupt(request))
                self._late.add(late)
                late.add_done_callback(self._late.discard)

    async def interrupt(self, request: LaunchRequest) -> None:
        """What a SIGTERM'd trainer sends: an 'interrupted' report, then exit 143 (call it to
        play a preemption or eviction: a SIGTERM the loop did not ask for)."""
        report = Report(kind="interrupted", trial=request.trial, attempt=request.attempt,
                        reason="SIGTERM: stopped; checkpoint saved")
        if self.report_sink is not None:
            self.sigterm_results.append(
                await _maybe_await(self.report_sink(request.trial, report)))
        if self.observer is not None:
            self.sigterm_results.append(await _maybe_await(self.observer.on_trial_exit(
                request.trial, request.attempt, 143, report.model_dump_json())))

    async def settle(self) -> None:
        """Wait for the 'late' SIGTERM answers still on their way."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)

    async def adopt(self, request: LaunchRequest) -> bool:
        key = (request.trial, request.attempt)
        if self.adoptable is not None:
            if key not in self.adoptable:
                return False
            if key not in self.tasks:
                self._requests[key] = request
                self.tasks[key] = asyncio.get_running_loop().create_task(self._run(request))
            return True
        return key in self.tasks

    async def close(self) -> None:
        """Cancel every simulated attempt (test teardown)."""
        tasks = [*self.tasks.values(), *self._late]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, request: LaunchRequest) -> None:
        outcome = self.behaviour(request)
        observer = self.observer
        if outcome.start_delay:
            await asyncio.sleep(outcome.start_delay)
        if observer is not None:
            await _maybe_await(observer.on_trial_started(request.trial, request.attempt))
        if outcome.hang:
            await asyncio.Event().wait()
        if outcome.latency:
            await asyncio.sleep(outcome.latency)
        if outcome.fail is not None:
            final = Report(kind="failed", trial=request.trial, attempt=request.attempt,
                           reason=outcome.fail)
            code = outcome.exit_code or 1
        else:
            final = Report(kind="final", trial=request.trial, attempt=request.attempt,
                           metrics=dict(outcome.metrics[-1]) if outcome.metrics else {},
                           epochs=[dict(m) for m in outcome.metrics],
                           architecture=outcome.architecture, device=outcome.device)
            code = outcome.exit_code
            if outcome.epoch_reports and self.report_sink is not None:
                for i, m in enumerate(outcome.metrics):
                    await _maybe_await(self.report_sink(request.trial, Report(
                        kind="epoch", trial=request.trial, attempt=request.attempt,
                        epoch=i, metrics=dict(m))))
        if outcome.report and self.report_sink is not None:
            await _maybe_await(self.report_sink(request.trial, final))
        if observer is not None:
            await _maybe_await(
                observer.on_trial_exit(request.trial, request.attempt, code,
                                       final.model_dump_json() if outcome.termination_message
                                       else None)
            )


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value
