"""Status models of NASSearch and NASTrial: what the operator writes, summaries only.

Why separate: status is written by the loop's views and the status writers
(``kube/status.py``, ``local/progress.py``) and never validated from user input.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from controller_policy.strict import Written
from nas_operator.api.constants import EPOCHS_IN_STATUS, FRONT_LIMIT, TOP_K_LIMIT

SearchPhase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]
TrialPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled", "Infeasible",
                     "EarlyStopped"]


class Condition(Written):
    """A status condition (Kubernetes API conventions)."""

    type: str = Field(description="Condition type, e.g. Running, Suspended, Complete, Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    lastTransitionTime: str = Field(description="When status last changed (RFC 3339).")
    observedGeneration: int | None = Field(
        default=None, description="The spec generation this condition was computed from."
    )


class TrialCounts(Written):
    """How many trials are in each state (retries counted separately, as attempts)."""

    total: int = Field(default=0, description="Trials created so far (at most maxTrials).")
    pending: int = Field(default=0, description="Waiting for a slot or for their pod to start.")
    running: int = Field(default=0, description="Running now.")
    succeeded: int = Field(default=0, description="Finished with a reward.")
    failed: int = Field(default=0, description="Failed for good (after retries).")
    cancelled: int = Field(default=0, description="Stopped by the search (goal, deadline, ...).")
    retried: int = Field(default=0, description="Attempts relaunched after a failure.")
    infeasible: int = Field(default=0, description="Proposals over objective.constraints, "
                            "never trained (not in total).")
    earlyStopped: int = Field(
        default=0, description="Stopped by spec.earlyStopping (ended, not failed; they count "
        "toward maxTrials).",
    )


class TrialResult(Written):
    """One scored trial, as listed in best and topK."""

    trial: str = Field(description="NASTrial name.")
    reward: float = Field(description="Reward computed from the reported metrics.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics.")
    tokens: list[int] = Field(default_factory=list, description="The architecture's token list.")
    genotype: dict[str, Any] | None = Field(
        default=None, description="Readable architecture (best only)."
    )
    scoredBy: Literal["supernet", "training"] | None = Field(
        default=None, description="How the reward was measured: 'training' (the architecture "
        "trained on its own) or 'supernet' (scored through a weight-sharing supernet: a ranking "
        "signal, see finalTraining for the standalone accuracy).",
    )
    retrains: str | None = Field(
        default=None, description="For a final-training run: the search trial it retrains."
    )
    device: str | None = Field(
        default=None, max_length=128, description="The device the trainer measured latency_ms "
        "on, as its final report names it (cpu, cuda:0 (GPU name)).",
    )


class EarlyStoppingSummary(Written):
    """What ``spec.earlyStopping`` did so far."""

    rule: str = Field(description="median or successive-halving.")
    stopped: dict[str, int] = Field(default_factory=dict, description="Trials stopped, by rule.")
    epochsSaved: int = Field(
        default=0, description="Training epochs not run: the stopped trials' epochs left "
        "(GPU-epochs, one trial on one device).",
    )


class TrialStop(Written):
    """Why a trial was stopped early."""

    rule: str = Field(description="The rule that stopped it.")
    epoch: int = Field(description="Epochs it had run when stopped.")
    reason: str = Field(description="What the rule saw.")


class FrontEntry(TrialResult):
    """A trial on the Pareto front: its objective values beside its reward and metrics."""

    objectives: dict[str, float] = Field(
        default_factory=dict, description="The trial's value of each objective, as reported."
    )


class ParetoFront(Written):
    """The non-dominated trials of a multi-objective search (a bounded, spread-out part)."""

    objectives: list[str] = Field(
        default_factory=list, description="The objectives, e.g. 'maximize val_accuracy'."
    )
    referencePoint: dict[str, float] = Field(
        default_factory=dict, description="Reference of the hypervolume, per metric."
    )
    hypervolume: float = Field(
        default=0.0, description="Volume the whole front dominates beyond the reference point "
        "(in the metrics' units multiplied; larger is better)."
    )
    size: int = Field(default=0, description="Non-dominated trials found (members lists at most "
                      f"{FRONT_LIMIT} of them, the ends of the front included).")
    members: list[FrontEntry] = Field(
        default_factory=list, max_length=FRONT_LIMIT,
        description="Front members, best first by the first objective, with genotypes.",
    )


class ControllerSummary(Written):
    """The strategy's learning state, in brief."""

    updates: int = Field(default=0, description="Controller updates so far.")
    baseline: float | None = Field(default=None, description="Moving-average reward baseline.")
    entropy: float | None = Field(default=None, description="Policy entropy (nats).")
    checkpointRef: str | None = Field(default=None, description="Where the checkpoint is stored.")
    checkpointBytes: int | None = Field(default=None, description="Size of the last checkpoint.")


