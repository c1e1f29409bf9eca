"""Read-only views of a running search: its status, one trial's NASTrial, what to launch.

Why apart: these read the loop and the ledger but never change them (the
``genotype`` caches aside), and the drivers call them often (every status write,
every trial event), so they must stay bounded whatever the number of trials.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller_policy.contract import TrialDocument
from controller_policy.spaces.base import Architecture
from nas_operator.api import (
    EPOCHS_IN_STATUS,
    Condition,
    EarlyStoppingSummary,
    NASSearchStatus,
    NASTrialSpec,
    NASTrialStatus,
    TrialCounts,
    TrialStop,
)
from nas_operator.launcher import LaunchRequest, report_url
from nas_operator.ledger import Trial, TrialState
from nas_operator.loop.front_view import front_status
from nas_operator.retrained import scored_by, with_retrains

if TYPE_CHECKING:
    from nas_operator.loop.core import SearchLoop


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(old: Condition | None, ctype: str, value: bool, reason: str, message: str,
              generation: int | None) -> Condition | None:
    """The new condition ``ctype``, or None when ``old`` already says so."""
    status = "True" if value else "False"
    if old is not None and old.status == status and old.reason == reason:
        return None
    when = old.lastTransitionTime if old is not None and old.status == status else rfc3339(
        time.time())
    return Condition(type=ctype, status=status, reason=reason,  # type: ignore[arg-type]
                     message=message, lastTransitionTime=when or "",
                     observedGeneration=generation)


def search_status(loop: SearchLoop) -> NASSearchStatus:
    """Summary for ``NASSearch.status`` (bounded, whatever the number of trials)."""
    ledger, state = loop.ledger, loop.state
    counts = ledger.counts["search"]
    states = ledger.count_state("search")
    best = ledger.best
    scored = {"scoredBy": scored_by(loop.spec.strategy.type)}
    top = [r.result().model_copy(update=scored) for r in ledger.topk]
    return NASSearchStatus(
        phase=state.phase,  # type: ignore[arg-type]
        reason=state.reason,
        message=state.message,
        observedGeneration=loop.generation,
        conditions=list(state.conditions.values()),
        trials=TrialCounts(
            total=ledger.trained("search"), pending=states["queued"] + states["pending"],
            running=states["running"], succeeded=counts["succeeded"], failed=counts["failed"],
            cancelled=counts["cancelled"], retried=counts["retried"],
            infeasible=counts.get("infeasible", 0),
            earlyStopped=counts.get("stopped", 0),
        ),  # fmt: skip
        best=best.result(loop.best_genotype(best)).model_copy(update=scored) if best else None,
        topK=top,
        front=front_status(loop),
        finalTraining=[with_retrains(top, r.result(loop.genotype(r.tokens)))
                       for r in ledger.final_results],
        modelOutput=loop.spec.finalTraining.output_uri(loop.namespace, loop.name)
        if state.stage == "final" and loop.spec.finalTraining else None,
        controller=state.controller.model_copy(),
        earlyStopping=None if loop.stopper is None else EarlyStoppingSummary(
            rule=loop.stopper.rule.name, stopped=loop.stopper.counts(),
            epochsSaved=loop.stopper.epochs_saved()),
        startTime=rfc3339(state.start_time),
        completionTime=rfc3339(state.completion_time),
    )


def trial_view(loop: SearchLoop, name: str) -> tuple[NASTrialSpec, NASTrialStatus] | None:
    """NASTrial spec and status of a trial not yet compacted (None otherwise)."""
    rec = loop.ledger.get(name)
    if not isinstance(rec, Trial):
        return None
    spec = NASTrialSpec(search=loop.name, stage=rec.stage, index=rec.index,  # type: ignore[arg-type]
                        attempt=rec.attempt, seed=rec.seed, architecture=_architecture(loop, rec))
    phase = "Pending" if rec.state is TrialState.QUEUED else rec.state.value
    status = NASTrialStatus(
        phase=phase,  # type: ignore[arg-type]
        attempt=rec.attempt,
        epochs=[dict(e) for e in rec.epochs[-EPOCHS_IN_STATUS:]],
        metrics=dict(rec.metrics), reward=rec.reward, device=rec.device,
        startTime=rfc3339(rec.start_time), completionTime=rfc3339(rec.completion_time),
        jobName=rec.job_name if rec.launched or rec.state.terminal else None,
        failureReason=rec.failure_reason
        if rec.state not in (TrialState.SUCCEEDED, TrialState.EARLY_STOPPED) else None,
        earlyStopped=_stop_of(loop, rec),
    )  # fmt: skip
    return spec, status


def _stop_of(loop: SearchLoop, rec: Trial) -> TrialStop | None:
    if rec.state is not TrialState.EARLY_STOPPED or loop.stopper is None:
        return None
    stop = loop.stopper.stopped.get(rec.index)
    return None if stop is None else TrialStop(rule=stop.rule, epoch=stop.epoch, reason=stop.reason)


def _architecture(loop: SearchLoop, trial: Trial) -> Architecture | None:
    if trial.tokens is None or trial.space is None:
        return None
    return Architecture(space=trial.space, tokens=list(trial.tokens),
                        genotype=loop.trial_genotype(trial))


def launch_request(loop: SearchLoop, trial: Trial) -> LaunchRequest:
    """Everything a launcher needs for the trial's current attempt."""
    spec = loop.spec
    return LaunchRequest(
        namespace=loop.namespace, search=loop.name, trial=trial.name, attempt=trial.attempt,
        job_name=trial.job_name, document=trial_document(loop, trial),
        token=loop.token(trial.name),
        report_url=report_url(loop.status_url, loop.namespace, loop.name, trial.name)
        if loop.status_url else None,
        active_deadline_seconds=spec.trial.activeDeadlineSeconds,
        dataset_claim=spec.dataset_for(trial.stage).persistentVolumeClaim,
        pod=spec.trial,
        model_output=spec.finalTraining.output
        if spec.finalTraining is not None and trial.stage == "final" else None,
    )  # fmt: skip


def trial_document(loop: SearchLoop, trial: Trial) -> TrialDocument:
    """The trainer's input for the trial's current attempt, from the current spec."""
    spec = loop.spec
    final = trial.stage == "final"
    enas = None if final else loop.source.enas_spec(spec)
    darts = None if final else loop.source.darts_spec(spec)
    mode: Any = loop.source.mode if not final else "train"
    return TrialDocument(
        namespace=loop.namespace, search=loop.name, trial=trial.name, attempt=trial.attempt,
        seed=trial.seed, mode=mode,
        architecture=None if mode != "train" else _architecture(loop, trial),
        spaceType=spec.searchSpace.type, spaceOptions=dict(spec.searchSpace.options),
        dataset=spec.dataset_for(trial.stage).trainer_spec(),
        training=spec.final_training_spec() if final else spec.trial.training,
        objective=spec.effective_objective(),
        enas=enas,
        darts=darts,
    )  # fmt: skip
