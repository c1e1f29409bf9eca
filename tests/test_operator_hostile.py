"""Hostile NASSearches on the emulator (issue 18): one that cannot be built in bounded time
gets a condition naming the limit while the search beside it completes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kube_emulator import EVENTS, NASSEARCHES, KubeTestBed
from test_operator_support import FakeCluster, OperatorBed, crd_test_bed, search_manifest, wait_for

import nas_operator.loop.build as build
from nas_operator.api import parse_spec

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
