"""A several-worker weight-sharing trial on a cluster: an Indexed Job of N pods with the
rendezvous settings (WORLD_SIZE, RANK from the completion index, MASTER_ADDR on a headless
Service, MASTER_PORT); only pod 0's success ends the attempt, any worker's failure fails it."""

from __future__ import annotations

from typing import Any

from controller_policy.contract import DartsSpec, EnasSpec, TrialDocument
from nas_operator.api import TrialSpec, space_class
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.jobs import INDEX_ANNOTATION, build_job, build_rendezvous_service
from nas_operator.kube.observe import read_pod
from nas_operator.launcher import LaunchRequest
from tests.support.kube_emulator import NASSEARCHES, SERVICES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    search_manifest,
)

OWNER = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASTrial",
         "metadata": {"name": "s-t0000", "uid": "u-1"}}


def request(document: TrialDocument) -> LaunchRequest:
    return LaunchRequest(namespace="ns", search="s", trial="s-t0000", attempt=2,
                         job_name="s-t0000-a2", document=document, token="t" * 64,
                         report_url="http://kubenas.kubenas.svc:8080/v1/...")


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_two_worker_darts_trial_is_an_indexed_job_with_the_rendezvous_settings() -> None:
    doc = TrialDocument(search="s", trial="s-t0000", attempt=2, mode="darts", spaceType="enas-micro",
                        darts=DartsSpec(workers=2))
    req = request(doc)
    job = build_job(req, TrialSpec(), OperatorConfig(), OWNER)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed", 2, 2, 0)  # backoffLimit 0: one failed worker fails the Job
    assert spec["template"]["spec"]["subdomain"] == "s-t0000-a2"
    env = env_of(job)
    assert env["WORLD_SIZE"] == "2" and env["MASTER_PORT"] == "29500"
    assert env["MASTER_ADDR"] == "s-t0000-a2-0.s-t0000-a2"  # pod 0 under the headless Service
    assert env["RANK"] == {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}

    service = build_rendezvous_service(req, OWNER)
    assert service["metadata"]["name"] == "s-t0000-a2"
    assert service["metadata"]["ownerReferences"][0]["name"] == "s-t0000"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_one_worker_trials_stay_plain_jobs() -> None:
    for doc in (TrialDocument(search="s", trial="s-t0000", mode="enas", spaceType="enas-micro",
                              enas=EnasSpec()),
                TrialDocument(search="s", trial="s-t0000")):
        job = build_job(request(doc), TrialSpec(), OperatorConfig(), OWNER)
        assert "completionMode" not in job["spec"] and job["spec"]["completions"] == 1
        assert "WORLD_SIZE" not in env_of(job)
    enas = TrialDocument(search="s", trial="s-t0000", mode="enas", spaceType="enas-micro",
                         enas=EnasSpec(workers=3))
    assert build_job(request(enas), TrialSpec(), OperatorConfig(), OWNER)["spec"]["completions"] == 3


def pod(index: str, code: int) -> dict[str, Any]:
    return {"metadata": {"annotations": {INDEX_ANNOTATION: index}},
            "status": {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": code, "message": "m"}}}]}}


def test_only_pod_0_ends_the_attempt_with_success_and_any_worker_fails_it() -> None:
    assert read_pod(pod("1", 0)).kind == "running"  # rank 1 done: rank 0's exit decides
    assert (read_pod(pod("0", 0)).kind, read_pod(pod("0", 0)).exit_code) == ("exited", 0)
    failed = read_pod(pod("1", 1))
    assert (failed.kind, failed.exit_code) == ("exited", 1)


kube = crd_test_bed()


async def test_on_the_emulator_a_failed_worker_fails_the_attempt_and_the_retry_finishes(
        kube: KubeTestBed) -> None:
    space = space_class("enas-micro")({"nodes": 2})  # type: ignore[misc]
    derived = [0, 4, 1, 4, 2, 0, 1, 1] * 2
    seen: list[dict[str, Any]] = []

    async def workers(cluster: FakeCluster, job: dict[str, Any]) -> None:
        doc = document_of(job)
        await cluster.run(job)
        if doc["mode"] == "train":  # the derived cell retrained
            await cluster.succeed(job, accuracy=0.9)
            return
        name = job["metadata"]["name"]
        seen.append({"job": job, "service": await kube.read(SERVICES, name)})
        if doc["attempt"] == 0:  # rank 1's node goes away: the Job fails
            await cluster.terminate(job, 1, "a DARTS worker was lost: Connection closed by peer")
            return
        final = {"kind": "final", "trial": doc["trial"], "attempt": doc["attempt"],
                 "metrics": {"val_accuracy": 0.5}, "epochs": [{"val_accuracy": 0.5}],
                 "architecture": space.architecture(derived).model_dump()}
        assert (await cluster.post(job, final))[0] == 200
        await cluster.terminate(job, 0)

    bed = OperatorBed(kube)
    manifest = search_manifest(
        "dd", searchSpace={"type": "enas-micro", "options": {"nodes": 2}},
        strategy={"type": "darts", "config": {"workers": 2}, "seed": 1},
        budget={"maxTrials": 1, "parallelism": 1},
        trial={"training": {"epochs": 1}, "retries": 1},
        finalTraining={"topK": 1, "training": {"epochs": 1}})
    async with FakeCluster(kube, workers), bed.running():
        await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("dd", "Succeeded", "Failed")

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["retried"] == 1 and status["best"]["tokens"] == derived
    assert [s["job"]["metadata"]["name"] for s in seen] == ["dd-t0000-a0", "dd-t0000-a1"]
    for attempt in seen:
        job, service = attempt["job"], attempt["service"]
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
        assert env_of(job)["MASTER_ADDR"].startswith(job["metadata"]["name"] + "-0.")
        assert service is not None and service["spec"]["clusterIP"] == "None"
    [trial] = [t for t in await bed.trials("dd") if t["spec"]["stage"] == "search"]
    assert trial["status"]["attempt"] == 1
