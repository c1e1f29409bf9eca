"""The search loop: one NASSearch, from the first proposal to the last reward.

Pure asyncio; no Kubernetes. The operator and ``kubenas run`` both drive it:

* construct ``SearchLoop(search, launcher, key=..., store=..., metrics=...)``;
* ``await loop.start()`` (resumes from the store's checkpoint if there is
  one: running attempts are re-adopted through ``Launcher.adopt``, never
  relaunched);
* feed it what happens: ``handle_report`` (the status API), and the launcher's
  ``on_trial_started`` / ``on_trial_exit`` / ``on_trial_lost``;
* ``await loop.update_spec(new_spec, generation)`` for live budget, trial and
  suspend changes;
* read ``status()``, ``trial_view(name)``; ``subscribe`` to ``LoopEvent`` s
  (progress bars, Kubernetes Events, NASTrial writes);
* ``await loop.done`` (the final ``NASSearchStatus``), or ``await loop.stop()``
  (shutdown: trials keep running and are adopted by the next loop), or
  ``await loop.delete()`` (cancel every trial, drop the checkpoint).

Construct it inside a running event loop; the per-search ``key`` signs the trial
tokens, so a driver that restarts must pass the same key again (keep it in a
Secret or the output folder).

Inputs are synchronous ledger updates that wake one worker task; only that
task touches the strategy (``ask``/``tell`` run in a thread so the event loop
keeps serving reports), writes checkpoints and launches trials, so a
checkpoint always pairs a ledger with the strategy state of the same moment.
A checkpoint is written before any launch (write-ahead): a restarted loop
never meets a Job it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from controller_policy.contract import Report, TrialDocument
from controller_policy.objective import RewardError, compute_reward
from controller_policy.spaces.base import Architecture, InvalidArchitecture, SearchSpace
from controller_policy.strategies.base import Proposal, Strategy, StrategyError
from nas_operator.api import (
    EPOCHS_IN_STATUS,
    Condition,
    ControllerSummary,
    NASSearch,
    NASSearchSpec,
    NASSearchStatus,
    NASTrialSpec,
    NASTrialStatus,
    SpecError,
    TrialCounts,
    space_class,
)
from nas_operator.checkpoint import (
    CheckpointError,
    CheckpointStore,
    decode_checkpoint,
    encode_checkpoint_text,
)
from nas_operator.launcher import Launcher, LaunchRequest, report_url
from nas_operator.ledger import (
    MAX_EPOCHS_KEPT,
    FinishedTrial,
    Ledger,
    Ranked,
    Trial,
    TrialState,
    report_digest,
)
from nas_operator.metrics import SearchMetrics
from nas_operator.retrained import scored_by, with_retrains
from nas_operator.tokens import generate_key, trial_token

log = logging.getLogger(__name__)

MAX_METRICS = 64
MAX_METRIC_NAME = 128
WATCHDOG_GRACE = 30.0
"""Seconds past ``activeDeadlineSeconds`` before the loop itself ends a silent attempt."""
IMMUTABLE = ("searchSpace", "strategy", "objective")
"""What a running search cannot change (``objective.goal`` excepted: it is a stopping rule)."""


def _immutable_parts(spec: NASSearchSpec) -> dict[str, Any]:
    parts = {k: getattr(spec, k).model_dump(mode="json") for k in IMMUTABLE}
    parts["objective"].pop("goal", None)
    return parts


class ReportOutcome(StrEnum):
    """What became of a report; the status API maps it to an HTTP code."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ReportResult:
    outcome: ReportOutcome
    message: str

    @property
    def ok(self) -> bool:
        return self.outcome in (ReportOutcome.ACCEPTED, ReportOutcome.DUPLICATE)


@dataclass(frozen=True)
class LoopEvent:
    """Something worth telling a person (Kubernetes Event vocabulary: reason, type, message)."""

    reason: str
    """CamelCase: TrialLaunched, TrialStarted, TrialEpoch, TrialSucceeded, TrialRetried,
    TrialFailed, TrialCancelled, TrialRequeued, NewBest, SearchStarted, SearchSuspended,
    SearchResumed, SpecUpdated, FinalTrainingStarted, SearchSucceeded, SearchFailed,
    LaunchFailed, CheckpointFailed, StrategyError."""
    message: str
    type: str = "Normal"
    trial: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """Details; trial events carry ``spec`` (NASTrialSpec) and ``status`` (NASTrialStatus) as
    they were at that moment, so an asynchronous subscriber can write the NASTrial later."""


Subscriber = Callable[[LoopEvent], Any]


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trial_seed(base: int, stage: str, index: int) -> int:
    """Distinct, reproducible seeds per trial (final runs differ from search runs)."""
    salt = 0 if stage == "search" else 7919
    return (base * 1_000_003 + index + salt) % (2**31)


def make_strategy_for(spec: NASSearchSpec, space: SearchSpace) -> Strategy:
    """The strategy the spec names, from ``controller_policy.strategies``."""
    try:
        from controller_policy.strategies import make_strategy  # type: ignore[attr-defined]
    except ImportError as exc:
        raise SpecError(
            [f"spec.strategy.type: strategies are not available in this build ({exc})"]
        ) from None
    return make_strategy(spec.strategy.type, space, spec.strategy_config())


