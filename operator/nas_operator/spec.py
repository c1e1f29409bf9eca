"""The ``NASSearch`` and ``NASTrial`` resources as pydantic models.

One source of truth: the CRDs are generated from these models (hence a
description on every field), the operator and the local runner validate the
same YAML with them, and every error names the offending field
(``spec.budget.parallelism``) and says how to fix it. Defaults that depend on
the search space (objective, dataset, strategy, batch size) are the papers'
(docs/papers.md) and are filled in after validation, so a dumped spec shows exactly
what runs.

Pure pydantic: no Kubernetes, no kopf.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller_policy.objective import Objective
from controller_policy.spaces.base import Architecture, SearchSpace
from nas_trainer.contract import DatasetSpec, EnasSpec, TrainingSpec

API_GROUP = "kubenas.dev"
API_VERSION = "kubenas.dev/v1alpha1"
DEFAULT_TRAINER_IMAGE = "ghcr.io/kubenas/kubenas-trainer:0.1.0"
MAX_SEARCH_NAME = 40
"""Trial and Job names append ``-t<index>-a<attempt>``; Job names must stay <= 63 chars."""
TOP_K_LIMIT = 10
EPOCHS_IN_STATUS = 50
"""A NASTrial keeps at most this many per-epoch entries (the latest)."""

SpaceType = Literal["zoph-le-cnn", "zoph-le-rnn", "nasnet", "enas-macro", "enas-micro", "enas-rnn"]
StrategyType = Literal["reinforce", "ppo", "random", "evolution", "enas"]
SearchPhase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]
TrialPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
TrialStage = Literal["search", "final"]

SPACE_KIND: dict[str, str] = {
    "zoph-le-cnn": "image",
    "zoph-le-rnn": "language",
    "nasnet": "image",
    "enas-macro": "image",
    "enas-micro": "image",
    "enas-rnn": "language",
}
"""Image spaces are scored by accuracy, language spaces by perplexity."""
KIND_METRIC = {"image": "val_accuracy", "language": "val_perplexity"}
KIND_DATASETS = {
    "image": ("cifar10", "digits", "synthetic"),
    "language": ("ptb", "pydoc-text", "synthetic"),
}
KIND_DEFAULT_DATASET = {"image": "digits", "language": "pydoc-text"}
DEFAULT_STRATEGY: dict[str, str] = {
    "zoph-le-cnn": "reinforce",
    "zoph-le-rnn": "reinforce",
    "nasnet": "ppo",
    "enas-macro": "enas",
    "enas-micro": "enas",
    "enas-rnn": "enas",
}
"""Each space's paper: Zoph & Le -> REINFORCE, NASNet -> PPO, ENAS -> weight sharing."""

PAPER_BATCH_SIZE: dict[tuple[str, str], int] = {
    # Zoph & Le CNN: m = 8 children per controller replica update.
    ("zoph-le-cnn", "reinforce"): 8,
    # Zoph & Le PTB: m = 1 per replica, applied after every 10 accumulated gradients.
    ("zoph-le-rnn", "reinforce"): 10,
    # NASNet: PPO on minibatches of 20 architectures.
    ("nasnet", "ppo"): 20,
    # ENAS reference code: 50 x 20 (macro), 30 x 10 (micro), enas_lm 25 x 10 samples per epoch.
    ("enas-macro", "enas"): 20,
    ("enas-micro", "enas"): 10,
    ("enas-rnn", "enas"): 10,
    ("enas-macro", "reinforce"): 20,
    ("enas-micro", "reinforce"): 10,
    ("enas-rnn", "reinforce"): 10,
}
STRATEGY_BATCH_SIZE = {"reinforce": 8, "ppo": 20, "enas": 10, "random": 1, "evolution": 1}
ENAS_STEPS_PER_EPOCH = {"enas-macro": 50, "enas-micro": 30, "enas-rnn": 25}
"""Controller steps per epoch of the ENAS reference code (docs/papers.md §7)."""

_SPACE_MODULES = {t: t.replace("-", "_") for t in SPACE_KIND}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


