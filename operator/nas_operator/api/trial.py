"""``spec.trial``: how each trial runs — image, data (and the claim it lives on), training,
and where on the cluster.

Why separate: the Job builder (``kube/jobs.py``) and the launchers need these
without the search-level models (docs/design.md).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from controller_policy.contract import DatasetSpec, TrainingSpec
from controller_policy.strict import Strict, brief
from nas_operator.api.constants import (
    BUNDLED_DATASETS,
    DEFAULT_TRAINER_IMAGE,
    POD_CHECKPOINT_DIR,
    POD_MODEL_DIR,
    POD_TMP_DIR,
)
from nas_operator.api.names import (
    DNS_SUBDOMAIN,
    DnsSubdomain,
    ImageRef,
    LabelKey,
    LabelValue,
    QueueName,
)
from nas_operator.api.template import (
    MAX_ATTEMPT_SECONDS,
    Quantity,
    Resources,
    Toleration,
    TrialTemplate,
    Word,
    resource_problems,
)

__all__ = ["MAX_ATTEMPT_SECONDS", "ClaimFolder", "DatasetClaim", "ModelOutput", "Quantity",
           "Toleration", "TrialDataset", "TrialSpec", "TrialTemplate", "claim_mount"]

_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)


class ClaimFolder(Strict):
    """A PersistentVolumeClaim and a folder in it (what both the dataset and the model output
    name): the claim's name and the subPath to mount, both checked here once."""

    claimName: str = Field(
        description="Name of the PersistentVolumeClaim, in the search's namespace.",
        json_schema_extra={"pattern": _DNS_SUBDOMAIN.pattern, "maxLength": 253},
    )
    subPath: str | None = Field(
        default=None,
        description="Folder inside the claim to mount (relative, no '..'); default: the "
        "claim's root.",
    )

    @field_validator("claimName")
    @classmethod
    def _claim_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError(
                f"{brief(value)} is not a PersistentVolumeClaim name: lower-case letters, digits, "
                "'-' and '.', starting and ending with a letter or digit, at most 253 characters"
            )
        return value

    @field_validator("subPath")
    @classmethod
    def _sub_path(cls, value: str | None) -> str | None:
        if value is not None and (not value or value.startswith("/") or ".." in value.split("/")):
            raise ValueError(
                f"{brief(value)} must be a relative folder inside the claim without '..' "
                "(e.g. 'cifar10'); leave it out to mount the claim's root"
            )
        return value


class DatasetClaim(ClaimFolder):
    """A PersistentVolumeClaim holding the dataset files (a core/v1 volume source, plus subPath)."""

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


class ModelOutput(ClaimFolder):
    """``finalTraining.output``: the PersistentVolumeClaim folder final training saves models to.

    Each final trial's pod mounts the claim (read-write) at ``/models`` and its trainer
    writes ``<subPath>/<namespace>/<search>/<trial>/`` there (model.json, weights.pt,
    metrics.json; ``nas_trainer.model_output``); the NASSearch status records the folder.
    """

    subPath: str | None = Field(
        default=None,
        description="Folder inside the claim for this search's models (relative, no '..'); "
        "default: the claim's root.",
    )

    def folder(self, namespace: str, search: str) -> str:
        """Inside the claim: where this search's final trials save (one sub-folder each)."""
        return "/".join(p for p in (self.subPath, namespace, search) if p)

    def uri(self, namespace: str, search: str) -> str:
        """How the status names the folder: ``pvc://<claim>/<folder>/``."""
        return f"pvc://{self.claimName}/{self.folder(namespace, search)}/"


USER_DATASETS = frozenset({"image-folder", "idx", "arrays"})
"""Formats of a user's own images (nas_trainer.datasets): read from dataset.path."""


