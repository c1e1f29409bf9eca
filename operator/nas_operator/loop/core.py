"""``SearchLoop``: one NASSearch, from the first proposal to the last reward.

The public surface (see the package docstring) and the one worker task that
changes the search: it tells the proposal source what ended, asks it for new
trials, checkpoints (write-ahead) and launches. Reports and launcher
observations arrive synchronously, change the ledger and wake the worker.
A report's path reads top to bottom: ``handle_report`` (``intake.admit``,
``intake.problem_of``) -> ``_final_report`` (reward) -> ``_succeed`` (ledger,
events) -> the worker's ``_learn`` -> ``ProposalSource.learn`` -> ``strategy.tell``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from controller_policy.contract import Report, TrialDocument
from controller_policy.objective import RewardError, compute_reward, objective_point
from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies.base import Strategy
from nas_operator.api import (
    NASSearch,
    NASSearchSpec,
    NASSearchStatus,
    NASTrialSpec,
    NASTrialStatus,
    SpecError,
    space_class,
)
from nas_operator.checkpoint import CheckpointStore
from nas_operator.launcher import Launcher, LaunchRequest
from nas_operator.ledger import Ledger, Ranked, Trial, report_digest
from nas_operator.loop.build import build_parts
from nas_operator.loop.early_stopping import EarlyStopper, StopsEarly
from nas_operator.loop.events import EventBus, EventReason, Subscriber
from nas_operator.loop.front_view import publish_front
from nas_operator.loop.intake import (
    ReportOutcome,
    ReportResult,
    admit,
    final_epochs,
    problem_of,
    record_epoch,
)
from nas_operator.loop.limits import prestart
from nas_operator.loop.persistence import Persistence
from nas_operator.loop.proposals import ProposalSource, proposal_source
from nas_operator.loop.state import IMMUTABLE, LoopState, immutable_parts
from nas_operator.loop.timers import WATCHDOG_GRACE, Timers
from nas_operator.loop.views import (
    condition,
    launch_request,
    search_status,
    trial_document,
    trial_view,
)
from nas_operator.loop.worker import Worker
from nas_operator.metrics import SearchMetrics
from nas_operator.tokens import generate_key, trial_token

log = logging.getLogger("nas_operator.loop")
R = EventReason
Stopping = tuple[str, str, str]
"""(phase, reason, message) the search ends with once the worker gets to it."""


class SearchLoop(Worker, StopsEarly):
    """Owns one search: ledger, proposal source, budget, checkpoints; launches through a
    ``Launcher``."""

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
        self.metrics = metrics
        self.status_url = status_url
        self.checkpoint_key = checkpoint_key or f"{self.namespace}.{self.name}"
        if space is None:
            cls = space_class(self.spec.searchSpace.type)
            assert cls is not None  # the spec's type was checked against the registry
            space = cls(self.spec.searchSpace.options)
        self.space = space
        self.source: ProposalSource = proposal_source(self.spec, space, strategy)
        es = self.spec.earlyStopping
        self.stopper = (EarlyStopper(es, self.spec.effective_objective().metric)
                        if es is not None and not self.weight_sharing else None)
        self.persistence: Persistence | None = None
        self.store = store
        self.ledger = Ledger(self.name)
        self.state = LoopState()
        self.events = EventBus(self.trial_view)
        self.timers = Timers(self._deadline_hit, self._watchdog_fired, watchdog_grace)
        self._stopping: Stopping | None = None
        self._wake = asyncio.Event()
        self._launch_lock = asyncio.Lock()
        self._dirty = True
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._final_saved = False
        """Whether the checkpoint of the ended search was written (``stop`` may cancel it)."""
        self._best_cache: tuple[str, dict[str, Any] | None] | None = None
        self.front_genotypes: dict[str, dict[str, Any] | None] = {}
        """Genotypes of the front members the status shows (``front_view``)."""
        self.done: asyncio.Future[NASSearchStatus] = asyncio.get_running_loop().create_future()
        """Resolves with the final status once the search succeeded or failed."""

    @classmethod
    async def create(cls, search: NASSearch, launcher: Launcher, *,
                     build_timeout: float | None = None, **options: Any) -> SearchLoop:
        """A loop whose space and strategy were built off the event loop, within
        ``build_timeout`` seconds (``build.BUILD_TIMEOUT``); ``BuildTimeout`` past it.
        ``options``: the constructor's keywords but ``space`` and ``strategy``."""
        prestart(search.spec)  # the counting process imports torch while the strategy builds
        space, strategy = await build_parts(search.spec, build_timeout)
        return cls(search, launcher, space=space, strategy=strategy, **options)

    # ================================================================ read-only
    @property
    def strategy(self) -> Strategy | None:
        """The multi-trial strategy (None for weight sharing)."""
        return getattr(self.source, "strategy", None)

    @property
    def weight_sharing(self) -> bool:
        """One trainer runs the whole search (ENAS, DARTS): no strategy in the loop."""
        return self.source.mode != "train"

    @property
    def store(self) -> CheckpointStore | None:
        """Where checkpoints go (None: nowhere); set it before ``start``."""
        return self.persistence.store if self.persistence is not None else None

    @store.setter
    def store(self, store: CheckpointStore | None) -> None:
        self.persistence = Persistence(store, self.checkpoint_key) if store is not None else None

    @property
    def phase(self) -> str:
        return self.state.phase

    @property
    def controller(self) -> Any:
        return self.state.controller

    def status(self) -> NASSearchStatus:
        """Summary for ``NASSearch.status`` (bounded, whatever the number of trials)."""
        return search_status(self)

    def trial_view(self, name: str) -> tuple[NASTrialSpec, NASTrialStatus] | None:
        """NASTrial spec and status of a trial not yet compacted (None otherwise)."""
        return trial_view(self, name)

    def launch_request(self, trial: Trial) -> LaunchRequest:
        """Everything a launcher needs for the trial's current attempt."""
        return launch_request(self, trial)

    def trial_document(self, trial: Trial) -> TrialDocument:
        """The trainer's input for the trial's current attempt, from the current spec."""
        return trial_document(self, trial)

    def token(self, trial: str) -> str:
        """The bearer token the trainer of ``trial`` presents to the status API."""
        return trial_token(self.key, self.namespace, self.name, trial)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``LoopEvent``; returns an unsubscribe function."""
        return self.events.subscribe(callback)

    # ================================================================ lifecycle
    async def start(self) -> None:
        """Resume from the checkpoint if one exists, re-adopt running attempts, start working."""
        if self._started:
            raise RuntimeError(f"search {self.name} already started")
        self._started = True
        self.launcher.attach(self)
        restored = await self._restore()
        if self.state.ended:
            self._final_saved = True
            self._resolve_done()
            return
        now = time.time()
        if self.state.start_time is None:
            self.state.start_time = now
        if restored:
            await self._adopt_all()
        if self.spec.suspend:
            await self._suspend()  # stops attempts adopted above, if any
        else:
            self.state.clock.run(now)
            self._set_phase("Running", "Started" if not restored else "Resumed",
                            "search resumed from checkpoint" if restored else "search started")
            self._schedule_deadline()
        self._emit(R.SEARCH_STARTED, f"search {self.namespace}/{self.name} "
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
        self.timers.cancel_all()
        if cancel_trials:
            async with self._launch_lock:
                await self._cancel_everything("SearchDeleted", "the search was deleted")
        if self._started and self.persistence is not None and not (
                self.state.ended and self._final_saved):  # stopped mid-way through its last one
            await self._checkpoint()
        self.events.cancel_all()

    async def checkpoint_now(self) -> bool:
        """Write a checkpoint of the ledger as it is now (retention's write-ahead: a trial's
        object may go once this returns True); False when none could be written."""
        if self.persistence is None or self._stopped:
            return False
        async with self._launch_lock:
            return await self._checkpoint()

    async def delete(self) -> None:
        """The NASSearch is gone: cancel its trials and drop its checkpoint."""
        await self.stop(cancel_trials=True)
        if self.persistence is not None:
            await self.persistence.delete()

    async def update_spec(self, spec: NASSearchSpec, generation: int | None = None) -> None:
        """Apply a changed spec live: budget, trial template, finalTraining, suspend.

        ``searchSpace``, ``strategy`` and ``objective`` cannot change (SpecError, nothing changes).
        """
        new, current = immutable_parts(spec), immutable_parts(self.spec)
        changed = [k for k in IMMUTABLE if new[k] != current[k]]
        if spec.earlyStopping != self.spec.earlyStopping:
            changed.append("earlyStopping")
        if changed:
            raise SpecError([
                f"spec.{k}: cannot change after the search started; create a new NASSearch"
                for k in changed
            ])
        old = self.spec
        self.spec = spec
        if generation is not None:
            self.generation = generation
        if self.state.ended:
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
        self._emit(R.SPEC_UPDATED, f"spec generation {generation} applied: maxTrials "
                   f"{spec.budget.maxTrials}, parallelism {spec.budget.parallelism}, "
                   f"suspend {spec.suspend}")
        self._dirty = True
        self._wake.set()

    # ================================================================ reports and observations
    def handle_report(self, trial: str, report: Report) -> ReportResult:
        """Apply one trainer report (idempotent); never raises, whatever the report holds.

        An unexpected error while applying it ends the attempt with that error as its reason
        (a failed attempt, retried as usual) instead of leaving the trial active forever.
        """
        try:
            return self._apply_report(trial, report)
        except Exception as exc:
            reason = self._end_after_error(trial, report.attempt, "handling its report", exc,
                                           stop=True)
            return ReportResult(ReportOutcome.BAD_REQUEST, f"trial {trial}: report not "
                                f"counted: {reason}")

    def _apply_report(self, trial: str, report: Report) -> ReportResult:
        rec = admit(self.ledger, f"{self.namespace}/{self.name}", trial, report,
                           serving=not self._stopped)
        if isinstance(rec, ReportResult):
            return rec
        problem = problem_of(report)
        if problem:
            return ReportResult(ReportOutcome.BAD_REQUEST, problem)
        if self.ledger.mark_running(rec):
            self._emit(R.TRIAL_STARTED, f"trial {trial} attempt {rec.attempt} is running", trial)
        if report.kind == "epoch":
            result = record_epoch(rec, report)
            if result.outcome is ReportOutcome.ACCEPTED:
                self.ledger.touch(rec)
                self._emit(R.TRIAL_EPOCH, f"trial {rec.name} epoch {report.epoch}: "
                           + ", ".join(f"{k}={v:.4g}" for k, v in report.metrics.items()),
                           rec.name, epoch=report.epoch, metrics=dict(report.metrics))
                self._early_stop(rec)
            return result
        if report.kind == "final":
            return self._final_report(rec, report)
        reason = report.reason or report.kind
        self._attempt_failed(rec, f"{report.kind}: {reason}")
        return ReportResult(ReportOutcome.ACCEPTED, f"trial {trial} attempt {rec.attempt} "
                            f"ended: {report.kind}")

    def _final_report(self, rec: Trial, report: Report) -> ReportResult:
        epochs = final_epochs(rec, report)
        digest = report_digest(report.model_dump_json())
        if rec.stage == "search":
            problem = self.source.accept_final(rec, report, self.space)
            self.ledger.touch(rec)
            if problem:
                self._fail_for_good(rec, problem)
                return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name} failed: {problem}")
        try:
            objective = self.spec.effective_objective()
            reward = compute_reward(objective, epochs, report.metrics)
            rec.point = objective_point(objective, epochs, report.metrics)
        except RewardError as exc:
            self._fail_for_good(rec, f"no reward: {exc}")
            return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name} failed: no reward: {exc}")
        self._succeed(rec, reward, report.metrics or (epochs[-1] if epochs else {}), epochs, digest,
                      report.device)
        return ReportResult(ReportOutcome.ACCEPTED, f"trial {rec.name} succeeded, reward {reward:.6g}")

    def _end_after_error(self, trial: str, attempt: int, what: str, exc: Exception,
                         stop: bool = False) -> str:
        """An unexpected error while ``what`` for one attempt: log it, end that attempt with
        the error as its reason (if it is still current), stop its process if ``stop`` (it
        may still run after a report); returns the reason."""
        log.exception("search %s/%s: trial %s attempt %d: error while %s", self.namespace,
                      self.name, trial, attempt, what)
        reason = f"internal error while {what}: {type(exc).__name__}: {str(exc)[:200]}"
        rec = self._current(trial, attempt)
        if rec is None:
            return reason
        try:
            self._attempt_failed(rec, reason)
        except Exception:  # the failure path itself broke: still take the attempt off the books
            log.exception("search %s/%s: trial %s: could not fail attempt %d cleanly",
                          self.namespace, self.name, trial, attempt)
            if self._current(trial, attempt) is not None:
                self.ledger.fail_attempt(rec, reason, self.spec.trial.retries)
                self._changed()
        if stop:
            with contextlib.suppress(RuntimeError):  # no running event loop: nothing to stop
                self.events.spawn(self._cancel_quietly(trial, attempt))
        return reason

    def on_trial_started(self, trial: str, attempt: int) -> bool:
        """The attempt's pod/process started (stale or unknown: ignored, returns False)."""
        rec = None if self._stopped else self._current(trial, attempt)
        if rec is None or not self.ledger.mark_running(rec):
            return False
        self._emit(R.TRIAL_STARTED, f"trial {trial} attempt {attempt} is running", trial)
        self._publish_counts()
        return True

    def on_trial_exit(
        self, trial: str, attempt: int, exit_code: int | None, termination_message: str | None
    ) -> ReportResult | None:
        """The attempt's process ended. Without a final HTTP report, its termination message
        (a ``Report`` as JSON) stands in; otherwise the attempt failed. Stale: ignored (None).
        Never raises: an unexpected error ends the attempt with that error as its reason."""
        try:
            return self._apply_exit(trial, attempt, exit_code, termination_message)
        except Exception as exc:
            reason = self._end_after_error(trial, attempt, "handling its exit", exc)
            return ReportResult(ReportOutcome.BAD_REQUEST, reason)

    def _apply_exit(
        self, trial: str, attempt: int, exit_code: int | None, termination_message: str | None
    ) -> ReportResult | None:
        rec = None if self._stopped else self._current(trial, attempt)
        if rec is None:
            return None
        result = None
        if termination_message:
            try:
                report = Report.model_validate_json(termination_message)
            except (ValidationError, ValueError, RecursionError):  # unreadable: no report
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
        try:
            self._attempt_failed(rec, f"lost: {reason}")
        except Exception as exc:
            self._end_after_error(trial, attempt, "handling its loss", exc)
        return True

    def is_current(self, trial: str, attempt: int) -> bool:
        """Whether ``attempt`` is the trial's launched, unfinished attempt."""
        return self._current(trial, attempt) is not None

    def _current(self, trial: str, attempt: int) -> Trial | None:
        rec = self.ledger.get(trial)
        if isinstance(rec, Trial) and rec.state.active and rec.attempt == attempt:
            return rec
        return None

    # ================================================================ transitions
    def _succeed(self, rec: Trial, reward: float, metrics: dict[str, float],
                 epochs: list[dict[str, float]], digest: str, device: str | None = None) -> None:
        now = time.time()
        self.timers.clear(rec.name)
        self._observe_duration(rec, now)
        previous = self.ledger.best
        kept = [{"epoch": float(i), **e} for i, e in enumerate(epochs)]
        if self.stopper is not None:
            self.stopper.on_success(rec, kept)
        self.ledger.succeed(rec, reward, metrics, kept, digest, now, device)
        publish_front(self)
        self._metric("trial_outcome", "succeeded")
        self._metric("observe_reward", reward)
        self._emit(R.TRIAL_SUCCEEDED, f"trial {rec.name} succeeded: reward {reward:.6g}", rec.name,
                   reward=reward, metrics=dict(metrics))
        best = self.ledger.best
        if rec.stage == "search" and best is not None and best is not previous and best.name == rec.name:
            self._metric("set_best", reward)
            self._emit(R.NEW_BEST, f"new best: trial {rec.name}, reward {reward:.6g}", rec.name,
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
        self.timers.clear(rec.name)
        self._observe_duration(rec, now)
        attempt = rec.attempt
        if self.ledger.fail_attempt(rec, reason, self.spec.trial.retries):
            self._metric("trial_outcome", "retried")
            self._emit(R.TRIAL_RETRIED, f"trial {rec.name} attempt {attempt} failed ({reason}); "
                       f"retrying as attempt {rec.attempt}", rec.name, "Warning", cause=reason)
            self._changed()
        else:
            self._fail_for_good(rec, reason)

    def _fail_for_good(self, rec: Trial, reason: str) -> None:
        now = time.time()
        self.timers.clear(rec.name)
        if rec.name in self.ledger.active:
            self._observe_duration(rec, now)
        self.ledger.fail(rec, reason, now)
        self._metric("trial_outcome", "failed")
        self._emit(R.TRIAL_FAILED, f"trial {rec.name} failed after {rec.failures} failed "
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

    # ================================================================ small helpers
    def _set_phase(self, phase: str, reason: str, message: str) -> None:
        state = self.state
        state.phase, state.reason, state.message = phase, reason, message
        for ctype in ("Running", "Suspended", "Succeeded", "Failed"):
            new = condition(state.conditions.get(ctype), ctype, ctype == phase, reason,
                                  message, self.generation)
            if new is not None:
                state.conditions[ctype] = new

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

    def _emit(self, reason: EventReason, message: str, trial: str | None = None,
              type: str = "Normal", **data: Any) -> None:
        self.events.emit(reason, message, trial, type, **data)

    def best_genotype(self, best: Ranked) -> dict[str, Any] | None:
        """Genotype of the best trial, derived once per new best (status() is called often)."""
        if self._best_cache is None or self._best_cache[0] != best.name:
            self._best_cache = (best.name, self.genotype(best.tokens))
        return self._best_cache[1]

    def trial_genotype(self, trial: Trial) -> dict[str, Any]:
        if trial.genotype is None:
            trial.genotype = self.genotype(trial.tokens) or {}
        return trial.genotype

    def genotype(self, tokens: list[int] | None) -> dict[str, Any] | None:
        """Readable genotype of validated tokens (derived on demand, never stored)."""
        return None if tokens is None else self.space.to_genotype(list(tokens))

    def _resolve_done(self) -> None:
        if not self.done.done():
            self.done.set_result(self.status())
