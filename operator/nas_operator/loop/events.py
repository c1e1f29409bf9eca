"""What the search loop tells the world: one enum of reasons, the event, and the bus.

Why one enum: the Kubernetes Events and NASTrial writes (``kube/status.py``,
``kube/supervisor.py``), the local progress lines and the run folder
(``local/progress.py``, ``local/recorder.py``) all react to the same reasons, so
they are spelled once here (a ``StrEnum``: each member equals its CamelCase text).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger("nas_operator.loop")


class EventReason(StrEnum):
    """Kubernetes Event reasons (CamelCase) of a search and its trials."""

    TRIAL_LAUNCHED = "TrialLaunched"
    TRIAL_STARTED = "TrialStarted"
    TRIAL_EPOCH = "TrialEpoch"
    TRIAL_SUCCEEDED = "TrialSucceeded"
    TRIAL_RETRIED = "TrialRetried"
    TRIAL_FAILED = "TrialFailed"
    TRIAL_CANCELLED = "TrialCancelled"
    TRIAL_REQUEUED = "TrialRequeued"
    TRIAL_INFEASIBLE = "TrialInfeasible"
    """A proposal over objective.constraints: told to the strategy, never launched."""
    TRIAL_EARLY_STOPPED = "TrialEarlyStopped"
    NEW_BEST = "NewBest"
    SEARCH_STARTED = "SearchStarted"
    SEARCH_SUSPENDED = "SearchSuspended"
    SEARCH_RESUMED = "SearchResumed"
    SPEC_UPDATED = "SpecUpdated"
    FINAL_TRAINING_STARTED = "FinalTrainingStarted"
    SEARCH_SUCCEEDED = "SearchSucceeded"
    SEARCH_FAILED = "SearchFailed"
    LAUNCH_FAILED = "LaunchFailed"
    CANCEL_FAILED = "CancelFailed"
    CHECKPOINT_FAILED = "CheckpointFailed"
    STRATEGY_ERROR = "StrategyError"
    START_FAILED = "StartFailed"
    """Posted by the operator, not the loop: the search could not start on the API."""

    @property
    def about_a_trial(self) -> bool:
        """Trial events carry the trial's NASTrial spec and status in their data."""
        return self.value.startswith("Trial")


TRIAL_ENDINGS = frozenset({EventReason.TRIAL_SUCCEEDED, EventReason.TRIAL_FAILED,
                           EventReason.TRIAL_CANCELLED, EventReason.TRIAL_INFEASIBLE,
                           EventReason.TRIAL_EARLY_STOPPED})
"""Reasons that end a trial for good."""


@dataclass(frozen=True)
class LoopEvent:
    """Something worth telling a person (Kubernetes Event vocabulary: reason, type, message)."""

    reason: EventReason
    message: str
    type: str = "Normal"
    trial: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """Details; trial events carry ``spec`` (NASTrialSpec) and ``status`` (NASTrialStatus) as
    they were at that moment, so an asynchronous subscriber can write the NASTrial later."""


Subscriber = Callable[[LoopEvent], Any]
TrialView = Callable[[str], tuple[Any, Any] | None]


class EventBus:
    """Subscribers of one loop; coroutine subscribers run in the background, failures are
    logged and never reach the loop."""

    def __init__(self, view: TrialView) -> None:
        self._view = view
        self._subscribers: list[Subscriber] = []
        self._background: set[asyncio.Future[Any]] = set()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def emit(self, reason: EventReason, message: str, trial: str | None = None,
             type: str = "Normal", **data: Any) -> None:
        if not self._subscribers:
            return
        if trial is not None and reason.about_a_trial:
            view = self._view(trial)
            if view is not None:
                data["spec"], data["status"] = view
        event = LoopEvent(reason=reason, message=message, type=type, trial=trial, data=data)
        for callback in list(self._subscribers):
            try:
                result = callback(event)
                if asyncio.iscoroutine(result):
                    self.spawn(result)
            except Exception:
                log.exception("event subscriber failed on %s", reason)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background, kept until it ends or ``cancel_all``."""
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    def cancel_all(self) -> None:
        for fut in list(self._background):
            fut.cancel()