def claim_mount(dataset: DatasetSpec) -> str | None:
    """Where a dataset's claim is mounted: ``path``, or the folder of the .npz (arrays)."""
    if dataset.name == "arrays" and dataset.path:
        return dataset.path.rstrip("/").rsplit("/", 1)[0] or "/"
    return dataset.path


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
        errors = self._user_data_problems(field)
        return errors or self._claim_problems(field)

    def _user_data_problems(self, field: str) -> list[str]:
        """A user's own data needs its path; resizing applies to those formats only."""
        if self.name in USER_DATASETS and not self.path:
            what = "the .npz file" if self.name == "arrays" else "the folder of its files"
            return [f"{field}.path: required for {self.name} ({what})"]
        return [f"{field}.{name}: applies to {', '.join(sorted(USER_DATASETS))}, not "
                f"{self.name!r}; remove it" for name in ("imageSize", "channels")
                if getattr(self, name) is not None and self.name not in USER_DATASETS]

    def _claim_problems(self, field: str) -> list[str]:
        claim = self.persistentVolumeClaim
        if claim is None:
            return []
        where = f"{field}.persistentVolumeClaim"
        if self.name in BUNDLED_DATASETS:
            return [f"{where}: dataset {self.name!r} is built into the trainer and reads no "
                    "files; remove the claim, or use a dataset read from files (cifar10, ptb, "
                    "image-folder, idx, arrays)"]
        path = claim_mount(self) or ""
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
            for own in (POD_TMP_DIR, POD_CHECKPOINT_DIR, POD_MODEL_DIR):
                if mount == own or mount.startswith(own + "/"):
                    errors.append(f"{field}.path: {path!r} is inside {own}, which the trial pod "
                                  "mounts for itself; use a folder such as /data")
        if self.download and claim.readOnly:
            errors.append(f"{field}.download: cannot download into a read-only claim; set "
                          f"{where}.readOnly to false, or download to false")
        return errors


class TrialSpec(Strict):
    """How each trial runs: image, data, training, and where on the cluster."""

    image: ImageRef = Field(
        default=DEFAULT_TRAINER_IMAGE,
        description="Trainer container image: [registry[:port]/]path[:tag][@sha256:digest].",
    )
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
    resources: Resources = Field(
        default_factory=dict,
        description="Container resources, e.g. {limits: {nvidia.com/gpu: 1}, requests: {cpu: 4}}.",
    )
    nodeSelector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=64,
        description="Node labels the trial pods must match (label keys and values).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Tolerations of the trial pods (e.g. GPU taints)."
    )
    priorityClassName: DnsSubdomain | None = Field(
        default=None, description="Pod priority class (a PriorityClass name)."
    )
    queueName: QueueName | None = Field(
        default=None, description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name on the Job): "
        "a name of at most 63 characters."
    )
    retries: int = Field(
        default=2, ge=0, le=100, description="Extra attempts of a failed trial before it fails."
    )
    activeDeadlineSeconds: int | None = Field(
        default=None, ge=1, le=MAX_ATTEMPT_SECONDS, description="Time limit of one attempt; past it the attempt fails."
    )

    command: list[Word] | None = Field(
        default=None, min_length=1, max_length=256,
        description="kubenas run: your training program, run once per trial attempt instead "
        "of 'python -m nas_trainer', e.g. [python, train.py] (a first word 'python' is the "
        "interpreter running kubenas; relative paths are from where kubenas run starts). "
        "Ignored on a cluster, where spec.trial.template says what the container runs.",
    )
    template: TrialTemplate | None = Field(
        default=None,
        description="Cluster: your trainer container (image, command, args, env, resources, "
        "volumes, volumeMounts, nodeSelector, tolerations, serviceAccountName), merged into "
        "each trial's Job; the operator keeps labels, owner, token, security context and "
        "termination message.",
    )

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, Quantity]]) -> dict[str, dict[str, Quantity]]:
        """Only limits and requests, each amount a Kubernetes quantity."""
        problems = resource_problems(value, "spec.trial.resources")
        if problems:
            raise ValueError(problems[0])
        return value

    @model_validator(mode="after")
    def _template_or_trial(self) -> TrialSpec:
        """A setting lives in spec.trial or in its template, never in both."""
        template = self.template
        if template is None:
            return self
        both = [name for name in ("image", "resources", "nodeSelector", "tolerations")
                if name in template.model_fields_set and name in self.model_fields_set]
        if both:
            raise ValueError("; ".join(
                f"spec.trial.template.{name}: also set as spec.trial.{name}; keep one of the "
                "two" for name in both))
        return self

    def runs_own_trainer(self) -> bool:
        """Whether trials run the user's program (spec.trial.command locally, a template's
        image or command on a cluster) rather than the built-in ``python -m nas_trainer``."""
        return self.command is not None or (
            self.template is not None and self.template.runs_own_trainer())
