"""The ``NASSearch`` and ``NASTrial`` resources as pydantic models.

One source of truth: the CRDs are generated from these models (hence a
description on every field), the operator and the local runner validate the
same YAML with them, and every error names the offending field
(``spec.budget.parallelism``) and says how to fix it. Defaults that depend on
the search space (``defaults``) are filled in after validation, then the
cross-field rules run (``validation``). Pure pydantic: no Kubernetes, no kopf.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller_policy.contract import EnasSpec, TrainingSpec
from controller_policy.early_stopping import EarlyStopping
from controller_policy.objective import Objective
from controller_policy.spaces.base import Architecture
from controller_policy.strict import Strict, brief
from nas_operator.api.constants import API_VERSION, MAX_SEARCH_NAME, TOP_K_LIMIT
from nas_operator.api.defaults import (
    enas_spec,
    fill_defaults,
    final_training_spec,
    space_class,
    space_kind,
    strategy_config,
    validated_strategy_config,
)
from nas_operator.api.errors import SpecError, format_validation_error
from nas_operator.api.names import DNS_LABEL, DnsLabel
from nas_operator.api.registered import SpaceType, StrategyType
from nas_operator.api.status import NASTrialStatus
from nas_operator.api.trial import ModelOutput, TrialDataset, TrialSpec
from nas_operator.api.validation import cross_checks, parse_duration

TrialStage = Literal["search", "final"]
MAX_TRIALS = 1_000_000
"""Most trials (and failures, and rewards per update) a search may ask for."""
MAX_PARALLEL = 10_000
"""Most trials in flight at once: far beyond any cluster's Job throughput."""
MAX_SEED = 2**32 - 1
"""numpy's seeds are 32-bit; torch's are wider, so this bound fits both."""

_DNS_LABEL = re.compile(DNS_LABEL)


class SearchSpaceSpec(Strict):
    """Which search space, with its own options."""

    type: SpaceType = Field(
        description="The search space: one of the six spaces of the papers (docs/papers.md), "
        "or custom (your own decisions, docs/custom-spaces.md).")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The space's options (layers, blocks, operations, predictStrides, ...); "
        "unknown options are an error.",
    )

    @model_validator(mode="after")
    def _check_options(self) -> SearchSpaceSpec:
        cls = space_class(self.type)
        assert cls is not None  # the type was checked against the registry
        try:
            cls.options_model.model_validate(self.options)
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, "spec.searchSpace.options")) from None
        return self


class StrategySpec(Strict):
    """How architectures are proposed: the controller and its hyper-parameters."""

    type: StrategyType | None = Field(
        default=None,
        description="reinforce (Zoph & Le), ppo (NASNet), random, evolution (regularized), or "
        "enas (weight sharing, one trainer). Default: the space's paper.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Strategy hyper-parameters; the papers' values are the defaults. For enas: "
        "controller, controllerStepsPerEpoch, deriveSamples.",
    )
    batchSize: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS,
        description="m: rewards per controller update (Zoph & Le CNN 8, NASNet 20). "
        "Default: the paper's value for this space and strategy.",
    )
    seed: int = Field(
        default=0, ge=0, le=MAX_SEED, description="Seed of the strategy and of every trial."
    )


