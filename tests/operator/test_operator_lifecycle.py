"""A search's life as a user drives it with kubectl: suspend, a budget change while suspended,
resume, and deletion (everything it owns goes with it; the operator keeps serving)."""

from __future__ import annotations

from typing import Any

from tests.support.kube_emulator import (
    CONFIGMAPS,
    JOBS,
    NASSEARCHES,
    NASTRIALS,
    SECRETS,
    KubeTestBed,
)
from tests.support.operator_bed import (
    FakeCluster,
    Gate,
    OperatorBed,
    crd_test_bed,
    final_report,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()


def held_trainer(gate: Gate, kube: KubeTestBed) -> Any:
    """Run every trial, finish it only once ``gate`` opens (unless its Job was deleted)."""

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.run(job)
        await gate.wait()
        if await kube.read(JOBS, job["metadata"]["name"]) is None:
            return  # stopped by the operator (suspend or deletion)
        status, body = await cluster.post(job, final_report(job))
        assert status == 200, body
        await cluster.terminate(job, 0)

    return trainer


async def live_jobs(bed: OperatorBed, search: str) -> list[str]:
    return sorted(j["metadata"]["name"] for j in await bed.jobs(search))


async def test_suspend_budget_change_and_resume(kube: KubeTestBed) -> None:
    gate = Gate()
    bed = OperatorBed(kube)
    async with FakeCluster(kube, held_trainer(gate, kube)), bed.running():
        await kube.client.create(NASSEARCHES, search_manifest(
            "life", budget={"maxTrials": 4, "parallelism": 2}))

        async def two_running() -> bool:
            status = ((await bed.search("life")) or {}).get("status") or {}
            return (status.get("trials") or {}).get("running") == 2

        await wait_for(two_running, message="2 running trials")
        assert await live_jobs(bed, "life") == ["life-t0000-a0", "life-t0001-a0"]

        await kube.client.patch(NASSEARCHES, "life", {"spec": {"suspend": True}})
        suspended = await bed.wait_phase("life", "Suspended")
        assert {c["type"]: c["status"] for c in suspended["status"]["conditions"]}[
            "Suspended"] == "True"

        async def no_jobs() -> bool:
            return await live_jobs(bed, "life") == []

        await wait_for(no_jobs, message="running Jobs stopped by suspend")
        trials = {t["metadata"]["name"]: t for t in await bed.trials("life")}

        async def requeued() -> bool:
            trials.update({t["metadata"]["name"]: t for t in await bed.trials("life")})
            return all(t.get("status", {}).get("phase") == "Pending" for t in trials.values())

        await wait_for(requeued, message="the stopped trials back to Pending")

        # A budget change while suspended: more trials, more parallel.
        await kube.client.patch(NASSEARCHES, "life", {"spec": {"budget": {
            "maxTrials": 6, "parallelism": 3}}})
        await kube.client.patch(NASSEARCHES, "life", {"spec": {"suspend": False}})

        async def three_jobs() -> list[str] | None:
            names = await live_jobs(bed, "life")
            return names if len(names) == 3 else None

        assert await wait_for(three_jobs, message="3 Jobs after resume") == [
            "life-t0000-a1", "life-t0001-a1", "life-t0002-a0"]
        gate.open()
        done = await bed.wait_phase("life", "Succeeded", "Failed")
        events = {e["reason"] for e in await kube.read_all(
            "v1/events", field_selector="involvedObject.name=life")}

    status = done["status"]
    assert status["phase"] == "Succeeded"
    assert status["trials"]["total"] == 6 and status["trials"]["succeeded"] == 6
    assert status["observedGeneration"] == done["metadata"]["generation"]
    assert {"SearchSuspended", "SearchResumed", "SpecUpdated"} <= events
    names = await live_jobs(bed, "life")
    assert names == ["life-t0000-a1", "life-t0001-a1", "life-t0002-a0", "life-t0003-a0",
                     "life-t0004-a0", "life-t0005-a0"]


async def test_deleting_a_search_removes_what_it_owns(kube: KubeTestBed) -> None:
    gate = Gate()
    bed = OperatorBed(kube)
    async with FakeCluster(kube, held_trainer(gate, kube)), bed.running() as runtime:
        await kube.client.create(NASSEARCHES, search_manifest(
            "gone", budget={"maxTrials": 6, "parallelism": 3}))
        await kube.client.create(NASSEARCHES, search_manifest(
            "kept", budget={"maxTrials": 2, "parallelism": 2}))

        async def three_jobs() -> bool:
            return len(await live_jobs(bed, "gone")) == 3

        await wait_for(three_jobs, message="3 running Jobs")
        assert await kube.read(CONFIGMAPS, "gone-checkpoint") is not None
        assert await kube.read(SECRETS, "gone-tokens") is not None
        await kube.client.delete(NASSEARCHES, "gone")

        async def all_gone() -> bool:
            left = [await kube.read_all(r, label_selector="kubenas.dev/search=gone")
                    for r in (NASTRIALS, JOBS, CONFIGMAPS, SECRETS, "v1/pods")]
            return await bed.search("gone") is None and not any(left)

        await wait_for(all_gone, message="the search and everything it owns to go")
        assert runtime.searches.get("default", "gone") is None
        gate.open()
        done = await bed.wait_phase("kept", "Succeeded", "Failed")
        metrics, _ = runtime.metrics.exposition()
    assert done["status"]["phase"] == "Succeeded"
    assert b'search="gone"' not in metrics and b'search="kept"' in metrics
