"""The Kubernetes ``Launcher``: each attempt is a NASTrial (once per trial) and a Job.

Names are deterministic (``<search>-t0007`` and ``<search>-t0007-a1``), so
every create is idempotent: 409 means an earlier operator already made it, and
the object is checked (its labels name the same trial and attempt) and adopted.
The NASTrial is owned by the NASSearch and owns the Job, so deleting a search
removes everything through garbage collection. Job and Pod news arrive from
kopf through the ``JobTracker`` and go to the loop from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nas_operator.api import NASTrialSpec
from nas_operator.kube.api import JOBS, NASTRIALS, SERVICES, ApiError, KubeApi
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.jobs import build_job, build_rendezvous_service, workers_of
from nas_operator.kube.labels import (
    API_VERSION,
    LABEL_ATTEMPT,
    LABEL_STAGE,
    LABEL_TRIAL,
    TRIAL_KIND,
    common_labels,
    owner_reference,
    stage_of,
)
from nas_operator.kube.observe import JobTracker
from nas_operator.kube.token_secret import TokenSecret
from nas_operator.launcher import Launcher, LaunchRequest, TrialObserver
from nas_operator.ledger import job_name

log = logging.getLogger(__name__)

ProblemHook = Callable[[str, int, str, str], None]


class LaunchConflict(RuntimeError):
    """An object with the attempt's name exists but belongs to something else."""


