"""The search loop's worker: the one task that changes a running search.

It tells the proposal source what ended, decides whether the search ends (or
moves to final training), asks for new trials, checkpoints before any launch
(write-ahead) and launches; suspend, the deadline and the watchdogs run here
too. ``SearchLoop`` (``core``) is this class plus the public surface: reports
and launcher observations only change the ledger and wake the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nas_operator.ledger import Trial, TrialState
from nas_operator.loop.events import EventReason
from nas_operator.loop.front_view import publish_front
from nas_operator.loop.limits import LimitGate, LimitsError, Rejected
from nas_operator.loop.state import fingerprint
from nas_operator.retrained import scored_by, with_retrains

if TYPE_CHECKING:
    from nas_operator.api import NASSearchSpec
    from nas_operator.launcher import Launcher, LaunchRequest
    from nas_operator.ledger import Ledger
    from nas_operator.loop.core import Stopping
    from nas_operator.loop.early_stopping import EarlyStopper
    from nas_operator.loop.events import EventBus
    from nas_operator.loop.persistence import Persistence
    from nas_operator.loop.proposals import NewTrial, ProposalSource
    from nas_operator.loop.state import LoopState
    from nas_operator.loop.timers import Timers
    from nas_operator.metrics import SearchMetrics

log = logging.getLogger("nas_operator.loop")
R = EventReason


def trial_seed(base: int, stage: str, index: int) -> int:
    """Distinct, reproducible seeds per trial (final runs differ from search runs)."""
    salt = 0 if stage == "search" else 7919
    return (base * 1_000_003 + index + salt) % (2**31)


class Worker:
    """The worker half of ``SearchLoop`` (attributes set by ``SearchLoop.__init__``)."""

    namespace: str
    name: str
    generation: int | None
    spec: NASSearchSpec
    launcher: Launcher
    metrics: SearchMetrics | None
    source: ProposalSource
    persistence: Persistence | None
    ledger: Ledger
    state: LoopState
    events: EventBus
    timers: Timers
    _stopping: Stopping | None
    _wake: asyncio.Event
    _launch_lock: asyncio.Lock
    _dirty: bool
    _final_saved: bool

    # provided by SearchLoop
    launch_request: Callable[[Trial], LaunchRequest]
    _current: Callable[[str, int], Trial | None]
    _attempt_failed: Callable[[Trial, str], None]
    _end_after_error: Callable[..., str]
    _changed: Callable[[], None]
    _set_phase: Callable[[str, str, str], None]
    _emit: Callable[..., None]
    _metric: Callable[..., None]
    _observe_duration: Callable[[Trial, float], None]
    _publish_counts: Callable[[], None]
    _resolve_done: Callable[[], None]
    stopper: EarlyStopper | None
    _cancel_stopped: Callable[[], Awaitable[None]]

    # ================================================================ worker
    async def _run(self) -> None:
        try:
            while True:
                await self._step()
                if self.state.ended:
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
        await self._learn()
        async with self._launch_lock:
            await self._cancel_stopped()
            if await self._check_end():
                await self._finish()
                return
            if self.state.phase != "Running":
                await self._maybe_checkpoint()
                return
            await self._propose()
            batch = self._take_slots()
            if batch or self._dirty:
                await self._maybe_checkpoint()
            await self._launch(batch)
        self._publish_counts()

    async def _learn(self) -> None:
        """Tell the source every search trial that ended, then forget their details."""
        items: list[Trial] = []
        while self.ledger.untold:
            rec = self.ledger.get(self.ledger.untold.popleft())
            if isinstance(rec, Trial):
                items.append(rec)
        if not items:
            return
        errors, broken = await self._in_thread(self._learn_batch, items)
        for rec in items:
            rec.told = True
            self.ledger.compact(rec)
        for msg in errors:
            self._emit(R.STRATEGY_ERROR, msg, type="Warning")
        if broken is not None:
            self._emit(R.STRATEGY_ERROR, broken, type="Warning")
            if self._stopping is None or self._stopping[0] != "Failed":  # never "Succeeded"
                self._stopping = ("Failed", "ControllerDiverged", broken)
        self._dirty = True

    def _learn_batch(self, items: list[Trial]) -> tuple[list[str], str | None]:
        errors = self.source.learn(items)
        return errors, self.source.summary(self.state.controller)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._metric("observe_update_duration", time.perf_counter() - started)
            if self.metrics is not None:
                c = self.state.controller
                self.metrics.controller(c.updates, c.entropy, c.baseline)

    async def _check_end(self) -> bool:
        """Decide whether the search ends now (or moves to final training)."""
        final = self.spec.finalTraining
        if self._stopping is not None:
            if (self._stopping[1] == "GoalReached" and self.state.stage == "search"
                    and final is not None and self.ledger.topk):
                await self._cancel_everything("GoalReached", self._stopping[2])
                self._stopping = None
                self._start_final(final.topK)
                return False
            return True
        budget = self.spec.budget
        if self.ledger.active or self.ledger.queue or self.ledger.untold:
            return False
        if self.state.stage == "search":
            if self.ledger.trained("search") < budget.max_trials():
                return False
            if final is not None and self.ledger.topk:
                self._start_final(final.topK)
                return False
        self._stopping = self._completed()
        return True

    def _completed(self) -> Stopping:
        c = self.ledger.counts["search"]
        if c["succeeded"] == 0:
            return ("Failed", "NoSuccessfulTrial", f"all {c['failed'] + c['cancelled']} trials "
                    "ended without a reward")
        best = self.ledger.best
        assert best is not None
        score = "supernet score" if scored_by(self.spec.strategy.type) == "supernet" else "reward"
        stopped = f", {c['stopped']} stopped early" if c.get("stopped") else ""
        msg = (f"{c['succeeded']} trials succeeded, {c['failed']} failed{stopped}; best {best.name} "
               f"{score} {best.reward:.6g}")
        if self.state.stage == "final":
            done = self.ledger.counts["final"]
            msg += f"; final training: {done['succeeded']} succeeded, {done['failed']} failed"
            top = [r.result() for r in self.ledger.topk]
            retrained = [with_retrains(top, r.result()) for r in self.ledger.final_results]
            msg += "".join(f"; retrained {r.trial} (of {r.retrains}) reward {r.reward:.6g}"
                           for r in retrained[:3])
        return ("Succeeded", "Completed", msg)

    def _start_final(self, top_k: int) -> None:
        self.state.stage = "final"
        chosen = self.ledger.topk[:top_k]
        for r in chosen:
            self.ledger.add("final", trial_seed(self.spec.strategy.seed, "final", len(
                self.ledger.trials["final"])), None, r.space, list(r.tokens))
        self._emit(R.FINAL_TRAINING_STARTED, "retraining the top "
                   f"{len(chosen)}: " + ", ".join(r.name for r in chosen))
        self._dirty = True

    async def _propose(self) -> None:
        if self.state.stage != "search" or self._stopping is not None:
            return
        budget = self.spec.budget
        free = budget.parallel() - len(self.ledger.active) - len(self.ledger.queue)
        room = budget.max_trials() - self.ledger.trained("search")
        n = min(free, room)
        if n <= 0:
            return
        try:
            new, rejected = await self._in_thread(self._propose_batch, n)
        except LimitsError as exc:
            self._stopping = ("Failed", exc.reason, str(exc))
            self._dirty = True
            new, rejected = [], exc.rejected  # told already: recorded like any other
        now = time.time()
        for r in rejected:
            index = self.ledger.created("search")
            rec = self.ledger.add_infeasible(
                trial_seed(self.spec.strategy.seed, "search", index), r.proposal.proposal_id,
                r.proposal.space, list(r.proposal.tokens or []), r.figures,
                self.spec.effective_objective().penalty(), r.reason, now)
            self._emit(R.TRIAL_INFEASIBLE, f"trial {rec.name} not launched: {r.reason}", rec.name)
            self._metric("trial_infeasible", r.limit)
            self.ledger.compact(rec)
        for t in new:
            index = self.ledger.created("search")
            self.ledger.add("search", trial_seed(self.spec.strategy.seed, "search", index),
                            t.proposal_id, t.space, t.tokens, t.genotype)
        self._dirty = True

    def _propose_batch(self, n: int) -> tuple[list[NewTrial], list[Rejected]]:
        gate = self._limit_gate()
        try:
            if gate is None:
                return self.source.propose(n), []
            return gate.screen(self.source, n, self.spec.effective_objective().penalty())
        finally:  # the checkpoint before their launch needs it next (or the failed search's)
            if self.persistence is not None:
                self.persistence.remember(self.source)

    def _limit_gate(self) -> LimitGate | None:
        """The search's gate when it has constraints and a strategy to propose (weight-sharing
        searches derive their architecture inside one trainer: nothing to check here)."""
        if self.spec.effective_objective().constraints is None or self.source.mode != "train":
            return None
        gate = getattr(self, "_gate", None)
        if gate is None or gate.spec is not self.spec:
            gate = self._gate = LimitGate(self.spec)
        return gate

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
            self._emit(R.TRIAL_LAUNCHED, f"trial {rec.name} attempt {rec.attempt} launched as "
                       f"{rec.job_name}", rec.name, attempt=rec.attempt, job=rec.job_name)
        results = await asyncio.gather(*(self.launcher.launch(r) for r in requests),
                                       return_exceptions=True)
        for rec, req, res in zip(batch, requests, results, strict=True):
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                self._emit(R.LAUNCH_FAILED, f"trial {rec.name}: launch failed: {res}", rec.name,
                           "Warning")
                if self._current(rec.name, req.attempt) is not None:
                    self._attempt_failed(rec, f"launch failed: {res}")
                with contextlib.suppress(Exception):  # after: whatever it says now is stale
                    await self.launcher.cancel(req.trial, req.attempt)
            elif self._current(rec.name, req.attempt) is not None:
                self._arm_watchdog(rec)

    async def _finish(self) -> None:
        assert self._stopping is not None
        await self._cancel_everything(*self._stopping[1:])
        await self._learn()  # may find the controller broken: then the search failed
        phase, reason, message = self._stopping
        self.state.completion_time = time.time()
        self.state.clock.pause()
        self.timers.cancel_all()
        self._set_phase(phase, reason, message)
        self._emit(R.SEARCH_SUCCEEDED if phase == "Succeeded" else R.SEARCH_FAILED, message,
                   type="Normal" if phase == "Succeeded" else "Warning")
        self._publish_counts()
        self._final_saved = await self._checkpoint()
        self._resolve_done()

    async def _cancel_everything(self, reason: str, message: str) -> None:
        """Cancel every unfinished trial in the ledger first, then stop their attempts.

        In that order, a stopped trainer's answer (an 'interrupted' report, exit 143) meets a
        trial that already ended and is refused as a conflict, never counted as a failure.
        """
        live = [t for t in self.ledger.iter_live() if not t.state.terminal]
        stopping = [(t.name, t.attempt) for t in live if t.state.active]
        if self.stopper is not None:  # stopped early, their processes not yet stopped
            stopping += list(self.stopper.to_cancel.items())
            self.stopper.to_cancel.clear()
        now = time.time()
        for t in live:
            self.timers.clear(t.name)
            if t.state.active:
                self._observe_duration(t, now)
            self.ledger.cancel(t, f"{reason}: {message}", now)
            self._metric("trial_outcome", "cancelled")
            self._emit(R.TRIAL_CANCELLED, f"trial {t.name} cancelled: {reason}", t.name)
            self.ledger.compact(t)  # nothing to tell: a cancelled proposal taught nothing
        self._dirty = True
        self._publish_counts()
        await asyncio.gather(*(self._cancel_quietly(name, a) for name, a in stopping))

    async def _cancel_quietly(self, trial: str, attempt: int) -> None:
        try:
            await self.launcher.cancel(trial, attempt)
        except Exception as exc:  # the attempt may linger; say so, never stop the loop
            self._emit(R.CANCEL_FAILED, f"could not cancel {trial} attempt {attempt}: {exc}",
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
                self.timers.clear(t.name)
                self.ledger.requeue(t)
                self._emit(R.TRIAL_REQUEUED, f"trial {t.name} stopped by suspend; it resumes as "
                           f"attempt {t.attempt}", t.name)
            self._publish_counts()
            await asyncio.gather(*(self._cancel_quietly(t.name, a) for t, a in active))
            self.state.clock.pause()
            self.timers.cancel_deadline()
            self._set_phase("Suspended", "Suspended", "spec.suspend is true")
            self._emit(R.SEARCH_SUSPENDED, f"search suspended; {len(active)} running trials "
                       "stopped and requeued")
            self._changed()

    def _resume(self) -> None:
        self.state.clock.running_since = time.time()
        self._set_phase("Running", "Resumed", "spec.suspend is false")
        self._schedule_deadline()
        self._emit(R.SEARCH_RESUMED, "search resumed")
        self._changed()

    def _schedule_deadline(self) -> None:
        self.timers.schedule_deadline(self.spec.budget.deadline_seconds(), self.state.clock)

    def _deadline_hit(self) -> None:
        if (self.spec.budget.deadline_seconds() is None or self._stopping is not None
                or self.state.phase != "Running"):
            return
        have_best = self.ledger.best is not None
        self._stopping = ("Succeeded" if have_best else "Failed", "DeadlineExceeded",
                          f"spec.budget.deadline ({self.spec.budget.deadline}) passed with "
                          f"{self.ledger.counts['search']['succeeded']} trials succeeded")
        self._wake.set()

    def _arm_watchdog(self, rec: Trial) -> None:
        self.timers.arm(rec.name, rec.attempt, rec.attempt_start,
                        self.spec.trial.activeDeadlineSeconds)

    def _watchdog_fired(self, trial: str, attempt: int) -> None:
        if self._current(trial, attempt) is None:
            return
        self.events.spawn(self._timeout_attempt(trial, attempt))

    async def _timeout_attempt(self, trial: str, attempt: int) -> None:
        """Fail the silent attempt (one failure, the deadline as its reason), then stop it;
        its trainer's 'interrupted' answer then concerns a stale attempt and is refused."""
        async with self._launch_lock:
            rec = self._current(trial, attempt)
            if rec is None:
                return
            limit = self.spec.trial.activeDeadlineSeconds
            try:
                self._attempt_failed(rec, f"exceeded spec.trial.activeDeadlineSeconds ({limit} s)")
            except Exception as exc:  # a background task: nobody else would see it
                self._end_after_error(trial, attempt, "timing it out", exc)
            await self._cancel_quietly(trial, attempt)

    # ================================================================ checkpoint / restore
    async def _maybe_checkpoint(self) -> None:
        if self._dirty:
            await self._checkpoint()

    async def _checkpoint(self) -> bool:
        """Write one checkpoint; True if it was saved."""
        self._dirty = False
        if self.persistence is None:
            return False
        state = self.state.to_json(self.namespace, self.name, self.spec, self.generation)
        texts = {} if self.stopper is None else {"earlyStopping": self.stopper.to_json()}
        try:
            ref, size = await self.persistence.save(state, self.ledger, self.source, texts)
        except Exception as exc:  # storage trouble must not stop the search; say it loudly
            self._dirty = True
            self._emit(R.CHECKPOINT_FAILED, f"checkpoint not written: {exc}", type="Warning")
            return False
        self.state.controller.checkpointRef = ref
        self.state.controller.checkpointBytes = size
        self._metric("set_checkpoint_size", size)
        return True

    async def _restore(self) -> bool:
        if self.persistence is None:
            return False
        restored = await self.persistence.load(fingerprint(self.spec), self.source)
        if restored is None:
            return False
        self.state, self.ledger = restored.state, restored.ledger
        if self.stopper is not None:
            self.stopper.load(restored.data.get("earlyStopping"))
        if self.metrics is not None:
            self.metrics.resume_updates(self.state.controller.updates)
            if self.ledger.best is not None:
                self.metrics.set_best(self.ledger.best.reward)
            publish_front(self)  # type: ignore[arg-type]
        return True

    async def _adopt_all(self) -> None:
        """Re-attach to attempts launched before the restart; those gone are requeued.

        An attempt the checkpoint knew only as launched (``Pending``: no start, no report)
        whose Job is gone most likely never got one (a crash between the write-ahead
        checkpoint and the create): it is launched again under the same attempt number, so
        crashes cannot burn attempts of a trial that never trained. One seen running is
        retried as the next attempt (its Job was deleted), still without counting a failure.
        """
        active = [t for t in self.ledger.iter_live() if t.state.active]
        found = await asyncio.gather(*(self.launcher.adopt(self.launch_request(t)) for t in active),
                                     return_exceptions=True)
        for rec, ok in zip(active, found, strict=True):
            if ok is True:
                self._arm_watchdog(rec)
                continue
            never_started = rec.state is TrialState.PENDING
            self.ledger.requeue(rec, same_attempt=never_started)
            why = ("was never started (no trace of it after a restart); launching it again as"
                   if never_started else "was not found after a restart; relaunching as")
            self._emit(R.TRIAL_REQUEUED, f"trial {rec.name}: its attempt {why} attempt "
                       f"{rec.attempt}", rec.name, "Warning")
        self._dirty = True
