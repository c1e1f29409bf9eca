"""Job and Pod changes → the search loop's ``on_trial_started`` / ``on_trial_exit`` / ``on_trial_lost``.

kopf delivers every event of Jobs and trainer Pods here (``JobTracker.on_job``,
``on_pod``); launchers ``track`` the Jobs they create or adopt. For each
tracked attempt the tracker reports *started* once and *ended* once:

* a running trainer container (or a ready Job) → started;
* a terminated trainer container → exit with its code and termination message
  (the trainer's final ``Report``: the reward fallback when its HTTP report
  never arrived);
* an evicted or preempted pod, a pod or Job deleted under a running trial, a
  Job that failed without a pod to tell why (deadline) → lost: a failed
  attempt that the loop retries;
* a pod that cannot be scheduled (no free GPU), or cannot pull its image,
  stays pending: it is reported as a *problem* (NASTrial condition + Event)
  once per reason, not as a failure.

When a Job ends before its pod's last state reached us (separate watch
streams), the tracker reads the pod once. Everything is idempotent, and stale
events of attempts the loop no longer runs are dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from nas_operator.kube.api import PODS, ApiError, KubeApi
from nas_operator.kube.jobs import INDEX_ANNOTATION
from nas_operator.kube.labels import LABEL_ATTEMPT, LABEL_TRIAL, TRAINER_CONTAINER

log = logging.getLogger(__name__)

DISRUPTION_REASONS = frozenset({"Evicted", "Preempting", "Shutdown", "NodeShutdown",
                                "Terminated", "NodeLost", "UnexpectedAdmissionError"})
WAITING_PROBLEMS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                              "CreateContainerConfigError", "CreateContainerError"})


class TrialSink(Protocol):
    """Where a tracked attempt's news goes (``KubeLauncher`` forwards it to the loop)."""

    def attempt_active(self, trial: str, attempt: int) -> bool: ...

    def started(self, trial: str, attempt: int) -> None: ...

    def exited(self, trial: str, attempt: int, exit_code: int | None,
               message: str | None) -> None: ...

    def lost(self, trial: str, attempt: int, reason: str) -> None: ...

    def problem(self, trial: str, attempt: int, reason: str, message: str) -> None: ...


@dataclasses.dataclass
class Tracked:
    sink: TrialSink
    trial: str
    attempt: int
    started: bool = False
    ended: bool = False
    problem: str | None = None
    resolving: bool = False


@dataclasses.dataclass(frozen=True)
class PodOutcome:
    """What one pod says about its attempt."""

    kind: str  # "pending", "running", "exited", "lost"
    exit_code: int | None = None
    message: str | None = None
    problem: tuple[str, str] | None = None


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def _trainer_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == TRAINER_CONTAINER:
            return status
    return {}