class SpecError(ValueError):
    """An invalid NASSearch: ``errors`` lists one ``spec.path: what is wrong`` line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid NASSearch:\n  " + "\n  ".join(errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- helpers ---------------------------------------------------------------------


def space_class(type_name: str) -> type[SearchSpace] | None:
    """The space class registered for ``type_name``, importing only its module (None if absent)."""
    from controller_policy.spaces import SPACES

    if type_name not in SPACES and type_name in _SPACE_MODULES:
        try:
            importlib.import_module(f"controller_policy.spaces.{_SPACE_MODULES[type_name]}")
        except ImportError:
            return None
    return SPACES.get(type_name)


def strategy_class(type_name: str) -> Any | None:
    """The strategy class for ``type_name`` from ``controller_policy.strategies`` (None if absent)."""
    try:
        module = importlib.import_module("controller_policy.strategies")
    except ImportError:
        return None
    registry = getattr(module, "STRATEGIES", None)
    if not isinstance(registry, Mapping):
        return None
    return registry.get(type_name)


def _config_model(strategy_type: str) -> type[BaseModel] | None:
    model = getattr(strategy_class(strategy_type), "config_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_aliases(model: type[BaseModel]) -> dict[str, str]:
    """Alias (camelCase) and field name -> field name."""
    out: dict[str, str] = {}
    for name, f in model.model_fields.items():
        out[name] = name
        if f.alias:
            out[f.alias] = name
    return out


def _set_default(config: dict[str, Any], names: dict[str, str], field: str, value: Any) -> None:
    if not any(names.get(k, k) == field for k in config):
        config[field] = value


def _paper_defaults(strategy_type: str, space_type: str) -> dict[str, Any]:
    try:
        from controller_policy.strategies.defaults import defaults_for
    except ImportError:
        return {}
    return defaults_for(strategy_type, space_type)


def _validate_over_defaults(
    model: type[BaseModel], strategy_type: str, space_type: str, user: Mapping[str, Any]
) -> BaseModel:
    """Validate the user's settings laid over the papers' defaults, keeping the user's spelling
    (camelCase or snake_case) so that an error names the key they wrote."""
    names = _field_aliases(model)
    given = {names.get(k, k) for k in user}
    alias = {name: (f.alias or name) for name, f in model.model_fields.items()}
    merged = {
        alias.get(name, name): value
        for name, value in _paper_defaults(strategy_type, space_type).items()
        if name not in given
    }
    merged.update(user)
    return model.model_validate(merged)


def _default_batch_size(space_type: str, strategy_type: str) -> int:
    """The paper's m for this space and strategy (the strategies' own table where it exists)."""
    value = _paper_defaults(strategy_type, space_type).get("batch_size")
    if isinstance(value, int):
        return value
    return PAPER_BATCH_SIZE.get((space_type, strategy_type), STRATEGY_BATCH_SIZE[strategy_type])


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def format_validation_error(exc: ValidationError, prefix: str) -> list[str]:
    """One ``prefix.field: message`` line per pydantic error (validator messages kept as is)."""
    lines = []
    for err in exc.errors(include_url=False):
        msg = str(err.get("msg", ""))
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SpecError):
            lines.extend(ctx_error.errors)
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if msg.startswith("spec.") or msg.startswith("metadata."):
            lines.append(msg)
            continue
        path = _loc(tuple(err.get("loc", ())))
        full = ".".join(p for p in (prefix, path) if p) or "document"
        if err.get("type") == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        lines.append(f"{full}: {msg}")
    return lines


def parse_duration(value: int | float | str, field: str = "spec.budget.deadline") -> float:
    """Seconds from an int, or a string like ``90``, ``45m``, ``2h30m``, ``1d`` (no fractions)."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or a duration such as '2h30m', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"{field}: must be positive, got {value}")
        return float(value)
    text = str(value).strip()
    if text.isdigit():
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise ValueError(
                f"{field}: {value!r} is not a duration; write seconds (3600) or "
                "days/hours/minutes/seconds such as '1d', '2h30m', '45m', '90s'"
            )
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    if seconds <= 0:
        raise ValueError(f"{field}: must be positive, got {value!r}")
    return seconds


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


