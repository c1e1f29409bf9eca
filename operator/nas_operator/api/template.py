"""``spec.trial.template``: the user's container for each trial, in Kubernetes' own syntax.

Why a model of its own, strict like the rest: a user who brings their own training
image also brings its command, environment, volumes, resources and scheduling, and a
typo there would otherwise fail every Job at the API server, one trial at a time. What
the operator must keep for itself — labels, owner references, the token Secret and the
other ``KUBENAS_*`` variables, the security context, the termination-message settings,
its own volumes and mount points — is refused by name, with the reason, so a template
cannot quietly switch off the token, the fallback report or the non-root defaults
(docs/trial-sdk.md). ``kube/jobs.py`` merges what is left into the Job.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from controller_policy.strict import FieldErrors, Strict, brief
from nas_operator.api.constants import POD_CHECKPOINT_DIR, POD_MODEL_DIR, POD_TMP_DIR
from nas_operator.api.names import (
    DnsLabel,
    DnsSubdomain,
    ImageRef,
    LabelKey,
    LabelValue,
)

MAX_ATTEMPT_SECONDS = 30 * 24 * 3600
"""Longest one attempt may be given (30 days): longer is a typo, not a training run."""
WHERE = "spec.trial.template"

OPERATOR_OWNED: dict[str, str] = {
    "securityContext": "trial pods run non-root with a read-only root filesystem, no "
                       "privilege escalation and no capabilities; write to /tmp or "
                       "checkpoint_dir() instead",
    "terminationMessagePath": "the trainer's final report is read from /dev/termination-log "
                              "when its HTTP report is lost",
    "terminationMessagePolicy": "the operator reads the termination message "
                                "(FallbackToLogsOnError)",
    "labels": "the operator labels every Job and pod with its search, trial and attempt",
    "annotations": "the operator sets the pod's metadata",
    "metadata": "the operator names and labels the Job and its pods",
    "ownerReferences": "each Job is owned by its NASTrial, so deleting a search deletes it",
    "name": "Job and container names come from the trial (deterministic, never duplicated)",
    "restartPolicy": "the search loop decides about retries (a new attempt, a new Job)",
    "automountServiceAccountToken": "trainers get no Kubernetes API rights",
    "imagePullPolicy": "set spec.trial.imagePullPolicy",
}
"""Fields a template may not set, each with why the operator keeps it."""
RESERVED_ENV_PREFIX = "KUBENAS_"
RESERVED_VOLUMES = frozenset({"tmp", "checkpoints", "dataset", "models"})
RESERVED_MOUNTS = (POD_TMP_DIR, POD_CHECKPOINT_DIR, POD_MODEL_DIR, "/dev/termination-log")

_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
Quantity = int | float | Annotated[str, Field(max_length=64)]
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkKMGTPE]i?)?$")
Resources = dict[str, Annotated[dict[LabelKey, Quantity], Field(max_length=64)]]
Word = Annotated[str, Field(max_length=4096)]


def resource_problems(value: dict[str, dict[str, Quantity]], where: str) -> list[str]:
    """Only limits and requests, each amount a Kubernetes quantity."""
    problems = []
    for section, amounts in value.items():
        if section not in ("limits", "requests"):
            problems.append(f"{where}.{section[:40]}: unknown section; use 'limits' or "
                            "'requests'")
            continue
        for name, amount in amounts.items():
            if isinstance(amount, bool) or not _QUANTITY.match(str(amount)):
                problems.append(f"{where}.{section}.{name}: {brief(amount)} is not a quantity; "
                                "write e.g. 1, '500m', '4Gi'")
    return problems


class Toleration(Strict):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: LabelKey | None = Field(
        default=None, description="Taint key; empty with Exists = all taints."
    )
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: LabelValue | None = Field(default=None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty = all."
    )
    tolerationSeconds: int | None = Field(
        default=None, ge=0, le=MAX_ATTEMPT_SECONDS,
        description="NoExecute: how long the pod stays bound after the taint."
    )


class KeyRef(Strict):
    """A key of a Secret or ConfigMap (core/v1 SecretKeySelector / ConfigMapKeySelector)."""

    name: DnsSubdomain = Field(description="Name of the Secret or ConfigMap.")
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = (
        Field(description="The key in it."))
    optional: bool | None = Field(default=None, description="Start even when it is missing.")


class FieldRef(Strict):
    """A field of the pod (core/v1 ObjectFieldSelector), e.g. metadata.name or spec.nodeName."""

    fieldPath: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="Path of the field, e.g. spec.nodeName.")
    apiVersion: Literal["v1"] | None = Field(default=None, description="v1.")


class ResourceFieldRef(Strict):
    """A container's resource amount (core/v1 ResourceFieldSelector), e.g. limits.cpu."""

    resource: Annotated[str, Field(min_length=1, max_length=317)] = Field(
        description="e.g. limits.cpu, requests.memory.")
    containerName: DnsLabel | None = Field(default=None, description="Default: the trainer.")
    divisor: Quantity | None = Field(default=None, description="Unit, e.g. 1Mi.")


