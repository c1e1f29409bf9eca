"""Mirror one search loop into Kubernetes: NASSearch status, NASTrial statuses, Events.

The loop emits ``LoopEvent`` s synchronously; this writer captures what
changed at that instant (a trial's view is taken at once, before the ledger
compacts the trial) and writes it from a background task:

* NASTrial statuses: the latest view per trial, coalesced (ten epoch reports in
  a burst cost one write), at most ``concurrency`` writes in flight, only for
  NASTrials that exist (the launcher says when one has been created);
* the NASSearch status: at most once per ``interval`` while busy, at once on a
  phase change; unchanged statuses are not written again;
* Kubernetes Events for milestones and problems (not one per trial).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nas_operator.api import Condition, NASSearchStatus, NASTrialStatus, SearchProgress
from nas_operator.kube.api import NASSEARCHES, NASTRIALS, ApiError, KubeApi
from nas_operator.kube.events import EventRecorder, involved
from nas_operator.kube.labels import SEARCH_KIND, TRIAL_KIND
from nas_operator.loop import EventReason, LoopEvent, SearchLoop, rfc3339

log = logging.getLogger(__name__)

SEARCH_EVENTS = frozenset({
    EventReason.SEARCH_STARTED, EventReason.SEARCH_SUSPENDED, EventReason.SEARCH_RESUMED,
    EventReason.SPEC_UPDATED, EventReason.FINAL_TRAINING_STARTED, EventReason.SEARCH_SUCCEEDED,
    EventReason.SEARCH_FAILED, EventReason.NEW_BEST, EventReason.CHECKPOINT_FAILED,
    EventReason.STRATEGY_ERROR, EventReason.LAUNCH_FAILED, EventReason.CANCEL_FAILED,
})
"""Loop events worth an Event on the NASSearch."""
TRIAL_EVENTS = frozenset({EventReason.TRIAL_RETRIED, EventReason.TRIAL_FAILED,
                          EventReason.TRIAL_REQUEUED, EventReason.LAUNCH_FAILED,
                          EventReason.TRIAL_EARLY_STOPPED})
"""Loop events worth an Event on the NASTrial."""
TERMINAL_PHASES = ("Succeeded", "Failed")


def condition(ctype: str, value: bool, reason: str, message: str,
              generation: int | None = None, old: Condition | None = None) -> Condition:
    """A condition; keeps ``old``'s transition time when the status did not change."""
    status = "True" if value else "False"
    when = old.lastTransitionTime if old is not None and old.status == status else rfc3339(
        time.time())
    return Condition(type=ctype, status=status, reason=reason, message=message,  # type: ignore[arg-type]
                     lastTransitionTime=when or "", observedGeneration=generation)