# --- spec ---------------------------------------------------------------------------


class SearchSpaceSpec(_Strict):
    """Which search space, with its own options."""

    type: SpaceType = Field(description="The search space (docs/papers.md): one of the six spaces.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The space's options (layers, blocks, operations, predictStrides, ...); "
        "unknown options are an error.",
    )

    @model_validator(mode="after")
    def _check_options(self) -> SearchSpaceSpec:
        cls = space_class(self.type)
        if cls is None:
            return self  # space module not installed; make_space reports it when the loop starts
        try:
            cls.options_model.model_validate(self.options)
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, "spec.searchSpace.options")) from None
        return self


class StrategySpec(_Strict):
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
        description="m: rewards per controller update (Zoph & Le CNN 8, NASNet 20). "
        "Default: the paper's value for this space and strategy.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the strategy and of every trial.")


class BudgetSpec(_Strict):
    """When the search stops."""

    maxTrials: int | None = Field(
        default=None,
        ge=1,
        description="Architectures to train (retries do not count). Default 100; 1 for enas.",
    )
    parallelism: int | None = Field(
        default=None, ge=1, description="Trials running at the same time. Default: 4 (at most "
        "maxTrials)."
    )
    maxFailedTrials: int | None = Field(
        default=None,
        ge=0,
        description="The search fails when more trials than this fail for good. "
        "Default: a quarter of maxTrials, at least 3.",
    )
    deadline: int | str | None = Field(
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


class Toleration(_Strict):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: str | None = Field(default=None, description="Taint key; empty with Exists = all taints.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty = all."
    )
    tolerationSeconds: int | None = Field(
        default=None, description="NoExecute: how long the pod stays bound after the taint."
    )


Quantity = int | float | str
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkKMGTPE]i?)?$")


POD_TMP_DIR = "/tmp"
POD_CHECKPOINT_DIR = "/checkpoints"
"""Folders every trial pod mounts for itself (``kube/jobs.py``): a dataset cannot go there."""
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
BUNDLED_DATASETS = frozenset({"digits", "pydoc-text", "synthetic"})
"""Datasets inside the trainer image (or generated): they read no files."""


class DatasetClaim(_Strict):
    """A PersistentVolumeClaim holding the dataset files (a core/v1 volume source, plus subPath)."""

    claimName: str = Field(
        description="Name of the PersistentVolumeClaim, in the search's namespace.",
        json_schema_extra={"pattern": _DNS_SUBDOMAIN.pattern, "maxLength": 253},
    )
    readOnly: bool = Field(
        default=True,
        description="Mount read-only (the default: trials only read, and many share the claim; "
        "a ReadOnlyMany claim needs it). False only to let dataset.download fill the claim.",
    )
    subPath: str | None = Field(
        default=None,
        description="Folder inside the claim to mount at dataset.path (relative, no '..'); "
        "default: the claim's root.",
    )

    @field_validator("claimName")
    @classmethod
    def _claim_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError(
                f"{value!r} is not a PersistentVolumeClaim name: lower-case letters, digits, "
                "'-' and '.', starting and ending with a letter or digit, at most 253 characters"
            )
        return value

    @field_validator("subPath")
    @classmethod
    def _sub_path(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or value.startswith("/") or ".." in value.split("/")
        ):
            raise ValueError(
                f"{value!r} must be a relative folder inside the claim without '..' "
                "(e.g. 'cifar10'); leave it out to mount the claim's root"
            )
        return value


