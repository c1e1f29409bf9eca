"""Transfer on a cluster: ``finalTraining.output`` names a PersistentVolumeClaim folder; final
attempts mount it and their trainer saves the model there, the NASSearch status records it, and
``kubenas export --search`` exports it there with a Job. The Job builder and the spec checks
alone, then the operator on the API emulator with the real trainer for the final attempt and the
real exporter (the claim played by a folder)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from controller_policy.contract import TrialDocument
from nas_operator.api import (
    DEFAULT_TRAINER_IMAGE,
    ModelOutput,
    SpecError,
    TrialSpec,
    load_search_yaml,
    parse_search,
)
from nas_operator.kube.api import KubeApi
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.export_job import ClusterExportError, export_search
from nas_operator.kube.jobs import build_job
from nas_operator.launcher import LaunchRequest
from nas_trainer.model_output import load_model
from tests.support import REPO
from tests.support.kube_emulator import JOBS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    env_of,
    search_manifest,
)

kube = crd_test_bed()
OUTPUT = ModelOutput(claimName="nas-models", subPath="fashion")


def launch(trial: str, dataset: dict[str, Any] | None = None, **extra: Any) -> LaunchRequest:
    doc = TrialDocument(search="s", trial=trial, namespace="ns", dataset=dataset or {})
    return LaunchRequest(namespace="ns", search="s", trial=trial, attempt=0,
                         job_name=f"{trial}-a0", document=doc, token="t" * 64, **extra)


def test_final_attempts_mount_the_output_claim_and_save_there() -> None:
    job = build_job(launch("s-f0000"), TrialSpec(), OperatorConfig(), None, output=OUTPUT)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "nas-models"}} in pod["volumes"]
    assert {"name": "models", "mountPath": "/models", "subPath": "fashion"} in container["volumeMounts"]
    assert document_of(job)["outputDir"] == "/models/ns/s/s-f0000"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True  # the claim is writable
    search = build_job(launch("s-t0003"), TrialSpec(), OperatorConfig(), None, output=OUTPUT)
    assert "models" not in {v["name"] for v in search["spec"]["template"]["spec"]["volumes"]}
    assert "outputDir" not in document_of(search)


def test_an_npz_on_a_claim_is_mounted_by_its_folder() -> None:
    from nas_operator.api import DatasetClaim

    request = launch("s-t0000", {"name": "arrays", "path": "/data/mine/train.npz"},
                     dataset_claim=DatasetClaim(claimName="mine"))
    job = build_job(request, TrialSpec(), OperatorConfig(), None)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["volumeMounts"][-1]["mountPath"] == "/data/mine"


def test_the_cluster_example_and_bad_outputs() -> None:
    search = load_search_yaml((REPO / "examples" / "transfer-fashion.yaml").read_text())
    final = search.spec.finalTraining
    assert final is not None and final.output is not None and final.dataset is not None
    assert final.dataset.persistentVolumeClaim is not None and final.dataset.imageSize is None
    assert search.spec.trial.dataset is not None and search.spec.trial.dataset.imageSize == 14
    doc = search.model_dump(mode="json", exclude_none=True)
    doc["spec"]["finalTraining"]["output"] = {"claimName": "Models_", "subPath": "../up"}
    with pytest.raises(SpecError) as info:
        parse_search(doc)
    message = str(info.value)
    assert "spec.finalTraining.output.claimName" in message
    assert "spec.finalTraining.output.subPath" in message
    doc["spec"]["finalTraining"]["output"] = {"claimName": "models"}
    doc["spec"]["trial"]["dataset"]["path"] = "/models/fashion"
    with pytest.raises(SpecError, match=r"spec.trial.dataset.path: '/models/fashion' is inside /models"):
        parse_search(doc)


async def test_final_training_saves_on_the_claim_and_the_status_says_where(
        kube: KubeTestBed, tmp_path: Path) -> None:
    claims = tmp_path / "claims"

    async def kubelet(cluster: FakeCluster, job: dict[str, Any]) -> None:
        """Search attempts report a score; the final attempt runs the real trainer, its
        /models mount played by claims/<claimName>/<subPath>."""
        await cluster.run(job)
        pod = job["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "models"] or [None]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        if pod["containers"][0]["name"] == "exporter":  # kubenas export --search
            await cluster.terminate(job, await run_exporter(pod, volume, mounts["models"]))
            return
        doc = document_of(job)
        if doc["trial"].endswith("-t0000"):
            await cluster.succeed(job, accuracy=0.5)
            return
        mount = mounts["models"]
        host = on_claim(volume, mount)
        doc["outputDir"] = doc["outputDir"].replace(mount["mountPath"], str(host), 1)
        doc["checkpointDir"] = str(tmp_path / "checkpoints")  # the pod's emptyDir
        env = {k: v for k, v in env_of(job).items() if isinstance(v, str)}
        env.update(KUBENAS_TRIAL_JSON=json.dumps(doc), KUBENAS_REPORT_TOKEN=await cluster.token(job),
                   KUBENAS_TERMINATION_FILE=str(tmp_path / "termination"),
                   PYTHONPATH=os.pathsep.join(sys.path), HOME=str(tmp_path), TMPDIR=str(tmp_path))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nas_trainer", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        await cluster.terminate(job, 0, (tmp_path / "termination").read_text())

    def on_claim(volume: dict[str, Any], mount: dict[str, Any]) -> Path:
        return claims / volume["persistentVolumeClaim"]["claimName"] / mount.get("subPath", "")

    async def run_exporter(pod: dict[str, Any], volume: dict[str, Any],
                           mount: dict[str, Any]) -> int:
        """The exporter container: its command, the claim's mount played by the folder."""
        host = str(on_claim(volume, mount))
        command = [a.replace(mount["mountPath"], host, 1) if a.startswith(mount["mountPath"])
                   else a for a in pod["containers"][0]["command"]]
        assert command[:3] == ["python", "-m", "nas_trainer.export"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *command[1:], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        return proc.returncode

    manifest = search_manifest(
        "xfer", searchSpace={"type": "enas-micro", "options": {"nodes": 2}},
        strategy={"type": "random", "seed": 1}, budget={"maxTrials": 1, "parallelism": 1},
        trial={"dataset": {"name": "digits", "maxTrainExamples": 64,
                           "validationSize": 32},
               "training": {"epochs": 1, "batchSize": 32, "threads": 1, "device": "cpu",
                            "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1}},
               "retries": 0},
        finalTraining={"topK": 1, "output": OUTPUT.model_dump(exclude_none=True),
                       "dataset": {"name": "digits", "maxTrainExamples": 128, "validationSize": 32},
                       "training": {"model": {"filters": 6}}})
    bed = OperatorBed(kube)
    async with FakeCluster(kube, kubelet), bed.running():
        await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("xfer", "Succeeded", "Failed", timeout=240)
        api = KubeApi.from_connection_info(kube.connection_info())
        try:
            where = await export_search(api, "default", "xfer", onnx=False, timeout=240)
            export_jobs = [j for j in await kube.read_all(JOBS, "default")
                           if j["metadata"]["name"].startswith("xfer-f0000-export-")]
            with pytest.raises(ClusterExportError, match="not a finished final trial"):
                await export_search(api, "default", "xfer", trial="xfer-t0000")
        finally:
            await api.close()
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["modelOutput"] == "pvc://nas-models/fashion/default/xfer/"
    folder = claims / "nas-models" / "fashion" / "default" / "xfer" / "xfer-f0000"
    model, meta = load_model(folder)
    assert meta["trial"] == "xfer-f0000" and meta["model"]["filters"] == 6
    [final] = status["finalTraining"]
    saved = json.loads((folder / "metrics.json").read_text())["final"]
    assert saved["val_accuracy"] == pytest.approx(final["metrics"]["val_accuracy"])
    # kubenas export --search: a Job of the trainer image wrote the export next to the model
    assert where == "pvc://nas-models/fashion/default/xfer/xfer-f0000/export/"
    assert {"model.pt2", "model.py", "weights.pt"} <= {p.name for p in (folder / "export").iterdir()}
    [job] = export_jobs
    assert job["metadata"]["ownerReferences"][0]["kind"] == "NASSearch"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DEFAULT_TRAINER_IMAGE  # the search's trainer image
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("dataset", "message"), [
    ({"name": "idx"}, r"spec.trial.dataset.path: required for idx \(the folder of its files\)"),
    ({"name": "arrays"}, r"spec.trial.dataset.path: required for arrays \(the .npz file\)"),
    ({"name": "digits", "imageSize": 16},
     r"spec.trial.dataset.imageSize: applies to arrays, idx, image-folder, not 'digits'"),
])
def test_user_datasets_are_checked_before_any_trial_runs(dataset: dict[str, Any],
                                                         message: str) -> None:
    doc = search_manifest("check", searchSpace={"type": "enas-micro", "options": {"nodes": 2}},
                          trial={"dataset": dataset})
    with pytest.raises(SpecError, match=message):
        parse_search(doc)