def search_ref(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return involved(SEARCH_KIND, meta["namespace"], meta["name"], meta.get("uid"))


async def write_search_status(api: KubeApi, namespace: str, name: str,
                              status: dict[str, Any]) -> None:
    """Merge ``status`` into the NASSearch's status subresource."""
    await api.patch(NASSEARCHES, namespace, name, {"status": status}, subresource="status")


async def _nothing() -> None:
    return None


class StatusWriter:
    """Writes one search's statuses and events; ``start`` it after the loop is built."""

    def __init__(self, api: KubeApi, events: EventRecorder, loop: SearchLoop,
                 owner: dict[str, Any], *, interval: float = 1.0, concurrency: int = 32) -> None:
        self.api = api
        self.events = events
        self.loop = loop
        self.owner = owner
        self.namespace = owner["metadata"]["namespace"]
        self.name = owner["metadata"]["name"]
        self.interval = interval
        self.concurrency = concurrency
        self.trial_window = min(0.25, interval)
        """Seconds NASTrial writes wait so that changes arriving together are written once."""
        self.trial_round = 8 * concurrency
        """NASTrial statuses written per round at most: between rounds the NASSearch status
        gets its turn (with a thousand trials in flight, one round of every pending status
        took minutes on a loaded machine, and the search's progress lagged that long)."""
        self.extra_conditions: dict[str, Condition] = {}
        """Conditions the controller sets besides the loop's (SpecValid)."""
        self.trial_conditions: dict[str, dict[str, Condition]] = {}
        self.progress: SearchProgress | None = None
        self.trial_exists: Callable[[str], bool] = lambda _trial: True
        """Whether a trial's NASTrial exists yet (writes wait for it); set by the controller."""
        self.trial_uid: Callable[[str], str | None] = lambda _trial: None
        self.before_final: Callable[[], Awaitable[None]] = _nothing
        """Awaited before the search's final status is written (retention's last deletions)."""
        self._trials: dict[str, dict[str, Any]] = {}
        self._search_dirty = True
        self._last_search: str | None = None
        self._last_phase: str | None = None
        self._last_write = 0.0
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.writes = {"search": 0, "trial": 0}

    # -- inputs (synchronous, from the loop's events) ---------------------------------------
    def start(self) -> None:
        self.loop.subscribe(self.on_event)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"status-{self.name}")

    def on_event(self, event: LoopEvent) -> None:
        if self._closed:
            return
        self._search_dirty = True
        if event.trial is not None:
            if event.reason == EventReason.TRIAL_STARTED:
                self._trial_condition(event.trial, condition(
                    "Scheduled", True, "Running", "the trainer is running",
                    old=self.trial_conditions.get(event.trial, {}).get("Scheduled")))
            self.capture(event.trial)
            if event.reason == EventReason.TRIAL_EPOCH and self.loop.weight_sharing:
                self.progress = SearchProgress(
                    trial=event.trial, epoch=int(event.data.get("epoch", 0)),
                    epochs=self.loop.spec.trial.training.epochs,
                    metrics=dict(event.data.get("metrics") or {}))
            if event.reason in TRIAL_EVENTS:
                self.events.post(self._trial_ref(event.trial), event.type, event.reason,
                                 event.message)
        if event.reason in SEARCH_EVENTS:
            self.events.post(search_ref(self.owner), event.type, event.reason, event.message)
        self._wake.set()

    def capture(self, trial: str) -> None:
        """Take the trial's current view now (it may be compacted away later)."""
        view = self.loop.trial_view(trial)
        if view is None:
            return
        status: NASTrialStatus = view[1]
        conditions = self.trial_conditions.get(trial)
        if conditions:
            status = status.model_copy(update={"conditions": list(conditions.values())})
        self._trials[trial] = status.model_dump(mode="json")
        if status.phase in ("Succeeded", "Failed", "Cancelled", "EarlyStopped"):
            self.trial_conditions.pop(trial, None)
        self._wake.set()

    def finished(self, trial: str, phase: str, attempt: int, reward: float | None) -> None:
        """The final phase (and reward) of a trial the ledger has already compacted."""
        status: dict[str, Any] = {"phase": phase, "attempt": attempt}
        if reward is not None:
            status["reward"] = reward
        self._trials[trial] = status
        self._wake.set()

    def forget(self, trial: str) -> None:
        """The trial's NASTrial was deleted (retention): nothing more to write for it."""
        self._trials.pop(trial, None)
        self.trial_conditions.pop(trial, None)

    def trial_problem(self, trial: str, attempt: int, reason: str, message: str) -> None:
        """A pending pod cannot go on (no node fits, image pull fails): condition + Event."""
        self._trial_condition(trial, condition("Scheduled", False, reason, message))
        self.capture(trial)
        self.events.post(self._trial_ref(trial), "Warning", reason,
                         f"trial {trial} attempt {attempt} is pending: {reason}: {message}")

    def set_condition(self, ctype: str, value: bool, reason: str, message: str) -> None:
        """A search-level condition besides the loop's own (kept until changed)."""
        self.extra_conditions[ctype] = condition(ctype, value, reason, message,
                                                 self.loop.generation,
                                                 self.extra_conditions.get(ctype))
        self._search_dirty = True
        self._wake.set()

    def poke(self, trial: str) -> None:
        """The NASTrial now exists: pending writes for it may go."""
        if trial in self._trials:
            self._wake.set()

    def _trial_condition(self, trial: str, cond: Condition) -> None:
        self.trial_conditions.setdefault(trial, {})[cond.type] = cond

    def _trial_ref(self, trial: str) -> dict[str, Any]:
        return involved(TRIAL_KIND, self.namespace, trial, self.trial_uid(trial))

    # -- the writer task ----------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write_trials()
                if self._search_dirty:
                    wait = self.interval - (time.monotonic() - self._last_write)
                    if wait > 0 and self.loop.phase == self._last_phase:
                        self._wake_later(wait)
                    else:
                        await self._write_search()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a status write kill the writer
                log.exception("status write for %s/%s failed", self.namespace, self.name)
                self._wake_later(self.interval)

    def _wake_later(self, delay: float) -> None:
        if self._timer is None:
            def fire() -> None:
                self._timer = None
                self._wake.set()

            self._timer = asyncio.get_running_loop().call_later(delay, fire)

    def search_status(self) -> dict[str, Any]:
        """The NASSearch status as written: the loop's summary plus our conditions."""
        status: NASSearchStatus = self.loop.status()
        conditions = {c.type: c for c in status.conditions}
        conditions.update(self.extra_conditions)
        status = status.model_copy(update={"conditions": list(conditions.values()),
                                           "progress": self.progress})
        return status.model_dump(mode="json")

    async def _write_search(self) -> None:
        if self.loop.phase in TERMINAL_PHASES:
            await self.before_final()
            # Whoever sees the search finished must find every trial's final status written.
            await self._write_every_trial()
        self._search_dirty = False
        status = self.search_status()
        text = json.dumps(status, sort_keys=True)
        if text == self._last_search:
            return
        self._last_write = time.monotonic()
        self._last_phase = status["phase"]
        try:
            await write_search_status(self.api, self.namespace, self.name, status)
        except ApiError as exc:
            if exc.not_found:
                return  # the search is gone
            self._search_dirty = True
            raise
        self._last_search = text
        self.writes["search"] += 1

    async def _write_trials(self) -> None:
        ready = [t for t in self._trials if self.trial_exists(t)]
        if not ready:
            return
        if self.trial_window > 0:  # let a burst of changes to the same trials coalesce
            await asyncio.sleep(self.trial_window)
            ready = [t for t in self._trials if self.trial_exists(t)]
        ready = ready[:self.trial_round]
        semaphore = asyncio.Semaphore(self.concurrency)

        done: set[str] = set()

        async def write(trial: str, status: dict[str, Any]) -> None:
            async with semaphore:
                try:
                    await self.api.patch(NASTRIALS, self.namespace, trial, {"status": status},
                                         subresource="status")
                    self.writes["trial"] += 1
                except ApiError as exc:
                    if exc.not_found:
                        done.add(trial)  # the trial is gone: nothing to mirror
                        return
                    log.warning("NASTrial %s status not written: %s", trial, exc)
                    return
                done.add(trial)

        batch = {t: self._trials.pop(t) for t in ready}
        try:
            await asyncio.gather(*(write(t, s) for t, s in batch.items()))
        finally:  # failed or interrupted writes stay pending (unless a newer status came)
            for trial, status in batch.items():
                if trial not in done:
                    self._trials.setdefault(trial, status)
        if any(t in self._trials for t in batch):
            self._wake_later(self.interval)
        elif len(self._trials) > 0:  # more than one round was pending: the next round soon
            self._wake.set()

    async def flush(self, timeout: float = 10.0) -> None:
        """Write everything pending now (the search finished or the operator stops)."""
        try:
            await asyncio.wait_for(self._flush_now(), timeout)
        except (TimeoutError, ApiError) as exc:
            log.warning("final status flush of %s/%s incomplete: %s", self.namespace, self.name,
                        exc)

    async def _write_every_trial(self) -> None:
        """Rounds of NASTrial writes until none is pending; bounded: a trial the API keeps
        refusing must not block the caller (five rounds more than the backlog needs)."""
        for _ in range(5 + len(self._trials) // max(1, self.trial_round)):
            if not any(self.trial_exists(t) for t in self._trials):
                break
            await self._write_trials()

    async def _flush_now(self) -> None:
        await self._write_every_trial()
        self._search_dirty = True
        await self._write_search()

    async def close(self, *, flush: bool = True) -> None:
        """Stop the writer task (after a final flush unless the search is being deleted)."""
        if flush:
            await self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