class TrialDataset(DatasetSpec):
    """The trainer's ``DatasetSpec`` plus, on a cluster, the volume its files live on.

    The claim is a pod concern, so it lives here (the operator's spec) rather than in the
    trainer's contract: the trainer only ever sees ``path`` (``trainer_spec``).
    """

    persistentVolumeClaim: DatasetClaim | None = Field(
        default=None,
        description="Mount this PersistentVolumeClaim at dataset.path in every trial pod "
        "(read-only by default). Cluster only: `kubenas run` reads dataset.path on this machine.",
    )

    def trainer_spec(self) -> DatasetSpec:
        """What the trainer's document carries: everything but the claim."""
        return DatasetSpec.model_validate(
            self.model_dump(exclude={"persistentVolumeClaim"}, exclude_unset=True)
        )

    def problems(self, field: str) -> list[str]:
        """Cross-field errors of a dataset at ``field`` (e.g. ``spec.trial.dataset``)."""
        claim = self.persistentVolumeClaim
        if claim is None:
            return []
        where = f"{field}.persistentVolumeClaim"
        if self.name in BUNDLED_DATASETS:
            return [f"{where}: dataset {self.name!r} is built into the trainer and reads no "
                    "files; remove the claim, or use cifar10 or ptb"]
        path = self.path or ""
        if not path.startswith("/"):
            return [f"{field}.path: must be an absolute path when {where} is set (the claim is "
                    f"mounted there), got {self.path!r}; e.g. /data/{self.name}"]
        errors = []
        parts = [p for p in path.split("/") if p]
        if ".." in parts or "." in parts:
            errors.append(f"{field}.path: {path!r} must not contain '.' or '..' segments")
        elif not parts:
            errors.append(f"{field}.path: the claim cannot be mounted at '/' (it would hide the "
                          "trainer image); use a folder such as /data")
        else:
            mount = "/" + "/".join(parts)
            for own in (POD_TMP_DIR, POD_CHECKPOINT_DIR):
                if mount == own or mount.startswith(own + "/"):
                    errors.append(f"{field}.path: {path!r} is inside {own}, which the trial pod "
                                  "mounts for itself; use a folder such as /data")
        if self.download and claim.readOnly:
            errors.append(f"{field}.download: cannot download into a read-only claim; set "
                          f"{where}.readOnly to false, or download to false")
        return errors


class TrialSpec(_Strict):
    """How each trial runs: image, data, training, and where on the cluster."""

    image: str = Field(default=DEFAULT_TRAINER_IMAGE, description="Trainer container image.")
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Container image pull policy."
    )
    dataset: TrialDataset | None = Field(
        default=None,
        description="Training data. Default: the bundled 'digits' (image spaces) or "
        "'pydoc-text' (language spaces).",
    )
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="Child-training hyper-parameters."
    )
    resources: dict[str, dict[str, Quantity]] = Field(
        default_factory=dict,
        description="Container resources, e.g. {limits: {nvidia.com/gpu: 1}, requests: {cpu: 4}}.",
    )
    nodeSelector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the trial pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of the trial pods (e.g. GPU taints)."
    )
    priorityClassName: str | None = Field(default=None, description="Pod priority class.")
    queueName: str | None = Field(
        default=None, description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name on the Job)."
    )
    retries: int = Field(
        default=2, ge=0, le=100, description="Extra attempts of a failed trial before it fails."
    )
    activeDeadlineSeconds: int | None = Field(
        default=None, ge=1, description="Time limit of one attempt; past it the attempt fails."
    )

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, Quantity]]) -> dict[str, dict[str, Quantity]]:
        for section, amounts in value.items():
            if section not in ("limits", "requests"):
                raise ValueError(
                    f"spec.trial.resources.{section}: unknown section; use 'limits' or 'requests'"
                )
            for name, amount in amounts.items():
                if isinstance(amount, bool) or not _QUANTITY.match(str(amount)):
                    raise ValueError(
                        f"spec.trial.resources.{section}.{name}: {amount!r} is not a quantity; "
                        "write e.g. 1, '500m', '4Gi'"
                    )
        return value


class FinalTrainingSpec(_Strict):
    """Retrain the best architectures at full size after the search (NASNet's N@F)."""

    topK: int = Field(default=1, ge=1, le=TOP_K_LIMIT, description="How many of the best to retrain.")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of spec.trial.training for the final runs (e.g. epochs, model).",
    )
    dataset: TrialDataset | None = Field(
        default=None, description="Data of the final runs; default: spec.trial.dataset."
    )


