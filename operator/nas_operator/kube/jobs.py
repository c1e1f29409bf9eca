"""The ``batch/v1`` Job of one trial attempt: pure construction, no API calls.

What the pod gets and why:

* the trial document inline in ``KUBENAS_TRIAL_JSON`` (no extra object per
  trial), the report URL, and the trial's token through ``secretKeyRef`` from
  the search's Secret, so no token ever appears in a pod spec;
* ``backoffLimit: 0``: the search loop decides about retries (counted, with a
  new attempt and a new Job name), the Job controller never restarts a trial
  behind its back; ``activeDeadlineSeconds`` bounds one attempt;
* the trainer ServiceAccount without a mounted token (trainers have no API
  rights), non-root, read-only root filesystem with emptyDirs for ``/tmp`` and
  the checkpoint folder, no privilege escalation, no capabilities,
  RuntimeDefault seccomp;
* ``FallbackToLogsOnError``: a trainer that dies before writing its
  termination message still leaves its last log lines there;
* GPU resources, nodeSelector, tolerations, priority class, and the Kueue
  queue label (created suspended, as Kueue admits it);
* with ``spec.trial.template`` (the user's own trainer), its image, command,
  args, working folder, env (after the operator's), resources, volumes and
  mounts (after the operator's), nodeSelector, tolerations and ServiceAccount;
  the operator's labels, owner, token, security context and termination
  message stay (the template model refuses to set them);
* the dataset's PersistentVolumeClaim, when the spec names one, mounted at
  ``dataset.path`` (read-only unless the spec says otherwise), so CIFAR-10 or
  PTB come from a shared volume instead of the image;
* for final training with ``finalTraining.output``, that claim read-write at
  ``/models`` and ``outputDir`` = ``/models/<namespace>/<search>/<trial>`` in the
  trial document, so the trained model outlives the pod;
* a weight-sharing trial with N > 1 workers (``darts.workers``, ``enas.workers``)
  becomes an Indexed Job of N pods: ``WORLD_SIZE`` = N, ``RANK`` = the pod's
  completion index, ``MASTER_ADDR`` = pod 0's name under the headless Service
  ``build_rendezvous_service`` makes (the pods' ``subdomain``), ``MASTER_PORT``;
  with ``backoffLimit: 0`` one failed worker fails the Job, hence the attempt.
"""

from __future__ import annotations

from typing import Any

from controller_policy.contract import (
    DEFAULT_TERMINATION_FILE,
    ENV_REPORT_TOKEN,
    ENV_REPORT_URL,
    ENV_TERMINATION_FILE,
    ENV_TRIAL_JSON,
    TrialDocument,
)
from nas_operator.api import POD_CHECKPOINT_DIR, POD_TMP_DIR, ModelOutput, TrialSpec
from nas_operator.api.constants import POD_MODEL_DIR
from nas_operator.api.template import TrialTemplate
from nas_operator.api.trial import claim_mount
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.labels import (
    LABEL_ATTEMPT,
    LABEL_QUEUE,
    LABEL_ROLE,
    LABEL_STAGE,
    LABEL_TRIAL,
    ROLE_TRAINER,
    TRAINER_CONTAINER,
    common_labels,
    owner_reference,
    stage_of,
    token_secret_name,
)
from nas_operator.launcher import LaunchRequest

CHECKPOINT_DIR = POD_CHECKPOINT_DIR
"""Where the trainer saves on SIGTERM (the trainer image creates and owns it)."""
DATASET_VOLUME = "dataset"
OUTPUT_VOLUME = "models"
MODEL_DIR = POD_MODEL_DIR
"""Mount point of finalTraining.output's claim in final-training pods."""
TRAINER_UID = 10001
"""The trainer image's numeric user (trainer_image/Dockerfile)."""
RENDEZVOUS_PORT = 29500
"""torch.distributed's usual port, on pod 0 of a several-worker trial."""
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
"""Where an Indexed Job's pod finds its index (its RANK)."""