class KubeLauncher(Launcher):
    """Launches one search's attempts as NASTrials and Jobs in the search's namespace."""

    def __init__(self, api: KubeApi, config: OperatorConfig, tracker: JobTracker,
                 tokens: TokenSecret, owner: dict[str, Any]) -> None:
        self.api = api
        self.config = config
        self.tracker = tracker
        self.tokens = tokens
        self.owner = owner
        self.namespace: str = owner["metadata"]["namespace"]
        self.observer: TrialObserver | None = None
        self.trial_uids: dict[str, str | None] = {}
        """NASTrials known to exist (uid when known): status writes wait for these."""
        self.adopted: list[str] = []
        """Jobs adopted after a restart, replayed by ``resync`` once the loop runs."""
        self.on_trial_object: Callable[[str], None] = lambda _: None
        self.on_problem: ProblemHook = lambda *_: None

    def attach(self, observer: TrialObserver) -> None:
        self.observer = observer

    # -- Launcher ---------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> None:
        # The NASTrial (the Job's owner) and the token (the Job's secretKeyRef) are independent.
        trial, _ = await asyncio.gather(self._ensure_trial(request),
                                        self.tokens.add(request.trial, request.token))
        assert request.pod is not None, "a pod launcher needs the request's spec.trial"
        job = build_job(request, request.pod, self.config, owner=trial, output=request.model_output)
        if workers_of(request.document) > 1:  # the pods of an Indexed Job find pod 0 through it
            try:
                await self.api.create(SERVICES, self.namespace, build_rendezvous_service(request, trial))
            except ApiError as exc:
                if not exc.conflict:
                    raise
        self.tracker.track(self.namespace, request.job_name, self, request.trial, request.attempt)
        try:
            await self.api.create(JOBS, self.namespace, job)
        except ApiError as exc:
            if not exc.conflict:
                self.tracker.untrack(self.namespace, request.job_name)
                raise
            existing = await self.api.get(JOBS, self.namespace, request.job_name)
            self._check_ours(existing, request)

    async def cancel(self, trial: str, attempt: int) -> None:
        name = job_name(trial, attempt)
        self.tracker.untrack(self.namespace, name)
        await self.api.delete(JOBS, self.namespace, name, propagation="Background")

    async def adopt(self, request: LaunchRequest) -> bool:
        """After a restart: the attempt's Job, if it exists, is tracked again.

        Only a definite 404 (or someone else's Job under the name) means 'gone'; when the
        API cannot answer, the attempt is kept (``resync`` settles it), because a wrong
        'gone' would run the trial twice.
        """
        self.tracker.track(self.namespace, request.job_name, self, request.trial, request.attempt)
        try:
            job = await self.api.find(JOBS, self.namespace, request.job_name)
        except ApiError as exc:
            log.warning("cannot read Job %s/%s while adopting (%s); keeping it",
                        self.namespace, request.job_name, exc)
            job = {"metadata": {"labels": {LABEL_TRIAL: request.trial,
                                           LABEL_ATTEMPT: str(request.attempt)}}}
        if job is None:
            self.tracker.untrack(self.namespace, request.job_name)
            return False
        try:
            self._check_ours(job, request)
        except LaunchConflict as exc:
            log.warning("not adopting: %s", exc)
            self.tracker.untrack(self.namespace, request.job_name)
            return False
        self.trial_uids.setdefault(request.trial, None)
        self.on_trial_object(request.trial)
        self.adopted.append(request.job_name)
        return True

    async def resync(self) -> None:
        """Replay the current state of adopted Jobs (they may have ended while we were away)."""
        names, self.adopted = self.adopted, []
        jobs = await asyncio.gather(*(self.api.find(JOBS, self.namespace, n) for n in names),
                                    return_exceptions=True)
        for name, job in zip(names, jobs, strict=True):
            if isinstance(job, BaseException):
                log.warning("cannot read adopted Job %s/%s: %s", self.namespace, name, job)
                continue
            await self.tracker.resync(self.namespace, job, name)

    # -- TrialSink (from the JobTracker) ---------------------------------------------------
    def attempt_active(self, trial: str, attempt: int) -> bool:
        return self.observer is not None and self.observer.is_current(trial, attempt)

    def started(self, trial: str, attempt: int) -> None:
        if self.observer is not None:
            self.observer.on_trial_started(trial, attempt)

    def exited(self, trial: str, attempt: int, exit_code: int | None, message: str | None) -> None:
        if self.observer is not None:
            self.observer.on_trial_exit(trial, attempt, exit_code, message)

    def lost(self, trial: str, attempt: int, reason: str) -> None:
        if self.observer is not None:
            self.observer.on_trial_lost(trial, attempt, reason)

    def problem(self, trial: str, attempt: int, reason: str, message: str) -> None:
        self.on_problem(trial, attempt, reason, message)

    # -- NASTrial ------------------------------------------------------------------------
    def _trial_spec(self, request: LaunchRequest) -> dict[str, Any]:
        doc = request.document
        spec = NASTrialSpec(search=request.search, stage=stage_of(request.trial),  # type: ignore[arg-type]
                            index=int(request.trial.rsplit("-", 1)[1][1:]),
                            attempt=request.attempt, seed=doc.seed,
                            architecture=doc.architecture)
        return spec.model_dump(mode="json", exclude_none=True)

    async def _ensure_trial(self, request: LaunchRequest) -> dict[str, Any]:
        """The trial's NASTrial (created now, or found and brought to this attempt)."""
        uid = self.trial_uids.get(request.trial)
        stub = {"apiVersion": API_VERSION, "kind": TRIAL_KIND,
                "metadata": {"name": request.trial, "uid": uid}}
        if uid is not None:
            if request.attempt > 0:
                await self.api.patch(NASTRIALS, self.namespace, request.trial,
                                     {"spec": {"attempt": request.attempt}})
            return stub
        spec = self._trial_spec(request)
        body = {
            "apiVersion": API_VERSION, "kind": TRIAL_KIND,
            "metadata": {
                "name": request.trial, "namespace": self.namespace,
                "labels": {**common_labels(request.search, "trial"), LABEL_TRIAL: request.trial,
                           LABEL_STAGE: stage_of(request.trial)},
                "ownerReferences": [owner_reference(self.owner)],
            },
            "spec": spec,
        }
        try:
            created = await self.api.create(NASTRIALS, self.namespace, body)
        except ApiError as exc:
            if not exc.conflict:
                raise
            created = await self.api.get(NASTRIALS, self.namespace, request.trial)
            owners = {r.get("uid") for r in created["metadata"].get("ownerReferences") or []}
            if self.owner["metadata"]["uid"] not in owners:
                raise LaunchConflict(f"NASTrial {request.trial} exists but belongs to another "
                                     "search object") from None
            if (created.get("spec") or {}).get("attempt") != request.attempt:
                created = await self.api.patch(NASTRIALS, self.namespace, request.trial,
                                               {"spec": {"attempt": request.attempt}})
        self.trial_uids[request.trial] = created["metadata"]["uid"]
        self.on_trial_object(request.trial)
        return created

    def _check_ours(self, job: dict[str, Any], request: LaunchRequest) -> None:
        labels = job.get("metadata", {}).get("labels") or {}
        if labels.get(LABEL_TRIAL) != request.trial or labels.get(LABEL_ATTEMPT) != str(
                request.attempt):
            raise LaunchConflict(f"Job {request.job_name} exists but is not attempt "
                                 f"{request.attempt} of {request.trial}")