class NASSearchSpec(_Strict):
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
    suspend: bool = Field(
        default=False,
        description="Suspend: running trials are stopped and requeued; resume continues exactly.",
    )

    @model_validator(mode="after")
    def _defaults_and_cross_checks(self) -> NASSearchSpec:
        errors: list[str] = []
        space = self.searchSpace.type
        kind = SPACE_KIND[space]
        st = self.strategy
        if st.type is None:
            st.type = DEFAULT_STRATEGY[space]  # type: ignore[assignment]
        if st.batchSize is None:
            st.batchSize = _default_batch_size(space, st.type)
        if self.objective is None:
            self.objective = (
                Objective()
                if kind == "image"
                else Objective(metric="val_perplexity", reward="inverse-square", constant=80.0)
            )
        if self.trial.dataset is None:
            self.trial.dataset = TrialDataset(name=KIND_DEFAULT_DATASET[kind])  # type: ignore[arg-type]
        budget = self.budget
        if budget.maxTrials is None:
            budget.maxTrials = 1 if st.type == "enas" else 100
        if budget.parallelism is None:
            budget.parallelism = min(4, budget.maxTrials)

        if st.type == "enas" and not space.startswith("enas-"):
            errors.append(
                f"spec.strategy.type: 'enas' shares weights only in the enas-* spaces, not "
                f"{space!r}; use reinforce, ppo, random or evolution, or an enas-* searchSpace.type"
            )
        if st.type == "enas" and budget.maxTrials != 1:
            errors.append(
                f"spec.budget.maxTrials: must be 1 with strategy.type 'enas' (one trainer runs the "
                f"whole weight-sharing search), got {budget.maxTrials}; use finalTraining to retrain"
            )
        if self.objective.metric != KIND_METRIC[kind]:
            errors.append(
                f"spec.objective.metric: {space!r} is a {kind} space scored by "
                f"{KIND_METRIC[kind]!r}, not {self.objective.metric!r}"
            )
        if self.trial.dataset.name not in KIND_DATASETS[kind]:
            errors.append(
                f"spec.trial.dataset.name: {self.trial.dataset.name!r} does not fit the {kind} "
                f"space {space!r}; use one of {', '.join(KIND_DATASETS[kind])}"
            )
        errors.extend(self.trial.dataset.problems("spec.trial.dataset"))
        if budget.parallelism > budget.maxTrials:
            errors.append(
                f"spec.budget.parallelism ({budget.parallelism}) must not exceed "
                f"spec.budget.maxTrials ({budget.maxTrials})"
            )
        final = self.finalTraining
        if final is not None:
            if final.topK > budget.maxTrials:
                errors.append(
                    f"spec.finalTraining.topK ({final.topK}) must not exceed "
                    f"spec.budget.maxTrials ({budget.maxTrials})"
                )
            if final.dataset is not None and final.dataset.name not in KIND_DATASETS[kind]:
                errors.append(
                    f"spec.finalTraining.dataset.name: {final.dataset.name!r} does not fit the "
                    f"{kind} space {space!r}; use one of {', '.join(KIND_DATASETS[kind])}"
                )
            if final.dataset is not None:
                errors.extend(final.dataset.problems("spec.finalTraining.dataset"))
            try:
                self.final_training_spec()
            except ValidationError as exc:
                errors.extend(format_validation_error(exc, "spec.finalTraining.training"))
        errors.extend(self._check_strategy_config())
        if errors:
            raise SpecError(errors)
        return self

    def _check_strategy_config(self) -> list[str]:
        st = self.strategy
        if st.type == "enas":
            try:
                enas = self.enas_spec()
            except ValidationError as exc:
                return format_validation_error(exc, "spec.strategy.config")
            model = _config_model("reinforce")
            if model is None:
                return []
            try:
                _validate_over_defaults(model, "reinforce", self.searchSpace.type, enas.controller)
            except ValidationError as exc:
                return format_validation_error(exc, "spec.strategy.config.controller")
            return []
        try:
            self.validated_strategy_config()
        except ValidationError as exc:
            return format_validation_error(exc, "spec.strategy.config")
        return []

    # --- effective values the loop uses -------------------------------------------------

    @property
    def space_kind(self) -> str:
        return SPACE_KIND[self.searchSpace.type]

    def strategy_config(self) -> dict[str, Any]:
        """What the spec sets for the strategy: ``config`` plus seed and batch size.

        Passed to ``make_strategy``, which lays it over the papers' defaults; the
        batch size goes in only if the strategy has one (random, evolution do not).
        """
        st = self.strategy
        config = dict(st.config)
        model = _config_model(st.type or "")
        names = _field_aliases(model) if model is not None else {}
        if model is None or "seed" in names:
            _set_default(config, names, "seed", st.seed)
        if "batch_size" in names:
            _set_default(config, names, "batch_size", st.batchSize)
        return config

    def validated_strategy_config(self) -> BaseModel | None:
        """``strategy_config`` over the papers' defaults, validated by the strategy's model."""
        st = self.strategy
        model = _config_model(st.type or "")
        if model is None:
            return None
        return _validate_over_defaults(
            model, st.type or "", self.searchSpace.type, self.strategy_config()
        )

    def enas_spec(self) -> EnasSpec:
        """The trainer's ENAS block: ``strategy.config`` plus the batch size and papers' steps."""
        config = dict(self.strategy.config)
        config.setdefault("controllerBatch", self.strategy.batchSize)
        config.setdefault(
            "controllerStepsPerEpoch", ENAS_STEPS_PER_EPOCH.get(self.searchSpace.type, 30)
        )
        controller = dict(config.get("controller") or {})
        controller.setdefault("seed", self.strategy.seed)
        config["controller"] = controller
        return EnasSpec.model_validate(config)

    def final_training_spec(self) -> TrainingSpec:
        """``trial.training`` with ``finalTraining.training`` merged over it."""
        base = self.trial.training.model_dump()
        overrides = self.finalTraining.training if self.finalTraining else {}
        return TrainingSpec.model_validate(_merge(base, overrides))

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
    namespace: str = Field(default="default", description="Namespace of the search.")
    uid: str | None = Field(default=None, description="Set by the API server.")
    generation: int | None = Field(default=None, description="Set by the API server.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_SEARCH_NAME or not _DNS_LABEL.match(value):
            raise ValueError(
                f"metadata.name: {value!r} must be lower-case letters, digits and '-', start and "
                f"end with a letter or digit, at most {MAX_SEARCH_NAME} characters (trial and "
                "Job names are built from it)"
            )
        return value


class NASSearch(_Strict):
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


def parse_search(obj: Any) -> NASSearch:
    """Validate a NASSearch object; ``SpecError`` lists every problem with its field path."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"document: expected a NASSearch mapping, got {type(obj).__name__}"])
    try:
        return NASSearch.model_validate(dict(obj))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "")) from None


def parse_spec(obj: Any) -> NASSearchSpec:
    """Validate a bare ``spec`` (what the operator receives from kopf)."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"spec: expected a mapping, got {type(obj).__name__}"])
    try:
        return NASSearchSpec.model_validate(dict(obj))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "spec")) from None


