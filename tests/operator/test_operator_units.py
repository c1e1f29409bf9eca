"""The operator's pieces on their own: the Job builder, pod classification, the ConfigMap
checkpoint store (against the emulator: chunking, a crash mid-save, a torn checkpoint),
configuration from the chart's environment, and the entry point with real kopf."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from typing import Any

import aiohttp
import pytest

from controller_policy.contract import TrialDocument
from nas_operator.api import DatasetClaim, TrialSpec
from nas_operator.checkpoint import CheckpointError
from nas_operator.kube.api import KubeApi
from nas_operator.kube.checkpoint_store import ConfigMapCheckpointStore
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.jobs import build_job
from nas_operator.kube.main import main, run
from nas_operator.kube.observe import job_finished, read_pod
from nas_operator.launcher import LaunchRequest
from tests.support.kube_emulator import CONFIGMAPS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import crd_test_bed, search_manifest, wait_for

kube = crd_test_bed()


def request(**overrides: Any) -> LaunchRequest:
    doc = TrialDocument(search="s", trial="s-t0003", attempt=1, namespace="ns")
    values: dict[str, Any] = dict(namespace="ns", search="s", trial="s-t0003", attempt=1,
                                  job_name="s-t0003-a1", document=doc, token="t" * 64,
                                  report_url="http://kubenas.kubenas.svc:8080/v1/...",
                                  active_deadline_seconds=600)
    values.update(overrides)
    return LaunchRequest(**values)


OWNER = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASTrial",
         "metadata": {"name": "s-t0003", "uid": "u-1"}}


# --- the Job -------------------------------------------------------------------------------

def test_job_for_a_kueue_queue_and_the_operators_defaults() -> None:
    config = OperatorConfig(trainer_image="registry.local/trainer:7",
                            trainer_image_pull_policy="Always",
                            trainer_image_pull_secrets=("regcred",),
                            trainer_service_account="kubenas-trainer")
    trial = TrialSpec.model_validate({"queueName": "team-a-gpus",
                                      "resources": {"limits": {"nvidia.com/gpu": 2}}})
    job = build_job(request(), trial, config, OWNER)
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    assert job["spec"]["suspend"] is True  # Kueue admits it
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubenas.dev/v1alpha1", "kind": "NASTrial", "name": "s-t0003",
        "uid": "u-1", "controller": True, "blockOwnerDeletion": True}]
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.local/trainer:7"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "kubenas-trainer"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBENAS_REPORT_TOKEN"] == {"name": "KUBENAS_REPORT_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "s-tokens", "key": "s-t0003"}}}
    assert "t" * 64 not in json.dumps(job)  # the token itself never enters the Job
    doc = json.loads(env["KUBENAS_TRIAL_JSON"]["value"])
    assert doc["trial"] == "s-t0003" and doc["attempt"] == 1
    assert doc["checkpointDir"] == "/checkpoints"
    assert job["spec"]["activeDeadlineSeconds"] == 600


def test_a_search_that_names_its_image_keeps_it() -> None:
    config = OperatorConfig(trainer_image="registry.local/trainer:7")
    trial = TrialSpec.model_validate({"image": "mine:1", "imagePullPolicy": "Never"})
    job = build_job(request(active_deadline_seconds=None, report_url=None), trial, config, None)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["imagePullPolicy"]) == ("mine:1", "Never")
    assert "suspend" not in job["spec"] and "activeDeadlineSeconds" not in job["spec"]
    assert "ownerReferences" not in job["metadata"]
    assert "KUBENAS_REPORT_URL" not in {e["name"] for e in container["env"]}
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_the_datasets_claim_is_mounted_read_only_at_the_dataset_path() -> None:
    doc = TrialDocument(search="s", trial="s-t0003", attempt=1, namespace="ns",
                        dataset={"name": "cifar10", "path": "/data/cifar10"})
    claim = DatasetClaim(claimName="cifar10", subPath="cifar-10-batches-py")
    job = build_job(request(document=doc, dataset_claim=claim), TrialSpec(), OperatorConfig(),
                    OWNER)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "dataset", "persistentVolumeClaim": {
        "claimName": "cifar10", "readOnly": True}} in pod["volumes"]
    assert {"name": "dataset", "mountPath": "/data/cifar10", "readOnly": True,
            "subPath": "cifar-10-batches-py"} in container["volumeMounts"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        "/tmp", "/checkpoints", "/data/cifar10"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # a writable claim (to download into) and no subPath: the claim's root, writable
    writable = DatasetClaim(claimName="data", readOnly=False)
    job = build_job(request(document=doc, dataset_claim=writable), TrialSpec(), OperatorConfig(),
                    OWNER)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["volumeMounts"][-1] == {"name": "dataset", "mountPath": "/data/cifar10",
                                             "readOnly": False}
    # no claim: only the pod's own volumes
    job = build_job(request(document=doc), TrialSpec(), OperatorConfig(), OWNER)
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == [
        "tmp", "checkpoints"]


# --- pods and Jobs as the tracker reads them ----------------------------------------------------

def pod(phase: str, **status: Any) -> dict[str, Any]:
    return {"status": {"phase": phase, **status}}


@pytest.mark.parametrize("body,kind,detail", [
    (pod("Pending"), "pending", None),
    (pod("Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "message": "no GPU"}]),
     "pending", ("Unschedulable", "no GPU")),
    (pod("Pending", containerStatuses=[{"name": "trainer", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "pull access denied"}}}]),
     "pending", ("ImagePullBackOff", "pull access denied")),
    (pod("Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}]),
     "running", None),
    (pod("Failed", containerStatuses=[{"name": "trainer", "state": {"terminated": {
        "exitCode": 2, "message": "{\"kind\":\"failed\"}"}}}]), "exited", 2),
    (pod("Failed", reason="Evicted", message="low on memory"), "lost", "pod Evicted: low on memory"),
    (pod("Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                "reason": "PreemptionByScheduler", "message": "preempted"}],
         containerStatuses=[{"name": "trainer", "state": {"terminated": {"exitCode": 137}}}]),
     "lost", "pod PreemptionByScheduler: preempted"),
    (pod("Failed"), "lost", None),
])
def test_pods_are_read_as_the_loop_needs(body: dict[str, Any], kind: str, detail: Any) -> None:
    outcome = read_pod(body)
    assert outcome.kind == kind
    if kind == "pending":
        assert outcome.problem == detail
    elif kind == "exited":
        assert outcome.exit_code == detail and outcome.message == "{\"kind\":\"failed\"}"
    elif detail is not None:
        assert outcome.message == detail


def test_job_conditions() -> None:
    assert job_finished({"status": {"active": 1}}) is None
    assert job_finished({"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
         "message": "Job was active longer than specified deadline"}]}}) == (
        "Failed", "DeadlineExceeded: Job was active longer than specified deadline")


# --- the checkpoint store -------------------------------------------------------------------

async def test_checkpoints_chunk_flip_and_survive_a_crash_mid_save(kube: KubeTestBed) -> None:
    search = await kube.client.create(NASSEARCHES, search_manifest("ck"))
    api = KubeApi(kube.url)
    try:
        store = ConfigMapCheckpointStore(api, "default", search, chunk_bytes=1000)
        assert await store.load("ck") is None
        small, big, bigger = b"s" * 500, bytes(range(256)) * 10, b"x" * 2600
        assert await store.save("ck", small) == "configmap/ck-checkpoint"
        assert await ConfigMapCheckpointStore(api, "default", search).load("ck") == small
        await store.save("ck", big)  # 3 chunks in slot a, then the pointer
        assert await ConfigMapCheckpointStore(api, "default", search).load("ck") == big
        pointer = await kube.read(CONFIGMAPS, "ck-checkpoint")
        assert pointer["data"]["slot"] == "a" and pointer["data"]["chunks"] == "3"
        assert "checkpoint" not in (pointer.get("binaryData") or {})
        chunk = await kube.read(CONFIGMAPS, "ck-checkpoint-a-0")
        assert chunk["metadata"]["ownerReferences"][0]["uid"] == search["metadata"]["uid"]

        # A crash after writing the new chunks (slot b) but before the flip: the old one loads.
        crashing = ConfigMapCheckpointStore(api, "default", search, chunk_bytes=1000)
        await crashing.load("ck")
        flip = crashing._write

        async def die_on_flip(key: str, name: str, data: Any, binary: Any) -> None:
            if name == "ck-checkpoint":
                raise ConnectionError("operator killed")
            await flip(key, name, data, binary)

        crashing._write = die_on_flip  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await crashing.save("ck", bigger)
        assert (await kube.read(CONFIGMAPS, "ck-checkpoint-b-0")) is not None
        fresh = ConfigMapCheckpointStore(api, "default", search, chunk_bytes=1000)
        assert await fresh.load("ck") == big
        await fresh.save("ck", bigger)  # the next save goes to slot b and flips
        assert await ConfigMapCheckpointStore(api, "default", search).load("ck") == bigger

        # A chunk edited by hand is refused, never resumed from.
        await kube.patch(CONFIGMAPS, "ck-checkpoint-b-1",
                         {"binaryData": {"checkpoint": base64.b64encode(b"y" * 1000).decode()}})
        with pytest.raises(CheckpointError, match="checksum"):
            await ConfigMapCheckpointStore(api, "default", search).load("ck")
        await kube.remove(CONFIGMAPS, "ck-checkpoint-b-2")
        with pytest.raises(CheckpointError, match="missing"):
            await ConfigMapCheckpointStore(api, "default", search).load("ck")
    finally:
        await api.close()


# --- configuration and the entry point ----------------------------------------------------------

def test_config_from_the_charts_environment_and_flags() -> None:
    env = {"KUBENAS_WATCH_NAMESPACES": "team-a, team-b", "KUBENAS_HTTP_PORT": "9090",
           "KUBENAS_REPORT_URL_BASE": "http://kubenas.kubenas.svc.cluster.local:8080",
           "KUBENAS_TRAINER_IMAGE": "kubenas-trainer:0.1.0",
           "KUBENAS_TRAINER_IMAGE_PULL_POLICY": "IfNotPresent",
           "KUBENAS_TRAINER_IMAGE_PULL_SECRETS": "a,b", "KUBENAS_TRAINER_SERVICE_ACCOUNT": "tr",
           "KUBENAS_LOG_LEVEL": "debug", "KUBENAS_NAMESPACE": "kubenas",
           "KUBENAS_POD_NAME": "kubenas-operator-0"}
    config = OperatorConfig.from_env(env)
    assert config.namespaces == ("team-a", "team-b") and config.http_port == 9090
    assert config.trainer_image_pull_secrets == ("a", "b") and config.log_level == "DEBUG"
    assert config.report_url_base == env["KUBENAS_REPORT_URL_BASE"]
    assert OperatorConfig.from_env({"KUBENAS_WATCH_NAMESPACES": ""}).namespaces == ()
    flagged = config.with_args(["-n", "x", "--port", "8181"])
    assert flagged.namespaces == ("x",) and flagged.http_port == 8181
    with pytest.raises(ValueError, match="KUBENAS_HTTP_PORT"):
        OperatorConfig.from_env({"KUBENAS_HTTP_PORT": "eighty"})


def test_main_reports_a_bad_environment(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBENAS_HTTP_PORT", "eighty")
    assert main([]) == 2
    assert "KUBENAS_HTTP_PORT" in capsys.readouterr().out


async def test_run_serves_probes_metrics_and_searches(kube: KubeTestBed) -> None:
    """``run`` = kopf + the status API in one loop, as ``kubenas operator`` starts it."""
    stop = asyncio.Event()
    started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run(OperatorConfig(http_host="127.0.0.1", http_port=0),
                                   connection=kube.connection_info(), stop_flag=stop,
                                   started=started))
    try:
        runtime = await asyncio.wait_for(started, 20)
        base = runtime.report_url_base
        async with aiohttp.ClientSession() as session:
            async def get(path: str) -> int:
                async with session.get(base + path) as response:
                    return response.status

            assert await get("/healthz") == 200

            async def ready() -> bool:
                return await get("/readyz") == 200

            await wait_for(ready, message="/readyz")
            await kube.client.create(NASSEARCHES, search_manifest(
                "bad", budget={"maxTrials": 2, "parallelism": 3}))

            async def rejected() -> dict[str, Any] | None:
                obj = await kube.read(NASSEARCHES, "bad")
                return obj if ((obj or {}).get("status") or {}).get("reason") == "InvalidSpec" else None

            failed = await wait_for(rejected, message="the InvalidSpec status")
            assert "spec.budget.parallelism" in failed["status"]["message"]
            async with session.get(base + "/metrics") as response:
                assert "kubenas_build_info" in await response.text()
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # kopf bound them; give them back
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