class EnvSource(Strict):
    """Where an environment variable's value comes from (core/v1 EnvVarSource): exactly one."""

    secretKeyRef: KeyRef | None = Field(default=None, description="A key of a Secret.")
    configMapKeyRef: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")
    fieldRef: FieldRef | None = Field(default=None, description="A field of the pod.")
    resourceFieldRef: ResourceFieldRef | None = Field(
        default=None, description="A resource amount of the container.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvSource:
        if len(self.model_fields_set) != 1:
            raise ValueError("give exactly one of secretKeyRef, configMapKeyRef, fieldRef, "
                             "resourceFieldRef")
        return self


class EnvVar(Strict):
    """One environment variable of the trainer container (core/v1 EnvVar)."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=_ENV_NAME)] = Field(
        description="Variable name (letters, digits, '_', '-', '.'; not a digit first). "
        "KUBENAS_* belong to the operator.")
    value: Annotated[str, Field(max_length=32768)] | None = Field(
        default=None, description="The value.")
    valueFrom: EnvSource | None = Field(default=None, description="Or where the value comes from.")

    @field_validator("name")
    @classmethod
    def _not_ours(cls, name: str) -> str:
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            raise ValueError(f"{name!r}: the operator sets the {RESERVED_ENV_PREFIX}* variables "
                             "(trial document, report URL, token); choose another name")
        return name

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.valueFrom is not None:
            raise ValueError(f"env {self.name}: give value or valueFrom, not both")
        return self


class KeyToPath(Strict):
    """One key of a ConfigMap or Secret volume as a file (core/v1 KeyToPath)."""

    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(description="The key.")
    path: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="Relative file path in the volume.")
    mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode bits.")


class EmptyDirSource(Strict):
    """A scratch folder for the pod's lifetime (core/v1 EmptyDirVolumeSource)."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="'' or Memory.")
    sizeLimit: Quantity | None = Field(default=None, description="e.g. 1Gi.")


class ClaimSource(Strict):
    """A PersistentVolumeClaim (core/v1 PersistentVolumeClaimVolumeSource)."""

    claimName: DnsSubdomain = Field(description="The claim, in the search's namespace.")
    readOnly: bool | None = Field(default=None, description="Mount read-only.")


class KeysAsFiles(Strict):
    """What ConfigMap and Secret volumes share: which keys, with which file modes."""

    items: list[KeyToPath] | None = Field(default=None, max_length=256,
                                          description="Only these keys, at these paths.")
    defaultMode: int | None = Field(default=None, ge=0, le=0o777, description="File mode bits.")
    optional: bool | None = Field(default=None, description="Start even when it is missing.")


class ConfigMapSource(KeysAsFiles):
    """A ConfigMap's keys as files (core/v1 ConfigMapVolumeSource)."""

    name: DnsSubdomain = Field(description="The ConfigMap.")


class SecretSource(KeysAsFiles):
    """A Secret's keys as files (core/v1 SecretVolumeSource)."""

    secretName: DnsSubdomain = Field(description="The Secret.")


class NfsSource(Strict):
    """An NFS export (core/v1 NFSVolumeSource)."""

    server: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Host name or IP address of the NFS server.")
    path: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^/")] = Field(
        description="Exported path (absolute).")
    readOnly: bool | None = Field(default=None, description="Mount read-only.")


class Volume(Strict):
    """A volume of the trial pod (core/v1 Volume): a name and exactly one source."""

    name: DnsLabel = Field(description="Volume name (volumeMounts refer to it).")
    emptyDir: EmptyDirSource | None = Field(default=None, description="Scratch space.")
    persistentVolumeClaim: ClaimSource | None = Field(default=None, description="A claim.")
    configMap: ConfigMapSource | None = Field(default=None, description="A ConfigMap.")
    secret: SecretSource | None = Field(default=None, description="A Secret.")
    nfs: NfsSource | None = Field(default=None, description="An NFS export.")

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        sources = self.model_fields_set - {"name"}
        if len(sources) != 1:
            raise ValueError(f"volume {self.name}: give exactly one source (emptyDir, "
                             "persistentVolumeClaim, configMap, secret or nfs), got "
                             f"{len(sources)}")
        return self


