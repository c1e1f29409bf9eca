"""``kubenas export --search NAME -n NS``: export a cluster search's final model where it lies.

Final training saved the models on ``finalTraining.output``'s claim
(``status.modelOutput``), which the user's machine cannot read. So the export runs
on the cluster, as a Job of the search's trainer image that mounts that claim at
``/models`` and runs ``python -m nas_trainer.export`` on the chosen final trial's
folder, writing ``<trial>/export/`` next to it (model.pt2, model.py, weights.pt,
model.json). The Job is owned by the NASSearch (deleted with it), runs as the
trainer pods do (non-root, read-only root filesystem, /tmp an emptyDir), and this
command waits for it and says where the files are.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nas_operator.api import NASSearch, parse_search
from nas_operator.kube.api import JOBS, NASSEARCHES, ApiError, KubeApi
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.jobs import MODEL_DIR, OUTPUT_VOLUME, security, trainer_image
from nas_operator.kube.labels import common_labels, owner_reference
from nas_operator.kube.observe import job_finished

EXPORT_FOLDER = "export"
POLL_SECONDS = 2.0


class ClusterExportError(RuntimeError):
    """The search has no model to export, or the export Job failed; says what to do."""


def pick_trial(search: NASSearch, status: dict[str, Any], trial: str | None) -> str:
    """The final trial to export: ``trial`` if it retrained, else the best retrained by reward."""
    name = search.metadata.name
    final = search.spec.finalTraining
    if search.spec.trial.runs_own_trainer():
        raise ClusterExportError(
            f"NASSearch {name} trains with your own program (spec.trial.template): its final "
            "trials saved their models themselves, in the folder kubenas_trial's "
            "Trial.output_dir() names on spec.finalTraining.output's claim")
    if final is None or final.output is None:
        raise ClusterExportError(
            f"NASSearch {name} saves no models: set spec.finalTraining.output (a writable "
            "PersistentVolumeClaim) so final training keeps them")
    results = [r for r in status.get("finalTraining") or [] if r.get("trial")]
    if not results:
        raise ClusterExportError(f"NASSearch {name} has no finished final training yet "
                                 f"(status.phase {status.get('phase')!r}); export once it has")
    if trial is None:
        return str(max(results, key=lambda r: r.get("reward") or 0.0)["trial"])
    if trial not in {r["trial"] for r in results}:
        raise ClusterExportError(f"{trial} is not a finished final trial of {name}; choose one "
                                 f"of {sorted(r['trial'] for r in results)}")
    return trial


def export_job(body: dict[str, Any], search: NASSearch, trial: str, config: OperatorConfig,
               onnx: bool = True, run: int = 0) -> dict[str, Any]:
    """The Job that exports ``trial``'s saved model on the claim, owned by the NASSearch
    (``run`` tells repeated exports apart; each Job is removed an hour after it ends)."""
    final = search.spec.finalTraining
    assert final is not None and final.output is not None
    namespace, name = search.metadata.namespace, search.metadata.name
    folder = f"{MODEL_DIR}/{namespace}/{name}/{trial}"
    image, pull_policy = trainer_image(search.spec.trial, config)
    mount: dict[str, Any] = {"name": OUTPUT_VOLUME, "mountPath": MODEL_DIR}
    if final.output.subPath:
        mount["subPath"] = final.output.subPath
    command = ["python", "-m", "nas_trainer.export", "--model", folder,
               "--out", f"{folder}/{EXPORT_FOLDER}", "--onnx" if onnx else "--no-onnx"]
    container = {
        "name": "exporter", "image": image, "imagePullPolicy": pull_policy, "command": command,
        "env": [{"name": "TMPDIR", "value": "/tmp"}, {"name": "HOME", "value": "/tmp"}],
        "securityContext": security(pod=False),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, mount],
    }
    pod = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "enableServiceLinks": False, "securityContext": security(pod=True),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}},
                    {"name": OUTPUT_VOLUME,
                     "persistentVolumeClaim": {"claimName": final.output.claimName}}],
    }
    labels = common_labels(name, "exporter")
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{trial}-export-{run % 100000}", "namespace": namespace,
                     "labels": labels, "ownerReferences": [owner_reference(body, controller=False)]},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }  # fmt: skip


async def export_search(api: KubeApi, namespace: str, name: str, trial: str | None = None, *,
                        config: OperatorConfig | None = None, onnx: bool = True,
                        timeout: float = 900.0) -> str:
    """Run (or rerun) the export Job of ``name``'s best final trial; returns where it wrote."""
    try:
        body = await api.get(NASSEARCHES, namespace, name)
    except ApiError as exc:
        raise ClusterExportError(f"cannot read NASSearch {namespace}/{name}: {exc}") from exc
    search = parse_search({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    status = body.get("status") or {}
    chosen = pick_trial(search, status, trial)
    job = export_job(body, search, chosen, config or OperatorConfig(), onnx, int(time.time()))
    job_name = job["metadata"]["name"]
    try:
        await api.create(JOBS, namespace, job)
    except ApiError as exc:
        raise ClusterExportError(f"cannot create the export Job {job_name}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        current = await api.find(JOBS, namespace, job_name)
        done = job_finished(current) if current is not None else None
        if done is not None and done[0] == "Complete":
            break
        if done is not None:
            raise ClusterExportError(f"export Job {namespace}/{job_name} failed ({done[1]}); "
                                     f"see kubectl logs -n {namespace} job/{job_name}")
        if time.monotonic() > deadline:
            raise ClusterExportError(f"export Job {namespace}/{job_name} did not finish within "
                                     f"{timeout:.0f} s; it keeps running (kubectl get job)")
        await asyncio.sleep(POLL_SECONDS)
    base = status.get("modelOutput") or search.spec.finalTraining.output_uri(  # type: ignore[union-attr]
        namespace, name)
    return f"{base}{chosen}/{EXPORT_FOLDER}/"