def workers_of(document: TrialDocument) -> int:
    """Processes of one weight-sharing trial (``darts.workers`` / ``enas.workers``); 1 otherwise."""
    block = {"darts": document.darts, "enas": document.enas}.get(document.mode)
    return block.workers if block is not None else 1


def _rendezvous_env(request: LaunchRequest, workers: int) -> list[dict[str, Any]]:
    return [
        {"name": "WORLD_SIZE", "value": str(workers)},
        {"name": "RANK", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}},
        {"name": "MASTER_ADDR", "value": f"{request.job_name}-0.{request.job_name}"},
        {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
    ]


def build_rendezvous_service(request: LaunchRequest, owner: dict[str, Any] | None) -> dict[str, Any]:
    """The headless Service that gives the pods of a several-worker Job their DNS names."""
    metadata: dict[str, Any] = {"name": request.job_name, "namespace": request.namespace,
                                "labels": trial_labels(request)}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {
        "clusterIP": "None", "publishNotReadyAddresses": True,
        "selector": {LABEL_TRIAL: request.trial, LABEL_ATTEMPT: str(request.attempt)},
        "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
    }}


def trial_labels(request: LaunchRequest) -> dict[str, str]:
    """Labels of a trial's Job and pods: search, trial, attempt, stage."""
    return {
        **common_labels(request.search, "trainer"),
        LABEL_TRIAL: request.trial,
        LABEL_ATTEMPT: str(request.attempt),
        LABEL_STAGE: stage_of(request.trial),
    }


def trainer_image(trial: TrialSpec, config: OperatorConfig) -> tuple[str, str]:
    """(image, pull policy): the template's or the spec's when it names one, else the
    operator's default."""
    image = trial.image
    if trial.template is not None and trial.template.image is not None:
        image = trial.template.image
    elif "image" not in trial.model_fields_set and config.trainer_image:
        image = config.trainer_image
    policy = trial.imagePullPolicy
    if "imagePullPolicy" not in trial.model_fields_set and config.trainer_image_pull_policy:
        policy = config.trainer_image_pull_policy  # type: ignore[assignment]
    return image, policy


def _resources(trial: TrialSpec) -> dict[str, dict[str, str]]:
    template = trial.template
    chosen = template.resources if template is not None and template.resources else trial.resources
    return {section: {name: str(amount) for name, amount in amounts.items()}
            for section, amounts in chosen.items() if amounts}


def _schedule(pod: dict[str, Any], source: TrialSpec | TrialTemplate) -> None:
    """Where the pods may run: ``source``'s nodeSelector and tolerations, when it sets them."""
    if source.nodeSelector:
        pod["nodeSelector"] = dict(source.nodeSelector)
    if source.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in source.tolerations]


def _apply_template(trial: TrialSpec, pod: dict[str, Any], container: dict[str, Any]) -> None:
    """Merge ``spec.trial.template`` into the pod: the user's container settings, after (never
    instead of) the operator's env, volumes and mounts."""
    template = trial.template
    if template is None:
        return
    for name in ("command", "args", "workingDir"):
        value = getattr(template, name)
        if value is not None:
            container[name] = list(value) if isinstance(value, list) else value
    container["env"] += [e.model_dump(exclude_none=True) for e in template.env]
    container["volumeMounts"] += [m.model_dump(exclude_none=True) for m in template.volumeMounts]
    pod["volumes"] += [v.model_dump(exclude_none=True) for v in template.volumes]
    _schedule(pod, template)
    if template.serviceAccountName:
        pod["serviceAccountName"] = template.serviceAccountName


def model_dir(request: LaunchRequest) -> str:
    """Inside the pod: where a final attempt's trainer saves its model (on the output claim)."""
    return f"{MODEL_DIR}/{request.namespace}/{request.search}/{request.trial}"


def _env(request: LaunchRequest, output: ModelOutput | None) -> list[dict[str, Any]]:
    update = {"checkpointDir": CHECKPOINT_DIR}
    if output is not None:
        update["outputDir"] = model_dir(request)
    document = request.document.model_copy(update=update)
    env: list[dict[str, Any]] = [
        {"name": ENV_TRIAL_JSON, "value": document.model_dump_json(exclude_none=True)},
        {"name": ENV_REPORT_TOKEN, "valueFrom": {"secretKeyRef": {
            "name": token_secret_name(request.search), "key": request.trial}}},
        {"name": ENV_TERMINATION_FILE, "value": DEFAULT_TERMINATION_FILE},
    ]
    if request.report_url:
        env.insert(1, {"name": ENV_REPORT_URL, "value": request.report_url})
    return env