class VolumeMount(Strict):
    """Where a template volume appears in the trainer container (core/v1 VolumeMount)."""

    name: DnsLabel = Field(description="A volume of spec.trial.template.volumes.")
    mountPath: Annotated[str, Field(min_length=2, max_length=4096, pattern=r"^/[^:]*$")] = Field(
        description="Absolute path in the container.")
    subPath: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Folder inside the volume (relative, no '..').")
    readOnly: bool | None = Field(default=None, description="Mount read-only.")

    @field_validator("subPath")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError(f"{brief(value)} must be a relative folder without '..'")
        return value


class TrialTemplate(Strict):
    """The trainer container and pod settings a user brings; merged into every trial's Job."""

    image: ImageRef | None = Field(
        default=None, description="Your training image (else spec.trial.image).")
    command: list[Word] | None = Field(
        default=None, min_length=1, max_length=256,
        description="The container's entrypoint, e.g. [python, /app/train.py]. "
        "Default: the image's.")
    args: list[Word] | None = Field(
        default=None, max_length=1024, description="Arguments to the command.")
    workingDir: Annotated[str, Field(max_length=4096, pattern=r"^/")] | None = Field(
        default=None, description="Working folder in the container (absolute).")
    env: list[EnvVar] = Field(
        default_factory=list, max_length=256,
        description="Extra environment (KUBENAS_* are set by the operator).")
    resources: Resources = Field(
        default_factory=dict,
        description="Container resources, e.g. {limits: {nvidia.com/gpu: 1}} (else "
        "spec.trial.resources).")
    volumes: list[Volume] = Field(
        default_factory=list, max_length=64, description="Extra volumes of the pod.")
    volumeMounts: list[VolumeMount] = Field(
        default_factory=list, max_length=64, description="Where the volumes are mounted.")
    nodeSelector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=64,
        description="Node labels the trial pods must match (else spec.trial.nodeSelector).")
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64,
        description="Tolerations of the trial pods (else spec.trial.tolerations).")
    serviceAccountName: DnsSubdomain | None = Field(
        default=None, description="ServiceAccount of the trial pods (e.g. for workload "
        "identity to your bucket); its API token is still not mounted.")

    @model_validator(mode="before")
    @classmethod
    def _operator_owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            owned = [f"{WHERE}.{key}: set by the operator, not by a template ({why}); "
                     "remove it" for key, why in OPERATOR_OWNED.items() if key in data]
            if owned:
                raise FieldErrors(owned, "invalid NASSearch")
        return data

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, Quantity]]) -> dict[str, dict[str, Quantity]]:
        problems = resource_problems(value, f"{WHERE}.resources")
        if problems:
            raise FieldErrors(problems, "invalid NASSearch")
        return value

    @model_validator(mode="after")
    def _volumes_fit(self) -> TrialTemplate:
        problems = self._volume_problems() + self._env_problems()
        if problems:
            raise FieldErrors(problems, "invalid NASSearch")
        return self

    def _volume_problems(self) -> list[str]:
        problems = []
        names = [v.name for v in self.volumes]
        for i, name in enumerate(names):
            if name in RESERVED_VOLUMES:
                problems.append(f"{WHERE}.volumes[{i}].name: {name!r} is a volume of the "
                                f"operator ({', '.join(sorted(RESERVED_VOLUMES))}); rename it")
            elif name in names[:i]:
                problems.append(f"{WHERE}.volumes[{i}].name: {name!r} appears twice")
        for i, mount in enumerate(self.volumeMounts):
            where = f"{WHERE}.volumeMounts[{i}]"
            if mount.name not in names:
                problems.append(f"{where}.name: no volume {mount.name!r} in {WHERE}.volumes")
            path = "/" + "/".join(p for p in mount.mountPath.split("/") if p)
            for own in RESERVED_MOUNTS:
                if path == own or path.startswith(own + "/"):
                    problems.append(f"{where}.mountPath: {mount.mountPath!r} is where the "
                                    f"operator mounts {own}; use a folder such as /data")
        return problems

    def _env_problems(self) -> list[str]:
        names = [e.name for e in self.env]
        return [f"{WHERE}.env[{i}].name: {name!r} appears twice" for i, name in enumerate(names)
                if name in names[:i]]

    def runs_own_trainer(self) -> bool:
        """Whether trials run the user's program rather than ``python -m nas_trainer``."""
        return self.image is not None or self.command is not None