class SearchProgress(Written):
    """Progress of a long trial (an ENAS search runs as one trainer): its latest epoch."""

    trial: str = Field(description="The trial reporting progress.")
    epoch: int = Field(ge=0, description="Latest epoch reported (0-based).")
    epochs: int | None = Field(default=None, ge=1, description="Epochs planned.")
    metrics: dict[str, float] = Field(default_factory=dict, description="That epoch's metrics.")


class NASSearchStatus(Written):
    """``status`` of a NASSearch: summaries only, never the whole history."""

    phase: SearchPhase = Field(default="Pending", description="Pending, Running, Suspended, ...")
    reason: str | None = Field(default=None, description="Why the search is in this phase.")
    message: str | None = Field(default=None, description="Details of the reason.")
    observedGeneration: int | None = Field(default=None, description="Last spec generation seen.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")
    trials: TrialCounts = Field(default_factory=TrialCounts, description="Trial counts.")
    best: TrialResult | None = Field(default=None, description="The best trial so far.")
    topK: list[TrialResult] = Field(
        default_factory=list,
        max_length=TOP_K_LIMIT,
        description=f"The best {TOP_K_LIMIT} trials, best first.",
    )
    front: ParetoFront | None = Field(
        default=None, description="Multi-objective form: the Pareto front of the search trials."
    )
    finalTraining: list[TrialResult] = Field(
        default_factory=list,
        max_length=TOP_K_LIMIT,
        description="Results of the final retraining runs.",
    )
    modelOutput: str | None = Field(
        default=None,
        description="Where the final runs save their trained models (finalTraining.output): "
        "pvc://<claim>/<folder>/, one sub-folder per final trial; set once final training starts.",
    )
    controller: ControllerSummary = Field(
        default_factory=ControllerSummary, description="Controller summary."
    )
    progress: SearchProgress | None = Field(
        default=None, description="Latest epoch of a long-running trial (ENAS)."
    )
    earlyStopping: EarlyStoppingSummary | None = Field(
        default=None, description="Trials stopped early and epochs saved (spec.earlyStopping)."
    )
    startTime: str | None = Field(default=None, description="When the search started (RFC 3339).")
    completionTime: str | None = Field(default=None, description="When it ended (RFC 3339).")


class NASTrialStatus(Written):
    """``status`` of a NASTrial."""

    phase: TrialPhase = Field(default="Pending", description="Pending, Running, Succeeded, ...")
    attempt: int = Field(default=0, ge=0, description="The attempt this status describes.")
    epochs: list[dict[str, float]] = Field(
        default_factory=list,
        max_length=EPOCHS_IN_STATUS,
        description=f"Per-epoch metrics, the latest {EPOCHS_IN_STATUS}.",
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics.")
    reward: float | None = Field(default=None, description="Reward of the final metrics.")
    device: str | None = Field(
        default=None, max_length=128, description="The device the trainer measured latency_ms "
        "on, as its final report names it (cpu, cuda:0 (GPU name)).",
    )
    startTime: str | None = Field(default=None, description="When the first attempt started.")
    completionTime: str | None = Field(default=None, description="When the trial finished.")
    jobName: str | None = Field(default=None, description="Job (or process) of the attempt.")
    failureReason: str | None = Field(default=None, description="Why the trial failed.")
    earlyStopped: TrialStop | None = Field(
        default=None, description="Set when spec.earlyStopping stopped the trial: rule, epoch, why."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Conditions, e.g. Scheduled=False while no node fits."
    )

