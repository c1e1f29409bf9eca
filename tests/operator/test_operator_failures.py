"""What goes wrong with trials on a cluster, and what the operator makes of it: a failing
trainer, an evicted pod, a pod no node can take (no free GPU), a report that never arrives,
a forged report; and an invalid NASSearch beside a valid one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.kube_emulator import EVENTS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    Gate,
    OperatorBed,
    crd_test_bed,
    document_of,
    final_report,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()


NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


async def test_failed_evicted_unschedulable_and_silent_trials(kube: KubeTestBed) -> None:
    scheduled = Gate()

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        doc = document_of(job)
        index, attempt = int(doc["trial"].rsplit("-t", 1)[1]), doc["attempt"]
        if index == 0 and attempt == 0:  # the trainer fails: it says so, exits 1
            await cluster.run(job)
            failed = {"kind": "failed", "trial": doc["trial"], "attempt": 0,
                      "reason": "CUDA error: out of memory"}
            assert (await cluster.post(job, failed))[0] == 200
            await cluster.terminate(job, 1, json.dumps(failed))
        elif index == 1 and attempt == 0:  # the kubelet evicts the pod
            await cluster.run(job)
            await cluster.pod_status(job, {"phase": "Failed", "reason": "Evicted",
                                           "message": "The node was low on resource: memory."})
            await cluster.finish_job(job, False, "BackoffLimitExceeded")
        elif index == 2:  # no node has a free GPU, for a while
            await cluster.create_pod(job)
            await cluster.pod_status(job, {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": NO_GPU}]})
            await scheduled.wait()
            await cluster.succeed(job)
        elif index == 3:  # the HTTP report never arrives: the termination message has it
            await cluster.succeed(job, accuracy=0.81, http=False)
        else:
            await cluster.succeed(job)

    bed = OperatorBed(kube)
    manifest = search_manifest("fx", budget={"maxTrials": 5, "parallelism": 5},
                               trial={"retries": 1, "training": {"epochs": 2}})
    async with FakeCluster(kube, trainer) as cluster, bed.running():
        await kube.client.create(NASSEARCHES, manifest)

        async def pending_without_gpu() -> dict[str, Any] | None:
            trial = await kube.read("kubenas.dev/v1alpha1/nastrials", "fx-t0002")
            conds = {c["type"]: c for c in ((trial or {}).get("status") or {}).get(
                "conditions") or []}
            return trial if conds.get("Scheduled", {}).get("status") == "False" else None

        pending = await wait_for(pending_without_gpu, message="Scheduled=False on fx-t0002")
        assert pending["status"]["phase"] == "Pending"
        [cond] = pending["status"]["conditions"]
        assert cond["reason"] == "Unschedulable" and cond["message"] == NO_GPU

        async def unschedulable_event() -> list[dict[str, Any]]:
            events = await kube.read_all(EVENTS, field_selector="involvedObject.name=fx-t0002")
            return [e for e in events if e["reason"] == "Unschedulable"]

        [event] = await wait_for(unschedulable_event, message="an Unschedulable event")
        assert event["type"] == "Warning" and "Insufficient nvidia.com/gpu" in event["message"]
        assert event["involvedObject"]["kind"] == "NASTrial"
        scheduled.open()
        done = await bed.wait_phase("fx", "Succeeded", "Failed")

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] == 5 and status["trials"]["failed"] == 0
    assert status["trials"]["retried"] == 2
    jobs = sorted(j["metadata"]["name"] for j in await bed.jobs("fx"))
    assert jobs == ["fx-t0000-a0", "fx-t0000-a1", "fx-t0001-a0", "fx-t0001-a1",
                    "fx-t0002-a0", "fx-t0003-a0", "fx-t0004-a0"]
    trials = {t["metadata"]["name"]: t for t in await bed.trials("fx")}
    assert trials["fx-t0000"]["spec"]["attempt"] == 1
    assert trials["fx-t0000"]["status"]["jobName"] == "fx-t0000-a1"
    assert trials["fx-t0001"]["status"]["attempt"] == 1
    assert trials["fx-t0003"]["status"]["reward"] == pytest.approx(0.81**3)
    assert trials["fx-t0003"]["status"]["epochs"][-1]["val_accuracy"] == pytest.approx(0.81)
    scheduled_cond = {c["type"]: c for c in trials["fx-t0002"]["status"].get("conditions", [])}
    assert scheduled_cond.get("Scheduled", {"status": "True"})["status"] == "True"
    events = await kube.read_all(EVENTS, field_selector="involvedObject.name=fx-t0000")
    [retried] = [e for e in events if e["reason"] == "TrialRetried"]
    assert "CUDA error: out of memory" in retried["message"]
    events = await kube.read_all(EVENTS, field_selector="involvedObject.name=fx-t0001")
    [evicted] = [e for e in events if e["reason"] == "TrialRetried"]
    assert "Evicted" in evicted["message"] and "low on resource" in evicted["message"]
    assert len(cluster.seen) == 7


async def test_forged_reports_are_refused_and_an_invalid_search_stays_apart(
        kube: KubeTestBed) -> None:
    """Another trial's token gets 403 and changes nothing; a broken NASSearch gets a
    condition and an Event naming the field while the valid one completes; fixing it
    starts it."""
    forged: list[tuple[int, str]] = []

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        doc = document_of(job)
        await cluster.run(job)
        if doc["trial"] == "good-t0001":
            own = await cluster.token(job)
            victim = json.loads(json.dumps(job).replace("good-t0001", "good-t0000"))
            forged_report = {**final_report(job, accuracy=0.99), "trial": "good-t0000"}
            status, body = await cluster.post(victim, forged_report, token=own)
            forged.append((status, body["result"]))
            status, body = await cluster.post(job, final_report(job), token="0" * 64)
            forged.append((status, body["result"]))
        status, body = await cluster.post(job, final_report(job))
        assert status == 200, body
        await cluster.terminate(job, 0)

    bad = search_manifest("bad", searchSpace={"type": "zoph-le-rnn", "options": {}},
                          trial={"dataset": {"name": "cifar10"}})
    bed = OperatorBed(kube)
    async with FakeCluster(kube, trainer) as cluster, bed.running():
        await kube.client.create(NASSEARCHES, bad)
        await kube.client.create(NASSEARCHES, search_manifest(
            "good", budget={"maxTrials": 4, "parallelism": 2}))
        failed = await bed.wait_phase("bad", "Failed")
        done = await bed.wait_phase("good", "Succeeded", "Failed")

        async def invalid_event() -> list[dict[str, Any]]:
            events = await kube.read_all(EVENTS, field_selector="involvedObject.name=bad")
            return [e for e in events if e["reason"] == "InvalidSpec"]

        [event] = await wait_for(invalid_event, message="an InvalidSpec event")
        # The fix: a dataset that fits the language space; the search starts and runs.
        await kube.client.patch(NASSEARCHES, "bad", {"spec": {
            "trial": {"dataset": {"name": "synthetic"}}, "budget": {"maxTrials": 1,
                                                                    "parallelism": 1}}})
        fixed = await bed.wait_phase("bad", "Succeeded", timeout=30)

    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["trials"]["succeeded"] == 4
    assert forged == [(403, "forbidden"), (403, "forbidden")]
    assert sorted(t for t, c, _ in cluster.responses if c == 200) == [
        "bad-t0000", *(f"good-t{i:04d}" for i in range(4))]
    t0 = [t for t in await bed.trials("good") if t["metadata"]["name"] == "good-t0000"][0]
    assert t0["status"]["reward"] != pytest.approx(0.99**3)  # the forged report changed nothing

    status = failed["status"]
    cond = {c["type"]: c for c in status["conditions"]}["SpecValid"]
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    assert "spec.trial.dataset.name" in cond["message"] and "cifar10" in cond["message"]
    assert event["type"] == "Warning" and "spec.trial.dataset.name" in event["message"]
    assert fixed["status"]["phase"] == "Succeeded" and fixed["status"]["trials"]["succeeded"] == 1
    assert {c["type"]: c["status"] for c in fixed["status"]["conditions"]}["SpecValid"] == "True"


async def test_a_search_whose_start_fails_on_the_api_retries_alone(
        kube: KubeTestBed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API refuses the first Secret of one search (RBAC not rolled out yet): that search
    gets a StartFailed event and starts on a later try; the other search never waits."""
    from nas_operator.kube import supervisor
    from nas_operator.kube.api import ApiError

    monkeypatch.setattr(supervisor, "START_RETRY", 0.5)

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    async with FakeCluster(kube, trainer), bed.running() as runtime:
        create = runtime.api.create
        refused: list[str] = []

        async def refuse_once(resource: Any, namespace: Any, body: Any) -> Any:
            if resource.plural == "secrets" and body["metadata"]["name"] == "flaky-tokens" \
                    and not refused:
                refused.append(body["metadata"]["name"])
                raise ApiError(403, "Forbidden", 'secrets is forbidden: User "system:'
                               'serviceaccount:kubenas:kubenas-operator" cannot create')
            return await create(resource, namespace, body)

        runtime.api.create = refuse_once  # type: ignore[method-assign]
        await kube.client.create(NASSEARCHES, search_manifest(
            "flaky", budget={"maxTrials": 2, "parallelism": 2}))
        await kube.client.create(NASSEARCHES, search_manifest(
            "fine", budget={"maxTrials": 2, "parallelism": 2}))
        fine = await bed.wait_phase("fine", "Succeeded", "Failed")
        flaky = await bed.wait_phase("flaky", "Succeeded", "Failed")
        events = await kube.read_all(EVENTS, field_selector="involvedObject.name=flaky")
    assert refused == ["flaky-tokens"]
    assert fine["status"]["phase"] == flaky["status"]["phase"] == "Succeeded"
    [failed] = [e for e in events if e["reason"] == "StartFailed"]
    assert failed["type"] == "Warning" and "forbidden" in failed["message"]
