"""Restart safety: a new operator process adopts running Jobs, creates nothing twice, loses no
reward (even one reported while no operator ran), resumes the controller from its
checkpoint in ConfigMaps, and repairs a NASTrial status write lost in the stop."""

from __future__ import annotations

import json
from typing import Any

from tests.support.kube_emulator import CONFIGMAPS, NASSEARCHES, NASTRIALS, KubeTestBed
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


def index_of(job: dict[str, Any]) -> int:
    return int(job["metadata"]["labels"]["kubenas.dev/trial"].rsplit("-t", 1)[1])


async def test_a_restarted_operator_adopts_jobs_and_loses_no_reward(kube: KubeTestBed) -> None:
    later = Gate()
    held: dict[int, dict[str, Any]] = {}

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.run(job)
        if index_of(job) >= 6:
            held[index_of(job)] = job
            await later.wait()
        if index_of(job) == 6:
            return  # finished while no operator ran (below)
        status, body = await cluster.post(job, final_report(job))
        assert status == 200, body
        await cluster.terminate(job, 0)

    bed = OperatorBed(kube)
    manifest = search_manifest("rs", budget={"maxTrials": 12, "parallelism": 4})
    async with FakeCluster(kube, trainer) as cluster:
        async with bed.running() as first:
            await kube.client.create(NASSEARCHES, manifest)

            async def six_done_four_running() -> bool:
                status = ((await bed.search("rs")) or {}).get("status") or {}
                trials = status.get("trials") or {}
                return trials.get("succeeded") == 6 and trials.get("running") == 4

            await wait_for(six_done_four_running, message="6 succeeded, 4 running")
            first_loop = first.searches.get("default", "rs")
            assert first_loop is not None
            updates_before = first_loop.controller.updates
            assert updates_before == 1  # 6 rewards, batches of 4
        # No operator now. Trial 6 finishes: its HTTP report cannot arrive, the pod's
        # termination message holds it.
        assert sorted(held) == [6, 7, 8, 9]
        lost_report = final_report(held[6], accuracy=0.93)
        await cluster.do(cluster.terminate(held[6], 0, json.dumps(lost_report)))
        checkpoint = await kube.read(CONFIGMAPS, "rs-checkpoint")
        assert checkpoint is not None and int(checkpoint["data"]["generation"]) >= 1
        chunks = int(checkpoint["data"]["chunks"])  # the controller's Adam state is ~1.2 MB
        assert chunks == 0 or all([await kube.read(CONFIGMAPS, f"rs-checkpoint-"
                                                   f"{checkpoint['data']['slot']}-{i}")
                                   for i in range(chunks)])
        creates_before = await kube.calls("create", "jobs.batch")
        # As if the operator had died between accepting trial 0's result and mirroring it.
        t0 = await kube.read(NASTRIALS, "rs-t0000")
        assert t0["status"]["phase"] == "Succeeded"
        await kube.set_status(NASTRIALS, "rs-t0000", {"phase": "Running", "reward": None,
                                                      "completionTime": None})

        async with bed.running() as second:
            async def resumed() -> bool:
                loop = second.searches.get("default", "rs")
                return loop is not None and loop.ledger.counts["search"]["succeeded"] == 7

            await wait_for(resumed, message="the new operator to take trial 6's reward")
            later.open()
            done = await bed.wait_phase("rs", "Succeeded", "Failed", timeout=60)
            loop = second.searches.get("default", "rs")
            assert loop is not None
            summary = loop.strategy.summary()

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["total"] == 12 and status["trials"]["succeeded"] == 12
    assert status["trials"]["retried"] == 0
    # Nothing created twice: 12 Jobs, all first attempts; the second operator adopted the
    # three running ones (and trial 6's finished one) and created only the last two.
    jobs = await bed.jobs("rs")
    assert sorted(j["metadata"]["name"] for j in jobs) == [f"rs-t{i:04d}-a0" for i in range(12)]
    assert await kube.calls("create", "jobs.batch") - creates_before == 2
    assert len(cluster.seen) == 12
    # The controller came back from its checkpoint: it knows all 12 proposals and rewards.
    assert summary["asked"] == 12 and summary["told"] == 12 and summary["updates"] == 3
    assert status["controller"]["updates"] == 3
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Running"] in ("Completed",
                                                                                 "Resumed")
    # The lost NASTrial write was repaired from the checkpoint's ledger.
    repaired = await kube.read(NASTRIALS, "rs-t0000")
    assert repaired["status"]["phase"] == "Succeeded"
    assert repaired["status"]["reward"] == t0["status"]["reward"]
    # Trial 6's reward came from its termination message.
    [t6] = [t for t in await bed.trials("rs") if t["metadata"]["name"] == "rs-t0006"]
    assert t6["status"]["phase"] == "Succeeded"
    assert abs(t6["status"]["reward"] - 0.93**3) < 1e-9