def read_pod(pod: dict[str, Any]) -> PodOutcome:
    """Classify a trainer pod: pending (maybe with a problem), running, exited or lost."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    container = _trainer_status(pod)
    state = container.get("state") or {}
    disruption = _condition(pod, "DisruptionTarget")
    disrupted = disruption is not None and disruption.get("status") == "True"
    if phase in ("Succeeded", "Failed"):
        terminated = state.get("terminated")
        if status.get("reason") in DISRUPTION_REASONS or (disrupted and phase == "Failed"):
            why = status.get("reason") or (disruption or {}).get("reason") or "Disrupted"
            detail = status.get("message") or (disruption or {}).get("message") or ""
            return PodOutcome("lost", message=f"pod {why}: {detail}".rstrip(": "))
        if terminated is not None:
            index = (pod.get("metadata", {}).get("annotations") or {}).get(INDEX_ANNOTATION, "0")
            if terminated.get("exitCode") == 0 and index != "0":
                return PodOutcome("running")  # a worker besides rank 0 is done; rank 0 reports
            return PodOutcome("exited", exit_code=terminated.get("exitCode"),
                              message=terminated.get("message"))
        return PodOutcome("lost", message=f"pod {phase} without a trainer exit "
                          f"({status.get('reason') or 'no reason'}: {status.get('message') or ''})")
    if "running" in state:
        return PodOutcome("running")
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in WAITING_PROBLEMS:
        return PodOutcome("pending", problem=(waiting["reason"], waiting.get("message") or ""))
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False" and scheduled.get(
            "reason") == "Unschedulable":
        return PodOutcome("pending", problem=("Unschedulable", scheduled.get("message") or ""))
    return PodOutcome("pending")


def job_finished(job: dict[str, Any]) -> tuple[str, str] | None:
    """("Complete"|"Failed", reason: message) once the Job controller has finished the Job."""
    for ctype in ("Complete", "Failed"):
        cond = _condition(job, ctype)
        if cond is not None and cond.get("status") == "True":
            return ctype, f"{cond.get('reason') or ctype}: {cond.get('message') or ''}".rstrip(": ")
    return None


class JobTracker:
    """Tracked attempts by (namespace, Job name); one per operator process."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.jobs: dict[tuple[str, str], Tracked] = {}

    def track(self, namespace: str, job: str, sink: TrialSink, trial: str, attempt: int) -> None:
        key = (namespace, job)
        if key not in self.jobs or self.jobs[key].sink is not sink:
            self.jobs[key] = Tracked(sink, trial, attempt)

    def untrack(self, namespace: str, job: str) -> None:
        self.jobs.pop((namespace, job), None)

    def forget(self, sink: TrialSink) -> None:
        """Stop reporting to ``sink`` (its search stopped: later Job news are the next loop's)."""
        for key in [k for k, t in self.jobs.items() if t.sink is sink]:
            del self.jobs[key]

    def _lookup(self, body: dict[str, Any], job: str | None) -> tuple[tuple[str, str], Tracked] | None:
        if job is None:
            return None
        key = (body.get("metadata", {}).get("namespace") or "default", job)
        tracked = self.jobs.get(key)
        if tracked is None or tracked.ended:
            return None
        if not tracked.sink.attempt_active(tracked.trial, tracked.attempt):
            self.jobs.pop(key, None)  # the loop is done with it (report arrived, cancelled)
            return None
        return key, tracked

    # -- events -----------------------------------------------------------------------
    async def on_pod(self, event_type: str | None, pod: dict[str, Any]) -> None:
        labels = pod.get("metadata", {}).get("labels") or {}
        found = self._lookup(pod, _job_of(labels))
        if found is None or not _same_attempt(labels, found[1]):
            return
        key, tracked = found
        if event_type == "DELETED" and read_pod(pod).kind in ("pending", "running"):
            self._end(key, tracked, PodOutcome("lost", message="pod deleted before the trainer "
                                               "finished"))
            return
        self._apply(key, tracked, read_pod(pod))

    async def on_job(self, event_type: str | None, job: dict[str, Any]) -> None:
        found = self._lookup(job, job.get("metadata", {}).get("name"))
        if found is None:
            return
        key, tracked = found
        if event_type == "DELETED":
            self._end(key, tracked, PodOutcome("lost", message="Job deleted before the trainer "
                                               "finished"))
            return
        status = job.get("status") or {}
        if (status.get("ready") or 0) > 0 and not tracked.started:
            tracked.started = True
            tracked.sink.started(tracked.trial, tracked.attempt)
        finished = job_finished(job)
        if finished is not None:
            await self._resolve(key, tracked, finished)

    async def resync(self, namespace: str, job: dict[str, Any] | None, name: str) -> None:
        """After an adoption: apply the Job's and its pod's current state as if just observed."""
        key = (namespace, name)
        if job is None:
            tracked = self.jobs.get(key)
            if tracked is not None and not tracked.ended:
                self._end(key, tracked, PodOutcome("lost", message="Job not found"))
            return
        pods = await self._pods(key)
        if pods is not None:
            for pod in pods:
                await self.on_pod(None, pod)
        await self.on_job(None, job)

    # -- internals -----------------------------------------------------------------------
    def _apply(self, key: tuple[str, str], tracked: Tracked, outcome: PodOutcome) -> None:
        if outcome.kind in ("exited", "lost"):
            self._end(key, tracked, outcome)
            return
        if outcome.kind == "running":
            tracked.problem = None
            if not tracked.started:
                tracked.started = True
                tracked.sink.started(tracked.trial, tracked.attempt)
            return
        if outcome.problem is not None and outcome.problem[0] != tracked.problem:
            tracked.problem = outcome.problem[0]
            tracked.sink.problem(tracked.trial, tracked.attempt, *outcome.problem)

    def _end(self, key: tuple[str, str], tracked: Tracked, outcome: PodOutcome) -> None:
        if tracked.ended:
            return
        tracked.ended = True
        self.jobs.pop(key, None)
        if outcome.kind == "exited":
            tracked.sink.exited(tracked.trial, tracked.attempt, outcome.exit_code, outcome.message)
        else:
            tracked.sink.lost(tracked.trial, tracked.attempt, outcome.message or "lost")

    async def _resolve(self, key: tuple[str, str], tracked: Tracked,
                       finished: tuple[str, str]) -> None:
        """The Job ended: take the exit from its pod (read once if its last state is unseen)."""
        if tracked.resolving:
            return
        tracked.resolving = True
        try:
            pods = await self._pods(key)
        finally:
            tracked.resolving = False
        if tracked.ended:
            return
        for pod in pods or []:
            outcome = read_pod(pod)
            if outcome.kind in ("exited", "lost"):
                self._end(key, tracked, outcome)
                return
        kind, detail = finished
        if kind == "Complete":
            self._end(key, tracked, PodOutcome("exited", exit_code=0))
        else:
            self._end(key, tracked, PodOutcome("lost", message=f"Job failed: {detail}"))

    async def _pods(self, key: tuple[str, str]) -> list[dict[str, Any]] | None:
        tracked = self.jobs.get(key)
        if tracked is None:
            return None
        selector = f"{LABEL_TRIAL}={tracked.trial},{LABEL_ATTEMPT}={tracked.attempt}"
        try:
            return await self.api.list(PODS, key[0], label_selector=selector)
        except ApiError as exc:
            log.warning("cannot list the pods of Job %s/%s: %s", key[0], key[1], exc)
            return None


def _job_of(labels: dict[str, str]) -> str | None:
    """The Job of a trainer pod: from the Job controller's label, else from ours."""
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if job:
        return job
    trial, attempt = labels.get(LABEL_TRIAL), labels.get(LABEL_ATTEMPT)
    return f"{trial}-a{attempt}" if trial and attempt is not None else None


def _same_attempt(labels: dict[str, str], tracked: Tracked) -> bool:
    return labels.get(LABEL_TRIAL) == tracked.trial and labels.get(LABEL_ATTEMPT) == str(
        tracked.attempt)
