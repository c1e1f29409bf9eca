"""A whole REINFORCE search through the real operator: NASTrials, Jobs, reports, status."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.support.kube_emulator import EVENTS, NASSEARCHES, SECRETS, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    env_of,
    final_report,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()


GPU_TRIAL = {
    "training": {"epochs": 2},
    "resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "2", "memory": "4Gi"}},
    "nodeSelector": {"accelerator": "nvidia-h100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "priorityClassName": "research",
    "activeDeadlineSeconds": 3600,
}


async def test_a_20_trial_reinforce_search_completes(kube: KubeTestBed) -> None:
    rewards: dict[str, float] = {}

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        report = await cluster.succeed(job)
        rewards[report["trial"]] = max(e["val_accuracy"] for e in report["epochs"]) ** 3

    bed = OperatorBed(kube)
    manifest = search_manifest("reinf", budget={"maxTrials": 20, "parallelism": 4},
                               trial=GPU_TRIAL)
    async with FakeCluster(kube, trainer) as cluster, bed.running() as runtime:
        created = await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("reinf", "Succeeded", "Failed", timeout=90)
        trials = await bed.trials("reinf")  # as a user sees them the moment the search is done
        loop = runtime.searches.get("default", "reinf")
        assert loop is not None
        summary = loop.strategy.summary()

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["total"] == 20 and status["trials"]["succeeded"] == 20
    assert status["trials"]["failed"] == 0 and status["trials"]["running"] == 0
    best_trial = max(rewards, key=rewards.__getitem__)
    assert status["best"]["trial"] == best_trial
    assert status["best"]["reward"] == pytest.approx(rewards[best_trial])
    assert [r["trial"] for r in status["topK"]][:1] == [best_trial]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
    # The strategy learned from every reward: 20 told, one update per batch of 4.
    assert summary["told"] == 20 and summary["updates"] == 5
    assert status["controller"]["updates"] == 5 and status["controller"]["baseline"] is not None
    assert status["controller"]["checkpointRef"] == "configmap/reinf-checkpoint"

    jobs = await bed.jobs("reinf")
    assert len(trials) == 20 and len(jobs) == 20
    assert len(cluster.seen) == 20  # no Job was created twice under another name
    search_uid = created["metadata"]["uid"]
    by_uid = {t["metadata"]["uid"]: t for t in trials}
    for trial in trials:
        [owner] = trial["metadata"]["ownerReferences"]
        assert owner["uid"] == search_uid and owner["kind"] == "NASSearch" and owner["controller"]
        assert trial["metadata"]["labels"]["kubenas.dev/search"] == "reinf"
        assert trial["status"]["phase"] == "Succeeded"
        name = trial["metadata"]["name"]
        assert trial["status"]["reward"] == pytest.approx(rewards[name])
        assert trial["spec"]["architecture"]["space"] == "enas-macro"
        assert trial["status"]["jobName"] == f"{name}-a0"
    for job in jobs:
        [owner] = job["metadata"]["ownerReferences"]
        trial = by_uid[owner["uid"]]
        assert owner["kind"] == "NASTrial" and job["metadata"]["name"] == f"{trial['metadata']['name']}-a0"
        labels = job["metadata"]["labels"]
        assert labels["kubenas.dev/trial"] == trial["metadata"]["name"]
        assert labels["kubenas.dev/attempt"] == "0"
        spec = job["spec"]
        assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 3600
        pod = spec["template"]["spec"]
        assert spec["template"]["metadata"]["labels"]["kubenas.dev/role"] == "trainer"
        assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
        assert pod["nodeSelector"] == {"accelerator": "nvidia-h100"}
        assert pod["tolerations"] == GPU_TRIAL["tolerations"]
        assert pod["priorityClassName"] == "research"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        env = env_of(job)
        ref = env["KUBENAS_REPORT_TOKEN"]["secretKeyRef"]
        assert ref == {"name": "reinf-tokens", "key": trial["metadata"]["name"]}
        assert all("value" not in e or "Bearer" not in str(e) for e in container["env"])
        assert env["KUBENAS_REPORT_URL"].endswith(
            f"/v1/namespaces/default/searches/reinf/trials/{trial['metadata']['name']}/reports")
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/checkpoints"} <= mounts

    # Every report was accepted once; finished trials' tokens were removed from the Secret.
    assert sorted(t for t, code, _ in cluster.responses if code == 200) == sorted(rewards)
    secret = await kube.read(SECRETS, "reinf-tokens")
    assert secret is not None and set(secret["data"]) == {"search-key"}
    assert len(base64.b64decode(secret["data"]["search-key"])) > 16

    events = await kube.read_all(EVENTS, field_selector="involvedObject.name=reinf")
    reasons = {e["reason"] for e in events}
    assert {"SearchStarted", "NewBest", "SearchSucceeded"} <= reasons


async def test_status_counts_follow_the_search_while_it_runs(kube: KubeTestBed) -> None:
    """Mid-search the NASSearch status shows running trials and the NASTrials say Running."""
    release: dict[str, Any] = {}

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.run(job)
        release[job["metadata"]["name"]] = job

    bed = OperatorBed(kube)
    async with FakeCluster(kube, trainer) as cluster, bed.running():
        await kube.client.create(NASSEARCHES, search_manifest(
            "live", budget={"maxTrials": 6, "parallelism": 3}))

        async def three_running() -> bool:
            obj = await bed.search("live")
            return ((obj or {}).get("status") or {}).get("trials", {}).get("running") == 3

        await wait_for(three_running, message="3 running trials in status")
        trials = await bed.trials("live")
        assert sorted(t["status"]["phase"] for t in trials) == ["Running"] * 3
        first = dict(release)
        for job in first.values():
            await cluster.do(cluster.post(job, final_report(job)))
            await cluster.do(cluster.terminate(job, 0))
        for name in first:
            del release[name]  # the next Jobs may already be there: keep them

        async def next_three() -> bool:
            return len(release) == 3

        await wait_for(next_three, message="the next 3 jobs")
        for job in list(release.values()):
            await cluster.do(cluster.post(job, final_report(job)))
            await cluster.do(cluster.terminate(job, 0))
        done = await bed.wait_phase("live", "Succeeded", "Failed")
    assert done["status"]["trials"]["succeeded"] == 6


async def test_the_dataset_claims_are_mounted_in_every_trial_and_final_job(
        kube: KubeTestBed) -> None:
    """The search's claim in the search Jobs, finalTraining's own claim in the final Job, each
    at its dataset.path; the trainer's document carries the path, never the claim."""
    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    manifest = search_manifest(
        "pvc", budget={"maxTrials": 2, "parallelism": 2},
        trial={"training": {"epochs": 2}, "dataset": {
            "name": "cifar10", "path": "/data/cifar10",
            "persistentVolumeClaim": {"claimName": "cifar10", "subPath": "batches"}}},
        finalTraining={"topK": 1, "dataset": {
            "name": "cifar10", "path": "/full", "persistentVolumeClaim": {"claimName": "full"}}})
    async with FakeCluster(kube, trainer), bed.running():
        await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("pvc", "Succeeded", "Failed", timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    mounts = {}
    for job in await bed.jobs("pvc"):
        pod = job["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert volume["persistentVolumeClaim"]["readOnly"] is True and mount["readOnly"] is True
        dataset = document_of(job)["dataset"]
        assert "persistentVolumeClaim" not in dataset and dataset["path"] == mount["mountPath"]
        mounts[job["metadata"]["name"]] = (volume["persistentVolumeClaim"]["claimName"],
                                           mount["mountPath"], mount.get("subPath"))
    assert mounts == {"pvc-t0000-a0": ("cifar10", "/data/cifar10", "batches"),
                      "pvc-t0001-a0": ("cifar10", "/data/cifar10", "batches"),
                      "pvc-f0000-a0": ("full", "/full", None)}
