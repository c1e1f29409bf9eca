"""Hostile NASSearches and crashes on the emulator (issue 18): one that cannot be built in
bounded time gets a condition naming the limit while the search beside it completes; a crash
between the checkpoint and the Job create burns no attempt."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import nas_operator.loop.build as build
from nas_operator.api import parse_spec
from tests.support.kube_emulator import CONFIGMAPS, EVENTS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()


async def test_a_search_too_slow_to_build_fails_alone(
        kube: KubeTestBed, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strategy construction of 'huge' (12 layers) blocks its thread past the 0.5 s limit:
    'huge' ends Failed with BuildTimedOut naming the limit, 'fine' completes meanwhile."""
    release = threading.Event()
    real = build.make_strategy

    def make_strategy(kind: str, space: Any, config: Any) -> Any:
        if len(space.slots) >= 24:  # only the 12-layer space: a controller too big to build
            release.wait(20)
        return real(kind, space, config)

    fine_manifest = search_manifest("fine", budget={"maxTrials": 4, "parallelism": 2})
    build.build_now(parse_spec(fine_manifest["spec"]))  # torch's first use takes seconds
    monkeypatch.setattr(build, "make_strategy", make_strategy)
    monkeypatch.setattr(build, "BUILD_TIMEOUT", 0.5)

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    try:
        async with FakeCluster(kube, trainer), bed.running():
            await kube.client.create(NASSEARCHES, search_manifest(
                "huge", searchSpace={"type": "enas-macro", "options": {"layers": 12}}))
            await kube.client.create(NASSEARCHES, fine_manifest)
            fine = await bed.wait_phase("fine", "Succeeded", "Failed")
            huge = await bed.wait_phase("huge", "Failed")
            assert not release.is_set()  # 'fine' ran while the build of 'huge' still blocked

            async def refused() -> list[dict[str, Any]]:
                events = await kube.read_all(EVENTS, field_selector="involvedObject.name=huge")
                return [e for e in events if e["reason"] == "BuildTimedOut"]

            [event] = await wait_for(refused, message="a BuildTimedOut event")
            assert not await bed.jobs("huge")
    finally:
        release.set()
    assert fine["status"]["phase"] == "Succeeded", fine["status"]
    assert fine["status"]["trials"]["succeeded"] == 4
    status = huge["status"]
    assert status["reason"] == "BuildTimedOut"
    cond = {c["type"]: c for c in status["conditions"]}["SpecValid"]
    assert cond["status"] == "False" and cond["reason"] == "BuildTimedOut"
    assert "0.5 s" in cond["message"] and "spec.searchSpace" in cond["message"]
    assert event["type"] == "Warning" and "limit" in event["message"]


async def test_a_crash_before_the_job_create_burns_no_attempt(kube: KubeTestBed) -> None:
    """The operator stops while creating cr-t0001's first Job (after the write-ahead
    checkpoint, before the create reached the API); the next operator creates that Job as
    attempt 0 again, and with retries 0 the search still succeeds."""
    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    manifest = search_manifest("cr", budget={"maxTrials": 2, "parallelism": 2,
                                             "maxFailedTrials": 0}, trial={"retries": 0})
    stuck = asyncio.Event()
    async with FakeCluster(kube, trainer):
        async with bed.running() as first:
            create = first.api.create

            async def die_before_the_job(resource: Any, namespace: Any, body: Any) -> Any:
                if resource.plural == "jobs" and body["metadata"]["name"] == "cr-t0001-a0":
                    stuck.set()
                    await asyncio.Event().wait()  # never reaches the API
                return await create(resource, namespace, body)

            first.api.create = die_before_the_job  # type: ignore[method-assign]
            await kube.client.create(NASSEARCHES, manifest)
            await asyncio.wait_for(stuck.wait(), 30)
            assert await kube.read(CONFIGMAPS, "cr-checkpoint") is not None
        assert "cr-t0001-a0" not in {j["metadata"]["name"] for j in await bed.jobs("cr")}
        async with bed.running():
            done = await bed.wait_phase("cr", "Succeeded", "Failed")
            trials = await bed.trials("cr")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["trials"]["retried"] == 0
    assert sorted(j["metadata"]["name"] for j in await bed.jobs("cr")) == ["cr-t0000-a0",
                                                                           "cr-t0001-a0"]
    assert {t["metadata"]["name"]: t["spec"]["attempt"] for t in trials} == {
        "cr-t0000": 0, "cr-t0001": 0}