def _dataset_volume(request: LaunchRequest) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(volume, mount) of the attempt's dataset claim, or None when its data is not on one."""
    claim, path = request.dataset_claim, claim_mount(request.document.dataset)
    if claim is None or not path:
        return None
    volume = {"name": DATASET_VOLUME, "persistentVolumeClaim": {
        "claimName": claim.claimName, "readOnly": claim.readOnly}}
    mount: dict[str, Any] = {"name": DATASET_VOLUME, "mountPath": path,
                             "readOnly": claim.readOnly}
    if claim.subPath:
        mount["subPath"] = claim.subPath
    return volume, mount


def _output_volume(output: ModelOutput) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount) of finalTraining.output's claim: read-write at /models (its subPath)."""
    volume = {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": output.claimName}}
    mount: dict[str, Any] = {"name": OUTPUT_VOLUME, "mountPath": MODEL_DIR}
    if output.subPath:
        mount["subPath"] = output.subPath
    return volume, mount


def security(pod: bool) -> dict[str, Any]:
    """The trainer's pod (``pod``) or container security context (also the exporter's)."""
    if pod:
        return {"runAsNonRoot": True, "runAsUser": TRAINER_UID, "runAsGroup": TRAINER_UID,
                "fsGroup": TRAINER_UID, "seccompProfile": {"type": "RuntimeDefault"}}
    return {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def build_job(request: LaunchRequest, trial: TrialSpec, config: OperatorConfig,
              owner: dict[str, Any] | None, output: ModelOutput | None = None) -> dict[str, Any]:
    """The Job manifest of ``request``'s attempt, owned by its NASTrial (``owner``); a final
    attempt with ``output`` (finalTraining.output) saves its model on that claim."""
    output = output if request.stage == "final" else None
    labels = trial_labels(request)
    job_labels = dict(labels)
    if trial.queueName:
        job_labels[LABEL_QUEUE] = trial.queueName
    image, pull_policy = trainer_image(trial, config)
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "env": _env(request, output),
        "terminationMessagePath": DEFAULT_TERMINATION_FILE,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security(pod=False),
        "volumeMounts": [{"name": "tmp", "mountPath": POD_TMP_DIR},
                         {"name": "checkpoints", "mountPath": CHECKPOINT_DIR}],
    }
    resources = _resources(trial)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": security(pod=True),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "checkpoints", "emptyDir": {}}],
    }
    dataset = _dataset_volume(request)
    if dataset is not None:
        pod["volumes"].append(dataset[0])
        container["volumeMounts"].append(dataset[1])
    if output is not None:
        volume, mount = _output_volume(output)
        pod["volumes"].append(volume)
        container["volumeMounts"].append(mount)
    if config.trainer_service_account:
        pod["serviceAccountName"] = config.trainer_service_account
    if config.trainer_image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in config.trainer_image_pull_secrets]
    _schedule(pod, trial)
    if trial.priorityClassName:
        pod["priorityClassName"] = trial.priorityClassName
    _apply_template(trial, pod, container)
    workers = workers_of(request.document)
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": workers,
        "parallelism": workers,
        "template": {"metadata": {"labels": {**labels, LABEL_ROLE: ROLE_TRAINER}}, "spec": pod},
    }
    if workers > 1:  # one pod per worker, found through the rendezvous Service
        spec["completionMode"] = "Indexed"
        pod["subdomain"] = request.job_name
        container["env"] += _rendezvous_env(request, workers)
    if request.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = request.active_deadline_seconds
    if trial.queueName:
        spec["suspend"] = True  # Kueue unsuspends the Job once its queue admits it
    metadata: dict[str, Any] = {"name": request.job_name, "namespace": request.namespace,
                                "labels": job_labels}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