def _fingerprint(spec: NASSearchSpec) -> str:
    text = json.dumps(_immutable_parts(spec), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_metrics(metrics: dict[str, float], where: str) -> str | None:
    if len(metrics) > MAX_METRICS:
        return f"{where}: at most {MAX_METRICS} metrics, got {len(metrics)}"
    for name, value in metrics.items():
        if not name or len(name) > MAX_METRIC_NAME:
            return f"{where}: metric names must be 1..{MAX_METRIC_NAME} characters"
        if not math.isfinite(value):
            return (
                f"{where}.{name} = {value!r} is not finite; report a diverged run as kind 'failed'"
            )
    return None


class SearchLoop:
    """Owns one search: ledger, strategy, budget, checkpoints; launches through a ``Launcher``."""

    def __init__(
        self,
        search: NASSearch,
        launcher: Launcher,
        *,
        key: bytes | None = None,
        store: CheckpointStore | None = None,
        metrics: SearchMetrics | None = None,
        strategy: Strategy | None = None,
        space: SearchSpace | None = None,
        status_url: str | None = None,
        checkpoint_key: str | None = None,
        watchdog_grace: float = WATCHDOG_GRACE,
    ) -> None:
        self.namespace = search.metadata.namespace
        self.name = search.metadata.name
        self.generation = search.metadata.generation
        self.spec = search.spec
        self.launcher = launcher
        self.key = key if key is not None else generate_key()
        self.store = store
        self.metrics = metrics
        self.status_url = status_url
        self.checkpoint_key = checkpoint_key or f"{self.namespace}.{self.name}"
        self.watchdog_grace = watchdog_grace
        self.enas = self.spec.strategy.type == "enas"
        if space is None:
            cls = space_class(self.spec.searchSpace.type)
            if cls is None:
                raise SpecError(
                    [f"spec.searchSpace.type: {self.spec.searchSpace.type!r} is not available "
                     "in this build"]
                )  # fmt: skip
            space = cls(self.spec.searchSpace.options)
        self.space = space
        if strategy is None and not self.enas:
            strategy = make_strategy_for(self.spec, space)
        self.strategy = strategy
        self.ledger = Ledger(self.name)
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.conditions: dict[str, Condition] = {}
        self.stage = "search"
        self.start_time: float | None = None
        self.completion_time: float | None = None
        self.active_seconds = 0.0
        self.running_since: float | None = None
        self.controller = ControllerSummary()
        self._stopping: tuple[str, str, str] | None = None
        self._subscribers: list[Subscriber] = []
        self._background: set[asyncio.Future[Any]] = set()
        self._watchdogs: dict[str, asyncio.TimerHandle] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._launch_lock = asyncio.Lock()
        self._dirty = True
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._best_cache: tuple[str, dict[str, Any] | None] | None = None
        self.done: asyncio.Future[NASSearchStatus] = asyncio.get_running_loop().create_future()
        """Resolves with the final status once the search succeeded or failed."""

    # ================================================================ public API
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``LoopEvent``; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def token(self, trial: str) -> str:
        """The bearer token the trainer of ``trial`` presents to the status API."""
        return trial_token(self.key, self.namespace, self.name, trial)

    async def start(self) -> None:
        """Resume from the checkpoint if one exists, re-adopt running attempts, start working."""
        if self._started:
            raise RuntimeError(f"search {self.name} already started")
        self._started = True
        self.launcher.attach(self)
        restored = await self._restore()
        if self.phase in ("Succeeded", "Failed"):
            self._resolve_done()
            return
        now = time.time()
        if self.start_time is None:
            self.start_time = now
        if restored:
            await self._adopt_all()
        if self.spec.suspend:
            await self._suspend()  # stops attempts adopted above, if any
        else:
            if self.running_since is None:
                self.running_since = now
            self._set_phase("Running", "Started" if not restored else "Resumed",
                            "search resumed from checkpoint" if restored else "search started")
            self._schedule_deadline()
        self._emit("SearchStarted", f"search {self.namespace}/{self.name} "
                   f"{'resumed' if restored else 'started'}: {self.spec.searchSpace.type}, "
                   f"strategy {self.spec.strategy.type}, maxTrials {self.spec.budget.maxTrials}")
        self._dirty = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"loop-{self.name}")
        self._wake.set()

    async def stop(self, *, cancel_trials: bool = False) -> None:
        """Stop working. Trials keep running (a new loop adopts them) unless ``cancel_trials``.

        Later reports for running trials are refused (not found): the trainer falls back to
        its termination message, which the next loop reads when it adopts the attempt.
        """
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._cancel_timers()
        if cancel_trials:
            async with self._launch_lock:
                await self._cancel_everything("SearchDeleted", "the search was deleted")
        if self._started and self.store is not None and self.phase not in ("Succeeded", "Failed"):
            await self._checkpoint()
        for fut in list(self._background):
            fut.cancel()

    async def delete(self) -> None:
        """The NASSearch is gone: cancel its trials and drop its checkpoint."""
        await self.stop(cancel_trials=True)
        if self.store is not None:
            await self.store.delete(self.checkpoint_key)

    def handle_report(self, trial: str, report: Report) -> ReportResult:
        """Apply one trainer report (idempotent); never raises on bad input."""
        rec = self.ledger.get(trial)
        if rec is None:
            return ReportResult(ReportOutcome.NOT_FOUND,
                                f"trial {trial!r} is not part of search {self.namespace}/{self.name}")
        if report.trial != trial:
            return ReportResult(ReportOutcome.BAD_REQUEST,
                                f"report.trial {report.trial!r} does not match the trial {trial!r} "
                                "of the URL")  # fmt: skip
        if isinstance(rec, FinishedTrial) or rec.state.terminal:
            return self._late_report(trial, rec, report)
        if self._stopped:
            return ReportResult(ReportOutcome.NOT_FOUND, f"search {self.namespace}/{self.name} "
                                "is not served by this process any more")
        if rec.state is TrialState.QUEUED or report.attempt != rec.attempt:
            what = ("was stopped; the trial waits for a new attempt" if report.attempt >= rec.attempt
                    and rec.state is TrialState.QUEUED else "is not the current attempt")
            if report.attempt > rec.attempt:
                what = "was never launched"
            return ReportResult(ReportOutcome.CONFLICT,
                                f"trial {trial}: attempt {report.attempt} {what} "
                                f"(current attempt {rec.attempt}, {rec.state.value})")
        problem = _check_metrics(report.metrics, "report.metrics")
        for i, epoch in enumerate(report.epochs[:MAX_EPOCHS_KEPT + 1]):
            problem = problem or _check_metrics(epoch, f"report.epochs[{i}]")
        if problem is None and len(report.epochs) > MAX_EPOCHS_KEPT:
            problem = f"report.epochs: at most {MAX_EPOCHS_KEPT} epochs, got {len(report.epochs)}"
        if problem:
            return ReportResult(ReportOutcome.BAD_REQUEST, problem)
        if self.ledger.mark_running(rec):
            self._emit("TrialStarted", f"trial {trial} attempt {rec.attempt} is running", trial)
        if report.kind == "epoch":
            return self._epoch_report(rec, report)
        if report.kind == "final":
            return self._final_report(rec, report)
        reason = report.reason or report.kind
        self._attempt_failed(rec, f"{report.kind}: {reason}")
        return ReportResult(ReportOutcome.ACCEPTED, f"trial {trial} attempt {rec.attempt} "
                            f"ended: {report.kind}")

    def on_trial_started(self, trial: str, attempt: int) -> bool:
        """The attempt's pod/process started (stale or unknown: ignored, returns False)."""
        rec = None if self._stopped else self._current(trial, attempt)
        if rec is None or not self.ledger.mark_running(rec):
            return False
        self._emit("TrialStarted", f"trial {trial} attempt {attempt} is running", trial)
        self._publish_counts()
        return True

    def on_trial_exit(
        self, trial: str, attempt: int, exit_code: int | None, termination_message: str | None
    ) -> ReportResult | None:
        """The attempt's process ended. Without a final HTTP report, its termination message
        (a ``Report`` as JSON) stands in; otherwise the attempt failed. Stale: ignored (None)."""
        rec = None if self._stopped else self._current(trial, attempt)
        if rec is None:
            return None
        result = None
        if termination_message:
            try:
                report = Report.model_validate_json(termination_message)
            except ValidationError:
                report = None
            if report is not None and report.kind != "epoch":
                result = self.handle_report(trial, report)
        if self._current(trial, attempt) is not None:
            detail = ""
            if termination_message and (result is None or not result.ok):
                detail = f": {termination_message[:200]}"
            if exit_code not in (0, None):
                reason = f"exited with code {exit_code}{detail}"
            else:
                reason = f"exited without a final report{detail}"
            if result is not None and not result.ok:
                reason += f" ({result.message})"
            self._attempt_failed(rec, reason)
        return result

    def on_trial_lost(self, trial: str, attempt: int, reason: str) -> bool:
        """The attempt vanished (pod deleted, node lost): a failed attempt."""
        rec = None if self._stopped else self._current(trial, attempt)
        if rec is None:
            return False
        self._attempt_failed(rec, f"lost: {reason}")
        return True

    async def update_spec(self, spec: NASSearchSpec, generation: int | None = None) -> None:
        """Apply a changed spec live: budget, trial template, finalTraining, suspend.

        ``searchSpace``, ``strategy`` and ``objective`` cannot change (SpecError, nothing changes).
        """
        new, current = _immutable_parts(spec), _immutable_parts(self.spec)
        changed = [k for k in IMMUTABLE if new[k] != current[k]]
        if changed:
            raise SpecError([
                f"spec.{k}: cannot change after the search started; create a new NASSearch"
                for k in changed
            ])
        old = self.spec
        self.spec = spec
        if generation is not None:
            self.generation = generation
        if self.phase in ("Succeeded", "Failed"):
            return
        if spec.budget.deadline != old.budget.deadline:
            self._schedule_deadline()
        goal, best = spec.effective_objective().goal, self.ledger.best
        if goal is not None and best is not None and best.reward >= goal and self._stopping is None:
            self._stopping = ("Succeeded", "GoalReached", f"trial {best.name} already meets the "
                              f"new goal: reward {best.reward:.6g} >= {goal}")
        if spec.suspend and not old.suspend:
            await self._suspend()
        elif old.suspend and not spec.suspend:
            self._resume()
        self._emit("SpecUpdated", f"spec generation {generation} applied: maxTrials "
                   f"{spec.budget.maxTrials}, parallelism {spec.budget.parallelism}, "
                   f"suspend {spec.suspend}")
        self._dirty = True
        self._wake.set()

    def status(self) -> NASSearchStatus:
        """Summary for ``NASSearch.status`` (bounded, whatever the number of trials)."""
        counts = self.ledger.counts["search"]
        states = self.ledger.count_state("search")
        best = self.ledger.best
        scored = {"scoredBy": scored_by(self.spec.strategy.type)}
        top = [r.result().model_copy(update=scored) for r in self.ledger.topk]
        return NASSearchStatus(
            phase=self.phase,  # type: ignore[arg-type]
            reason=self.reason,
            message=self.message,
            observedGeneration=self.generation,
            conditions=list(self.conditions.values()),
            trials=TrialCounts(
                total=self.ledger.created("search"), pending=states["queued"] + states["pending"],
                running=states["running"], succeeded=counts["succeeded"], failed=counts["failed"],
                cancelled=counts["cancelled"], retried=counts["retried"],
            ),  # fmt: skip
            best=best.result(self._best_genotype(best)).model_copy(update=scored) if best else None,
            topK=top,
            finalTraining=[with_retrains(top, r.result(self._genotype(r.tokens)))
                           for r in self.ledger.final_results],
            modelOutput=self.spec.finalTraining.output_uri(self.namespace, self.name)
            if self.stage == "final" and self.spec.finalTraining else None,
            controller=self.controller.model_copy(),
            startTime=rfc3339(self.start_time),
            completionTime=rfc3339(self.completion_time),
        )

    def trial_view(self, name: str) -> tuple[NASTrialSpec, NASTrialStatus] | None:
        """NASTrial spec and status of a trial not yet compacted (None otherwise)."""
        rec = self.ledger.get(name)
        if not isinstance(rec, Trial):
            return None
        arch = None
        if rec.tokens is not None and rec.space is not None:
            arch = Architecture(space=rec.space, tokens=list(rec.tokens),
                                genotype=self._trial_genotype(rec))
        spec = NASTrialSpec(search=self.name, stage=rec.stage, index=rec.index,  # type: ignore[arg-type]
                            attempt=rec.attempt, seed=rec.seed, architecture=arch)
        phase = "Pending" if rec.state is TrialState.QUEUED else rec.state.value
        status = NASTrialStatus(
            phase=phase,  # type: ignore[arg-type]
            attempt=rec.attempt,
            epochs=[dict(e) for e in rec.epochs[-EPOCHS_IN_STATUS:]],
            metrics=dict(rec.metrics), reward=rec.reward,
            startTime=rfc3339(rec.start_time), completionTime=rfc3339(rec.completion_time),
            jobName=rec.job_name if rec.launched or rec.state.terminal else None,
            failureReason=rec.failure_reason if rec.state is not TrialState.SUCCEEDED else None,
        )  # fmt: skip
        return spec, status

    def launch_request(self, trial: Trial) -> LaunchRequest:
        """Everything a launcher needs for the trial's current attempt."""
        return LaunchRequest(
            namespace=self.namespace, search=self.name, trial=trial.name, attempt=trial.attempt,
            job_name=trial.job_name, document=self.trial_document(trial),
            token=self.token(trial.name),
            report_url=report_url(self.status_url, self.namespace, self.name, trial.name)
            if self.status_url else None,
            active_deadline_seconds=self.spec.trial.activeDeadlineSeconds,
            dataset_claim=self.spec.dataset_for(trial.stage).persistentVolumeClaim,
        )  # fmt: skip

    def trial_document(self, trial: Trial) -> TrialDocument:
        """The trainer's input for the trial's current attempt, from the current spec."""
        spec = self.spec
        final = trial.stage == "final"
        arch = None
        if trial.tokens is not None and trial.space is not None:
            arch = Architecture(space=trial.space, tokens=list(trial.tokens),
                                genotype=self._trial_genotype(trial))
        enas_mode = self.enas and not final
        return TrialDocument(
            namespace=self.namespace, search=self.name, trial=trial.name, attempt=trial.attempt,
            seed=trial.seed, mode="enas" if enas_mode else "train",
            architecture=None if enas_mode else arch,
            spaceType=spec.searchSpace.type, spaceOptions=dict(spec.searchSpace.options),
            dataset=spec.dataset_for(trial.stage).trainer_spec(),
            training=spec.final_training_spec() if final else spec.trial.training,
            objective=spec.effective_objective(),
            enas=spec.enas_spec() if enas_mode else None,
        )  # fmt: skip

    # ================================================================ reports
    def _current(self, trial: str, attempt: int) -> Trial | None:
        rec = self.ledger.get(trial)
        if isinstance(rec, Trial) and rec.state.active and rec.attempt == attempt:
            return rec
        return None

    def _late_report(self, trial: str, rec: Trial | FinishedTrial, report: Report) -> ReportResult:
        state, attempt, digest = rec.state, rec.attempt, rec.final_digest
        n_epochs = rec.epochs if isinstance(rec, FinishedTrial) else rec.epoch_count
        if report.kind == "final" and digest is not None and report_digest(
            report.model_dump_json()
        ) == digest:
            return ReportResult(ReportOutcome.DUPLICATE, f"trial {trial}: final report already "
                                "accepted")
        if (report.kind == "epoch" and report.attempt == attempt and report.epoch is not None
                and state is TrialState.SUCCEEDED and report.epoch < n_epochs):
            return ReportResult(ReportOutcome.DUPLICATE, f"trial {trial}: epoch {report.epoch} "
                                "already covered by the final report")
        return ReportResult(ReportOutcome.CONFLICT, f"trial {trial} already ended "
                            f"({state.value}, attempt {attempt}); report not counted")

    def _epoch_report(self, rec: Trial, report: Report) -> ReportResult:
        if report.epoch is None:
            return ReportResult(ReportOutcome.BAD_REQUEST,
                                "report.epoch is required for kind 'epoch' (0-based)")
        entry = {"epoch": float(report.epoch), **report.metrics}
        epochs = rec.epochs
        for i in range(len(epochs) - 1, -1, -1):
            number = int(epochs[i].get("epoch", -1))
            if number == report.epoch:
                if epochs[i] == entry:
                    return ReportResult(ReportOutcome.DUPLICATE,
                                        f"trial {rec.name}: epoch {report.epoch} already recorded")
                epochs[i] = entry
                break
            if number < report.epoch:
                epochs.insert(i + 1, entry)
                break
        else:
            epochs.insert(0, entry)
        del epochs[:-MAX_EPOCHS_KEPT]
        rec.epoch_count = max(rec.epoch_count, report.epoch + 1)
        self._emit("TrialEpoch", f"trial {rec.name} epoch {report.epoch}: "
                   + ", ".join(f"{k}={v:.4g}" for k, v in report.metrics.items()), rec.name,
                   epoch=report.epoch, metrics=dict(report.metrics))
        return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name}: epoch {report.epoch} "
                            "recorded")

    def _final_report(self, rec: Trial, report: Report) -> ReportResult:
        epochs = [dict(e) for e in report.epochs]
        if not epochs:
            epochs = [{k: v for k, v in e.items() if k != "epoch"} for e in rec.epochs]
            if report.metrics and not epochs:
                epochs = [dict(report.metrics)]
        digest = report_digest(report.model_dump_json())
        if self.enas and rec.stage == "search":
            problem = self._adopt_derived(rec, report)
            if problem:
                self._fail_for_good(rec, problem)
                return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name} failed: {problem}")
        try:
            reward = compute_reward(self.spec.effective_objective(), epochs)
        except RewardError as exc:
            self._fail_for_good(rec, f"no reward: {exc}")
            return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name} failed: no reward: {exc}")
        self._succeed(rec, reward, report.metrics or (epochs[-1] if epochs else {}), epochs, digest)
        return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name} succeeded, reward {reward:.6g}")

    def _adopt_derived(self, rec: Trial, report: Report) -> str | None:
        arch = report.architecture
        if arch is None:
            return "the enas final report carries no derived architecture"
        if arch.space != self.spec.searchSpace.type:
            return f"derived architecture is of space {arch.space!r}, not the search's"
        try:
            tokens = self.space.validate_tokens(arch.tokens)
        except InvalidArchitecture as exc:
            return f"derived architecture is invalid: {exc}"
        rec.space, rec.tokens = arch.space, tokens
        return None

    # ================================================================ transitions
    def _succeed(self, rec: Trial, reward: float, metrics: dict[str, float],
                 epochs: list[dict[str, float]], digest: str) -> None:
        now = time.time()
        self._clear_watchdog(rec.name)
        self._observe_duration(rec, now)
        previous = self.ledger.best
        kept = [{"epoch": float(i), **e} for i, e in enumerate(epochs)]
        self.ledger.succeed(rec, reward, metrics, kept, digest, now)
        self._metric("trial_outcome", "succeeded")
        self._metric("observe_reward", reward)
        self._emit("TrialSucceeded", f"trial {rec.name} succeeded: reward {reward:.6g}", rec.name,
                   reward=reward, metrics=dict(metrics))
        best = self.ledger.best
        if rec.stage == "search" and best is not None and best is not previous and best.name == rec.name:
            self._metric("set_best", reward)
            self._emit("NewBest", f"new best: trial {rec.name}, reward {reward:.6g}", rec.name,
                       reward=reward)
            goal = self.spec.effective_objective().goal
            if goal is not None and reward >= goal and self._stopping is None:
                self._stopping = ("Succeeded", "GoalReached",
                                  f"trial {rec.name} reached the goal: reward {reward:.6g} >= {goal}")
        if rec.stage == "final":
            self.ledger.compact(rec)
        self._changed()

    def _attempt_failed(self, rec: Trial, reason: str) -> None:
        now = time.time()
        self._clear_watchdog(rec.name)
        self._observe_duration(rec, now)
        attempt = rec.attempt
        if self.ledger.fail_attempt(rec, reason, self.spec.trial.retries):
            self._metric("trial_outcome", "retried")
            self._emit("TrialRetried", f"trial {rec.name} attempt {attempt} failed ({reason}); "
                       f"retrying as attempt {rec.attempt}", rec.name, "Warning", cause=reason)
            self._changed()
        else:
            self._fail_for_good(rec, reason)

    def _fail_for_good(self, rec: Trial, reason: str) -> None:
        now = time.time()
        self._clear_watchdog(rec.name)
        if rec.name in self.ledger.active:
            self._observe_duration(rec, now)
        self.ledger.fail(rec, reason, now)
        self._metric("trial_outcome", "failed")
        self._emit("TrialFailed", f"trial {rec.name} failed after {rec.failures} failed "
                   f"attempt(s): {reason}", rec.name, "Warning", cause=reason)
        failed = self.ledger.counts["search"]["failed"]  # final-stage failures never fail it
        limit = self.spec.budget.max_failed_trials()
        if rec.stage == "search" and failed > limit and self._stopping is None:
            self._stopping = ("Failed", "TooManyFailedTrials",
                              f"{failed} trials failed, more than spec.budget.maxFailedTrials "
                              f"({limit}); last: {reason}")
        if rec.stage == "final":
            self.ledger.compact(rec)
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
        self._publish_counts()
        self._wake.set()

    # ================================================================ worker
    async def _run(self) -> None:
        try:
            while True:
                await self._step()
                if self.phase in ("Succeeded", "Failed"):
                    return
                await self._wake.wait()
                self._wake.clear()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave the search silently stuck
            log.exception("search loop %s/%s crashed", self.namespace, self.name)
            self._stopping = ("Failed", "InternalError", f"search loop error: {exc!r}")
            async with self._launch_lock:
                await self._finish()

    async def _step(self) -> None:
        await self._tell_all()
        async with self._launch_lock:
            if await self._check_end():
                await self._finish()
                return
            if self.phase != "Running":
                await self._maybe_checkpoint()
                return
            await self._propose()
            batch = self._take_slots()
            if batch or self._dirty:
                await self._maybe_checkpoint()
            await self._launch(batch)
        self._publish_counts()

    async def _tell_all(self) -> None:
        items: list[Trial] = []
        while self.ledger.untold:
            rec = self.ledger.get(self.ledger.untold.popleft())
            if isinstance(rec, Trial):
                items.append(rec)
        if not items:
            return
        if self.strategy is None:
            for rec in items:
                rec.told = True
                self.ledger.compact(rec)
            return
        errors = await self._in_thread(self._tell_batch, items)
        for rec in items:
            rec.told = True
            self.ledger.compact(rec)
        for msg in errors:
            self._emit("StrategyError", msg, type="Warning")
        self._dirty = True

    def _tell_batch(self, items: list[Trial]) -> list[str]:
        assert self.strategy is not None
        errors = []
        for rec in items:
            try:
                if rec.state is TrialState.SUCCEEDED and rec.reward is not None:
                    self.strategy.tell(rec.proposal_id, rec.reward)  # type: ignore[arg-type]
                else:
                    self.strategy.tell_failure(rec.proposal_id)  # type: ignore[arg-type]
            except StrategyError as exc:
                errors.append(f"strategy refused the result of {rec.name}: {exc}")
        self._read_summary()
        return errors

    def _read_summary(self) -> None:
        if self.strategy is None:
            return
        summary = self.strategy.summary()

        def num(key: str) -> float | None:
            v = summary.get(key)
            return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

        updates = summary.get("updates")
        self.controller.updates = int(updates) if isinstance(updates, int) else self.controller.updates
        self.controller.baseline = num("baseline")
        self.controller.entropy = num("entropy") if "entropy" in summary else num(
            "last_mean_entropy")

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._metric("observe_update_duration", time.perf_counter() - started)
            if self.metrics is not None:
                c = self.controller
                self.metrics.controller(c.updates, c.entropy, c.baseline)

    async def _check_end(self) -> bool:
        """Decide whether the search ends now (or moves to final training)."""
        final = self.spec.finalTraining
        if self._stopping is not None:
            if (self._stopping[1] == "GoalReached" and self.stage == "search"
                    and final is not None and self.ledger.topk):
                await self._cancel_everything("GoalReached", self._stopping[2])
                self._stopping = None
                self._start_final(final.topK)
                return False
            return True
        budget = self.spec.budget
        if self.ledger.active or self.ledger.queue or self.ledger.untold:
            return False
        if self.stage == "search":
            if self.ledger.created("search") < budget.max_trials():
                return False
            if final is not None and self.ledger.topk:
                self._start_final(final.topK)
                return False
            self._stopping = self._completed()
            return True
        self._stopping = self._completed()
        return True

    def _completed(self) -> tuple[str, str, str]:
        c = self.ledger.counts["search"]
        if c["succeeded"] == 0:
            return ("Failed", "NoSuccessfulTrial", f"all {c['failed'] + c['cancelled']} trials "
                    "ended without a reward")
        best = self.ledger.best
        assert best is not None
        score = "supernet score" if scored_by(self.spec.strategy.type) == "supernet" else "reward"
        msg = (f"{c['succeeded']} trials succeeded, {c['failed']} failed; best {best.name} "
               f"{score} {best.reward:.6g}")
        if self.stage == "final":
            done = self.ledger.counts["final"]
            msg += f"; final training: {done['succeeded']} succeeded, {done['failed']} failed"
            top = [r.result() for r in self.ledger.topk]
            retrained = [with_retrains(top, r.result()) for r in self.ledger.final_results]
            msg += "".join(f"; retrained {r.trial} (of {r.retrains}) reward {r.reward:.6g}"
                           for r in retrained[:3])
        return ("Succeeded", "Completed", msg)

    def _start_final(self, top_k: int) -> None:
        self.stage = "final"
        chosen = self.ledger.topk[:top_k]
        for r in chosen:
            self.ledger.add("final", trial_seed(self.spec.strategy.seed, "final", len(
                self.ledger.trials["final"])), None, r.space, list(r.tokens))
        self._emit("FinalTrainingStarted", "retraining the top "
                   f"{len(chosen)}: " + ", ".join(r.name for r in chosen))
        self._dirty = True

    async def _propose(self) -> None:
        if self.stage != "search" or self._stopping is not None:
            return
        budget = self.spec.budget
        free = budget.parallel() - len(self.ledger.active) - len(self.ledger.queue)
        room = budget.max_trials() - self.ledger.created("search")
        n = min(free, room)
        if n <= 0:
            return
        if self.strategy is None:  # enas: one trial runs the whole weight-sharing search
            for _ in range(n):
                index = self.ledger.created("search")
                self.ledger.add("search", trial_seed(self.spec.strategy.seed, "search", index),
                                None, None, None)
            self._dirty = True
            return
        strategy = self.strategy
        proposals: list[Proposal] = await self._in_thread(lambda: [strategy.ask() for _ in range(n)])
        for p in proposals:
            index = self.ledger.created("search")
            arch = p.architecture
            self.ledger.add("search", trial_seed(self.spec.strategy.seed, "search", index), p.id,
                            arch.space, list(arch.tokens), arch.genotype)
        self._dirty = True

    def _take_slots(self) -> list[Trial]:
        free = self.spec.budget.parallel() - len(self.ledger.active)
        now = time.time()
        batch = []
        while free > 0 and self.ledger.queue:
            rec = self.ledger.live_trial(self.ledger.queue.popleft())
            self.ledger.mark_launched(rec, now)
            batch.append(rec)
            free -= 1
        if batch:
            self._dirty = True
        return batch

    async def _launch(self, batch: list[Trial]) -> None:
        if not batch:
            return
        requests = [self.launch_request(rec) for rec in batch]
        for rec in batch:
            self._emit("TrialLaunched", f"trial {rec.name} attempt {rec.attempt} launched as "
                       f"{rec.job_name}", rec.name, attempt=rec.attempt, job=rec.job_name)
        results = await asyncio.gather(*(self.launcher.launch(r) for r in requests),
                                       return_exceptions=True)
        for rec, req, res in zip(batch, requests, results, strict=True):
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                self._emit("LaunchFailed", f"trial {rec.name}: launch failed: {res}", rec.name,
                           "Warning")
                if self._current(rec.name, req.attempt) is not None:
                    self._attempt_failed(rec, f"launch failed: {res}")
                with contextlib.suppress(Exception):  # after: whatever it says now is stale
                    await self.launcher.cancel(req.trial, req.attempt)
            elif self._current(rec.name, req.attempt) is not None:
                self._arm_watchdog(rec)

    async def _finish(self) -> None:
        assert self._stopping is not None
        phase, reason, message = self._stopping
        await self._cancel_everything(reason, message)
        await self._tell_all()
        self.completion_time = time.time()
        self._pause_clock()
        self._cancel_timers()
        self._set_phase(phase, reason, message)
        self._emit("SearchSucceeded" if phase == "Succeeded" else "SearchFailed", message,
                   type="Normal" if phase == "Succeeded" else "Warning")
        self._publish_counts()
        await self._checkpoint()
        self._resolve_done()

    async def _cancel_everything(self, reason: str, message: str) -> None:
        """Cancel every unfinished trial in the ledger first, then stop their attempts.

        In that order, a stopped trainer's answer (an 'interrupted' report, exit 143) meets a
        trial that already ended and is refused as a conflict, never counted as a failure.
        """
        live = [t for t in self.ledger.iter_live() if not t.state.terminal]
        stopping = [(t.name, t.attempt) for t in live if t.state.active]
        now = time.time()
        for t in live:
            self._clear_watchdog(t.name)
            if t.state.active:
                self._observe_duration(t, now)
            self.ledger.cancel(t, f"{reason}: {message}", now)
            self._metric("trial_outcome", "cancelled")
            self._emit("TrialCancelled", f"trial {t.name} cancelled: {reason}", t.name)
            self.ledger.compact(t)  # nothing to tell: a cancelled proposal taught nothing
        self._dirty = True
        self._publish_counts()
        await asyncio.gather(*(self._cancel_quietly(name, a) for name, a in stopping))

    async def _cancel_quietly(self, trial: str, attempt: int) -> None:
        try:
            await self.launcher.cancel(trial, attempt)
        except Exception as exc:  # the attempt may linger; say so, never stop the loop
            self._emit("CancelFailed", f"could not cancel {trial} attempt {attempt}: {exc}",
                       trial, "Warning")

    # ================================================================ suspend, deadline, watchdog
    async def _suspend(self) -> None:
        """Requeue the running attempts, then stop them (in that order: see ``_cancel_everything``).

        The next attempt continues from the trainer's checkpoint; a final report that the old
        attempt sends while it is being stopped is refused too (the next attempt redoes little).
        """
        async with self._launch_lock:
            active = [(t, t.attempt) for t in self.ledger.iter_live() if t.state.active]
            for t, _ in active:
                self._clear_watchdog(t.name)
                self.ledger.requeue(t)
                self._emit("TrialRequeued", f"trial {t.name} stopped by suspend; it resumes as "
                           f"attempt {t.attempt}", t.name)
            self._publish_counts()
            await asyncio.gather(*(self._cancel_quietly(t.name, a) for t, a in active))
            self._pause_clock()
            self._cancel_deadline()
            self._set_phase("Suspended", "Suspended", "spec.suspend is true")
            self._emit("SearchSuspended", f"search suspended; {len(active)} running trials stopped "
                       "and requeued")
            self._changed()

    def _resume(self) -> None:
        self.running_since = time.time()
        self._set_phase("Running", "Resumed", "spec.suspend is false")
        self._schedule_deadline()
        self._emit("SearchResumed", "search resumed")
        self._changed()

    def _pause_clock(self) -> None:
        if self.running_since is not None:
            self.active_seconds += max(0.0, time.time() - self.running_since)
            self.running_since = None

    def _elapsed(self) -> float:
        extra = time.time() - self.running_since if self.running_since is not None else 0.0
        return self.active_seconds + max(0.0, extra)

    def _schedule_deadline(self) -> None:
        self._cancel_deadline()
        seconds = self.spec.budget.deadline_seconds()
        if seconds is None or self.running_since is None:
            return
        remaining = seconds - self._elapsed()
        loop = asyncio.get_running_loop()
        self._deadline_timer = loop.call_later(max(0.0, remaining), self._deadline_hit)

    def _deadline_hit(self) -> None:
        seconds = self.spec.budget.deadline_seconds()
        if seconds is None or self._stopping is not None or self.phase != "Running":
            return
        if self._elapsed() + 1e-3 < seconds:
            self._schedule_deadline()
            return
        have_best = self.ledger.best is not None
        self._stopping = ("Succeeded" if have_best else "Failed", "DeadlineExceeded",
                          f"spec.budget.deadline ({self.spec.budget.deadline}) passed with "
                          f"{self.ledger.counts['search']['succeeded']} trials succeeded")
        self._wake.set()

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _arm_watchdog(self, rec: Trial) -> None:
        limit = self.spec.trial.activeDeadlineSeconds
        if limit is None:
            return
        self._clear_watchdog(rec.name)
        started = rec.attempt_start or time.time()
        delay = max(0.0, started + limit + self.watchdog_grace - time.time())
        loop = asyncio.get_running_loop()
        self._watchdogs[rec.name] = loop.call_later(delay, self._watchdog_fired, rec.name, rec.attempt)

    def _watchdog_fired(self, trial: str, attempt: int) -> None:
        self._watchdogs.pop(trial, None)
        if self._current(trial, attempt) is None:
            return
        self._spawn(self._timeout_attempt(trial, attempt))

    async def _timeout_attempt(self, trial: str, attempt: int) -> None:
        """Fail the silent attempt (one failure, the deadline as its reason), then stop it;
        its trainer's 'interrupted' answer then concerns a stale attempt and is refused."""
        async with self._launch_lock:
            rec = self._current(trial, attempt)
            if rec is None:
                return
            limit = self.spec.trial.activeDeadlineSeconds
            self._attempt_failed(rec, f"exceeded spec.trial.activeDeadlineSeconds ({limit} s)")
            await self._cancel_quietly(trial, attempt)

    def _clear_watchdog(self, trial: str) -> None:
        handle = self._watchdogs.pop(trial, None)
        if handle is not None:
            handle.cancel()

    def _cancel_timers(self) -> None:
        self._cancel_deadline()
        for handle in self._watchdogs.values():
            handle.cancel()
        self._watchdogs.clear()

    # ================================================================ checkpoint / restore
    def _state(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "search": self.name,
            "fingerprint": _fingerprint(self.spec), "generation": self.generation,
            "phase": self.phase, "reason": self.reason,
            "message": self.message,
            "conditions": [c.model_dump() for c in self.conditions.values()],
            "stage": self.stage, "start_time": self.start_time,
            "completion_time": self.completion_time, "active_seconds": self.active_seconds,
            "running_since": self.running_since,
            "controller": self.controller.model_dump(),
        }  # fmt: skip

    async def _maybe_checkpoint(self) -> None:
        if self._dirty:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        self._dirty = False
        if self.store is None:
            return
        state = self._state()
        ledger = self.ledger.snapshot()
        strategy = self.strategy

        def encode() -> bytes:
            blob = strategy.to_bytes() if strategy is not None else b""
            text = json.dumps(state, separators=(",", ":"))
            return encode_checkpoint_text(f'{text[:-1]},"ledger":{ledger.to_json()}}}', blob)

        try:
            blob = await asyncio.to_thread(encode)
            ref = await self.store.save(self.checkpoint_key, blob)
        except Exception as exc:  # storage trouble must not stop the search; say it loudly
            self._dirty = True
            self._emit("CheckpointFailed", f"checkpoint not written: {exc}", type="Warning")
            return
        self.controller.checkpointRef = ref
        self.controller.checkpointBytes = len(blob)
        self._metric("set_checkpoint_size", len(blob))

    async def _restore(self) -> bool:
        if self.store is None:
            return False
        blob = await self.store.load(self.checkpoint_key)
        if blob is None:
            return False
        try:
            ckpt = decode_checkpoint(blob)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {self.checkpoint_key}: {exc}") from None
        state = ckpt.state
        if state.get("fingerprint") != _fingerprint(self.spec):
            raise SpecError([
                "spec: the checkpoint was written for a different searchSpace, strategy or "
                f"objective (key {self.checkpoint_key}); restore the old spec or start a new search"
            ])
        if self.strategy is not None and ckpt.strategy:
            strategy = self.strategy
            await asyncio.to_thread(strategy.load_bytes, ckpt.strategy)
        self.ledger = Ledger.from_state(state["ledger"])
        self.phase = state["phase"]
        self.reason, self.message = state["reason"], state["message"]
        self.conditions = {c["type"]: Condition(**c) for c in state["conditions"]}
        self.stage = state["stage"]
        self.start_time, self.completion_time = state["start_time"], state["completion_time"]
        self.active_seconds, self.running_since = state["active_seconds"], state["running_since"]
        self.controller = ControllerSummary(**state["controller"])
        if self.metrics is not None:
            self.metrics.resume_updates(self.controller.updates)
            if self.ledger.best is not None:
                self.metrics.set_best(self.ledger.best.reward)
        return True

    async def _adopt_all(self) -> None:
        """Re-attach to attempts launched before the restart; those gone are requeued."""
        active = [t for t in self.ledger.iter_live() if t.state.active]
        found = await asyncio.gather(*(self.launcher.adopt(self.launch_request(t)) for t in active),
                                     return_exceptions=True)
        for rec, ok in zip(active, found, strict=True):
            if ok is True:
                self._arm_watchdog(rec)
                continue
            self.ledger.requeue(rec)
            self._emit("TrialRequeued", f"trial {rec.name}: its attempt was not found after a "
                       f"restart; relaunching as attempt {rec.attempt}", rec.name, "Warning")
        self._dirty = True

    # ================================================================ small helpers
    def _set_phase(self, phase: str, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = phase, reason, message
        for ctype in ("Running", "Suspended", "Succeeded", "Failed"):
            self._condition(ctype, ctype == phase, reason, message)

    def _condition(self, ctype: str, value: bool, reason: str, message: str) -> None:
        status = "True" if value else "False"
        old = self.conditions.get(ctype)
        if old is not None and old.status == status and old.reason == reason:
            return
        when = old.lastTransitionTime if old is not None and old.status == status else rfc3339(
            time.time())
        self.conditions[ctype] = Condition(type=ctype, status=status, reason=reason,  # type: ignore[arg-type]
                                           message=message, lastTransitionTime=when or "",
                                           observedGeneration=self.generation)

    def _observe_duration(self, rec: Trial, now: float) -> None:
        if rec.attempt_start is not None and rec.state.active:
            self._metric("observe_duration", now - rec.attempt_start)

    def _publish_counts(self) -> None:
        if self.metrics is not None:
            running = sum(c["running"] for c in self.ledger.counts.values())
            waiting = len(self.ledger.queue) + len(self.ledger.active) - running
            self.metrics.set_counts(running, waiting)

    def _metric(self, method: str, *args: Any) -> None:
        if self.metrics is not None:
            getattr(self.metrics, method)(*args)

    def _emit(self, reason: str, message: str, trial: str | None = None, type: str = "Normal",
              **data: Any) -> None:
        if not self._subscribers:
            return
        if trial is not None and reason.startswith("Trial"):
            view = self.trial_view(trial)
            if view is not None:
                data["spec"], data["status"] = view
        event = LoopEvent(reason=reason, message=message, type=type, trial=trial, data=data)
        for callback in list(self._subscribers):
            try:
                result = callback(event)
                if asyncio.iscoroutine(result):
                    self._spawn(result)
            except Exception:
                log.exception("event subscriber failed on %s", reason)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    def _best_genotype(self, best: Ranked) -> dict[str, Any] | None:
        """Genotype of the best trial, derived once per new best (status() is called often)."""
        if self._best_cache is None or self._best_cache[0] != best.name:
            self._best_cache = (best.name, self._genotype(best.tokens))
        return self._best_cache[1]

    def _trial_genotype(self, trial: Trial) -> dict[str, Any]:
        if trial.genotype is None:
            trial.genotype = self._genotype(trial.tokens) or {}
        return trial.genotype

    def _genotype(self, tokens: list[int] | None) -> dict[str, Any] | None:
        """Readable genotype of validated tokens (derived on demand, never stored)."""
        return None if tokens is None else self.space.to_genotype(list(tokens))

    def _resolve_done(self) -> None:
        if not self.done.done():
            self.done.set_result(self.status())