def load_search_yaml(text: str) -> NASSearch:
    """Parse and validate one NASSearch YAML document."""
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"document: not valid YAML: {exc}"]) from None
    return parse_search(obj)


# --- status ---------------------------------------------------------------------------


class Condition(_Strict):
    """A status condition (Kubernetes API conventions)."""

    type: str = Field(description="Condition type, e.g. Running, Suspended, Complete, Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    lastTransitionTime: str = Field(description="When status last changed (RFC 3339).")
    observedGeneration: int | None = Field(
        default=None, description="The spec generation this condition was computed from."
    )


class TrialCounts(_Strict):
    """How many trials are in each state (retries counted separately, as attempts)."""

    total: int = Field(default=0, description="Trials created so far (at most maxTrials).")
    pending: int = Field(default=0, description="Waiting for a slot or for their pod to start.")
    running: int = Field(default=0, description="Running now.")
    succeeded: int = Field(default=0, description="Finished with a reward.")
    failed: int = Field(default=0, description="Failed for good (after retries).")
    cancelled: int = Field(default=0, description="Stopped by the search (goal, deadline, ...).")
    retried: int = Field(default=0, description="Attempts relaunched after a failure.")


class TrialResult(_Strict):
    """One scored trial, as listed in best and topK."""

    trial: str = Field(description="NASTrial name.")
    reward: float = Field(description="Reward computed from the reported metrics.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics.")
    tokens: list[int] = Field(default_factory=list, description="The architecture's token list.")
    genotype: dict[str, Any] | None = Field(
        default=None, description="Readable architecture (best only)."
    )


class ControllerSummary(_Strict):
    """The strategy's learning state, in brief."""

    updates: int = Field(default=0, description="Controller updates so far.")
    baseline: float | None = Field(default=None, description="Moving-average reward baseline.")
    entropy: float | None = Field(default=None, description="Policy entropy (nats).")
    checkpointRef: str | None = Field(default=None, description="Where the checkpoint is stored.")
    checkpointBytes: int | None = Field(default=None, description="Size of the last checkpoint.")


class SearchProgress(_Strict):
    """Progress of a long trial (an ENAS search runs as one trainer): its latest epoch."""

    trial: str = Field(description="The trial reporting progress.")
    epoch: int = Field(ge=0, description="Latest epoch reported (0-based).")
    epochs: int | None = Field(default=None, ge=1, description="Epochs planned.")
    metrics: dict[str, float] = Field(default_factory=dict, description="That epoch's metrics.")


class NASSearchStatus(_Strict):
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
    finalTraining: list[TrialResult] = Field(
        default_factory=list,
        max_length=TOP_K_LIMIT,
        description="Results of the final retraining runs.",
    )
    controller: ControllerSummary = Field(
        default_factory=ControllerSummary, description="Controller summary."
    )
    progress: SearchProgress | None = Field(
        default=None, description="Latest epoch of a long-running trial (ENAS)."
    )
    startTime: str | None = Field(default=None, description="When the search started (RFC 3339).")
    completionTime: str | None = Field(default=None, description="When it ended (RFC 3339).")


# --- NASTrial --------------------------------------------------------------------------


class NASTrialSpec(_Strict):
    """``spec`` of a NASTrial: one architecture to train (owned by its NASSearch)."""

    search: str = Field(description="Name of the owning NASSearch.")
    stage: TrialStage = Field(default="search", description="search, or final (retraining).")
    index: int = Field(ge=0, description="Position of the trial in its search and stage.")
    attempt: int = Field(default=0, ge=0, description="Current attempt (0 = first).")
    seed: int = Field(default=0, ge=0, description="Seed of the trial's training.")
    architecture: Architecture | None = Field(
        default=None, description="Space, token list and genotype; empty for an enas trial."
    )


class NASTrialStatus(_Strict):
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
    startTime: str | None = Field(default=None, description="When the first attempt started.")
    completionTime: str | None = Field(default=None, description="When the trial finished.")
    jobName: str | None = Field(default=None, description="Job (or process) of the attempt.")
    failureReason: str | None = Field(default=None, description="Why the trial failed.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Conditions, e.g. Scheduled=False while no node fits."
    )


class NASTrial(_Strict):
    """A whole NASTrial object."""

    apiVersion: Literal["kubenas.dev/v1alpha1"] = Field(default=API_VERSION, description="API version.")
    kind: Literal["NASTrial"] = Field(default="NASTrial", description="NASTrial")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Object metadata.")
    spec: NASTrialSpec = Field(description="The architecture and attempt.")
    status: NASTrialStatus | None = Field(default=None, description="Progress and result.")