class BudgetSpec(Strict):
    """When the search stops."""

    maxTrials: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS,
        description="Architectures to train (retries do not count). Default 100; 1 for enas.",
    )
    parallelism: int | None = Field(
        default=None, ge=1, le=MAX_PARALLEL,
        description="Trials running at the same time. Default: 4 (at most "
        "maxTrials)."
    )
    maxFailedTrials: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TRIALS,
        description="The search fails when more trials than this fail for good. "
        "Default: a quarter of maxTrials, at least 3.",
    )
    deadline: int | Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Wall-clock limit of the search: seconds, or a duration like '2h30m' or '1d'.",
    )

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_duration(value)
        return value

    def deadline_seconds(self) -> float | None:
        return None if self.deadline is None else parse_duration(self.deadline)

    def parallel(self) -> int:
        return 4 if self.parallelism is None else self.parallelism

    def max_trials(self) -> int:
        return 100 if self.maxTrials is None else self.maxTrials

    def max_failed_trials(self) -> int:
        if self.maxFailedTrials is not None:
            return self.maxFailedTrials
        return max(3, -(-self.max_trials() // 4))



MAX_KEEP_BEST = 10_000
MAX_KEEP_RECENT = 100_000


class RetentionSpec(Strict):
    """Which NASTrial objects of finished trials stay in the API (cluster only).

    Every finished trial's result stays in the checkpoint's ledger whatever this says; the
    others' NASTrials (and, through them, their Jobs) are deleted once a checkpoint holding
    them is written, so a long search keeps etcd and the operator's memory bounded.
    """

    keepBest: int = Field(
        default=10, ge=0, le=MAX_KEEP_BEST,
        description="NASTrials of the best finished trials (by reward) that are never deleted.",
    )
    keepRecent: int = Field(
        default=100, ge=0, le=MAX_KEEP_RECENT,
        description="NASTrials of the latest finished trials (by index) kept besides the best; "
        "set it to maxTrials or more to keep every NASTrial.",
    )


class FinalTrainingSpec(Strict):
    """Retrain the best architectures at full size after the search (NASNet's N@F)."""

    topK: int = Field(default=1, ge=1, le=TOP_K_LIMIT, description="How many of the best to retrain.")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of spec.trial.training for the final runs (e.g. epochs, model).",
    )
    dataset: TrialDataset | None = Field(
        default=None, description="Data of the final runs (another size or more of it: "
        "transfer); default: spec.trial.dataset.",
    )
    output: ModelOutput | None = Field(
        default=None,
        description="Cluster: the PersistentVolumeClaim folder the final runs save their "
        "trained models to (status.modelOutput names it). Locally the models go into the run "
        "folder (trials/<trial>/model/), and this is ignored.",
    )

    def output_uri(self, namespace: str, search: str) -> str | None:
        """``status.modelOutput``: the claim folder of this search's final models, if any."""
        return self.output.uri(namespace, search) if self.output is not None else None


class NASSearchSpec(Strict):
    """``spec`` of a NASSearch: what to search, how, for how long, and how trials run."""

    searchSpace: SearchSpaceSpec = Field(description="The search space and its options.")
    strategy: StrategySpec = Field(
        default_factory=StrategySpec, description="The strategy proposing architectures."
    )
    objective: Objective | None = Field(
        default=None,
        description="Metric and reward. Default: cube of val_accuracy (image spaces) or "
        "80/val_perplexity^2 (language spaces).",
    )
    budget: BudgetSpec = Field(default_factory=BudgetSpec, description="Stopping rules.")
    trial: TrialSpec = Field(default_factory=TrialSpec, description="How each trial runs.")
    finalTraining: FinalTrainingSpec | None = Field(
        default=None, description="Optional retraining of the top-k after the search."
    )
    earlyStopping: EarlyStopping | None = Field(
        default=None,
        description="Stop weak trials before their last epoch (median or successive-halving "
        "on the objective's metric); a stopped trial ends EarlyStopped and counts toward "
        "maxTrials.",
    )
    suspend: bool = Field(
        default=False,
        description="Suspend: running trials are stopped and requeued; resume continues exactly.",
    )
    retention: RetentionSpec = Field(
        default_factory=RetentionSpec,
        description="NASTrials kept in the API once their trials finish (default: the best 10 "
        "and the latest 100); the results of all are kept in the checkpoint. Ignored locally.",
    )

    @model_validator(mode="after")
    def _defaults_and_cross_checks(self) -> NASSearchSpec:
        fill_defaults(self)
        errors = cross_checks(self)
        if errors:
            raise SpecError(errors)
        return self

    # --- effective values the loop uses -------------------------------------------------

    @property
    def space_kind(self) -> str:
        return space_kind(self.searchSpace.type)

    def strategy_config(self) -> dict[str, Any]:
        """What the spec sets for the strategy (see ``defaults.strategy_config``)."""
        return strategy_config(self)

    def validated_strategy_config(self) -> BaseModel | None:
        """``strategy_config`` over the papers' defaults, validated by the strategy's model."""
        return validated_strategy_config(self)

    def enas_spec(self) -> EnasSpec:
        """The trainer's ENAS block: ``strategy.config`` plus the batch size and papers' steps."""
        return enas_spec(self)

    def final_training_spec(self) -> TrainingSpec:
        """``trial.training`` with ``finalTraining.training`` merged over it."""
        return final_training_spec(self)

    def final_dataset(self) -> TrialDataset:
        if self.finalTraining is not None and self.finalTraining.dataset is not None:
            return self.finalTraining.dataset
        assert self.trial.dataset is not None
        return self.trial.dataset

    def dataset_for(self, stage: str) -> TrialDataset:
        """The dataset of a trial of ``stage`` (search or final), claim included."""
        if stage == "final":
            return self.final_dataset()
        assert self.trial.dataset is not None
        return self.trial.dataset

    def effective_objective(self) -> Objective:
        assert self.objective is not None
        return self.objective


class ObjectMeta(BaseModel):
    """Kubernetes object metadata; other fields the API server adds are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(description="Search name: a DNS-1123 label of at most 40 characters.")
    namespace: DnsLabel = Field(default="default", description="Namespace of the search.")
    uid: str | None = Field(default=None, description="Set by the API server.")
    generation: int | None = Field(default=None, description="Set by the API server.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_SEARCH_NAME or not _DNS_LABEL.match(value):
            raise ValueError(
                f"metadata.name: {brief(value)} must be lower-case letters, digits and '-', start and "
                f"end with a letter or digit, at most {MAX_SEARCH_NAME} characters (trial and "
                "Job names are built from it)"
            )
        return value


class NASSearch(Strict):
    """A whole NASSearch object as written in YAML."""

    apiVersion: Literal["kubenas.dev/v1alpha1"] = Field(
        default=API_VERSION, description="kubenas.dev/v1alpha1"
    )
    kind: Literal["NASSearch"] = Field(default="NASSearch", description="NASSearch")
    metadata: ObjectMeta = Field(description="Name and namespace of the search.")
    spec: NASSearchSpec = Field(description="What to search and how.")
    status: dict[str, Any] | None = Field(
        default=None, description="Written by the operator; ignored on input."
    )



class NASTrialSpec(Strict):
    """``spec`` of a NASTrial: one architecture to train (owned by its NASSearch)."""

    search: str = Field(description="Name of the owning NASSearch.")
    stage: TrialStage = Field(default="search", description="search, or final (retraining).")
    index: int = Field(ge=0, description="Position of the trial in its search and stage.")
    attempt: int = Field(default=0, ge=0, description="Current attempt (0 = first).")
    seed: int = Field(default=0, ge=0, description="Seed of the trial's training.")
    architecture: Architecture | None = Field(
        default=None, description="Space, token list and genotype; empty for an enas trial."
    )



class NASTrial(Strict):
    """A whole NASTrial object."""

    apiVersion: Literal["kubenas.dev/v1alpha1"] = Field(default=API_VERSION, description="API version.")
    kind: Literal["NASTrial"] = Field(default="NASTrial", description="NASTrial")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Object metadata.")
    spec: NASTrialSpec = Field(description="The architecture and attempt.")
    status: NASTrialStatus | None = Field(default=None, description="Progress and result.")
