"""``spec.retention`` on the real operator: a long search keeps only the best and the latest
NASTrials in the API, the checkpoint's ledger keeps every trial's reward, the NASSearch's
best stays the same, and a restart between the checkpoint and the deletes finishes them."""

from __future__ import annotations

import threading
from typing import Any

import kmock

from nas_operator.checkpoint import decode_checkpoint
from nas_operator.kube.api import KubeApi
from nas_operator.kube.checkpoint_store import ConfigMapCheckpointStore
from nas_operator.kube.config import OperatorConfig
from tests.support.kube_emulator import CONFIGMAPS, JOBS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()
TRIALS = 16
RETENTION = {"keepBest": 2, "keepRecent": 3}


def manifest() -> dict[str, Any]:
    """16 trials, 4 at a time, a random strategy."""
    body = search_manifest("ret", budget={"maxTrials": TRIALS, "parallelism": 4},
                           retention=RETENTION)
    body["spec"]["strategy"] = {"type": "random", "seed": 3}
    return body


async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
    await cluster.succeed(job)


async def checkpointed_ledger(kube: KubeTestBed, name: str) -> dict[str, Any]:
    """The search's ledger as its checkpoint ConfigMaps hold it (what a new operator reads)."""
    api = KubeApi.from_connection_info(kube.connection_info())
    try:
        owner = await kube.read(NASSEARCHES, name)
        blob = await ConfigMapCheckpointStore(api, "default", owner).load(name)
    finally:
        await api.close()
    assert blob is not None
    return decode_checkpoint(blob).state["ledger"]


def expected_names(ledger: dict[str, Any]) -> set[str]:
    """Best 2 rewards (ties: lower index) and the latest 3, from the ledger's own records."""
    rewards = {i: body[2] for i, (tag, body) in enumerate(ledger["trials"]["search"])}
    assert all(r is not None for r in rewards.values()) and len(rewards) == TRIALS
    best = sorted(rewards, key=lambda i: (-rewards[i], i))[:2]
    return {f"ret-t{i:04d}" for i in [*best, TRIALS - 3, TRIALS - 2, TRIALS - 1]}


async def names_of(bed: OperatorBed) -> set[str]:
    return {t["metadata"]["name"] for t in await bed.trials("ret")}


async def test_a_search_ends_with_only_the_retained_nastrials(kube: KubeTestBed) -> None:
    bed = OperatorBed(kube, OperatorConfig(status_interval=0.2, retention_batch=4))
    async with FakeCluster(kube, trainer), bed.running():
        await kube.client.create(NASSEARCHES, manifest())

        async def finished() -> bool:
            return await bed.phase("ret") in ("Succeeded", "Failed")

        await wait_for(finished, 120, "the search to end")
        left = await names_of(bed)  # the final status waits for the last deletions
        ledger = await checkpointed_ledger(kube, "ret")
        want = expected_names(ledger)
        assert left == want, (sorted(left - want), sorted(want - left))
        status = (await bed.search("ret"))["status"]
    assert status["phase"] == "Succeeded" and status["trials"]["succeeded"] == TRIALS
    # the best a user sees is the ledger's best, and its NASTrial is still there
    rewards = [body[2] for _, body in ledger["trials"]["search"]]
    assert status["best"]["reward"] == max(rewards)
    assert status["best"]["trial"] in want
    assert len(status["topK"]) == min(10, TRIALS)  # summaries stay, NASTrials or not
    # the Jobs of deleted trials went with them (owner references)
    jobs = {j["metadata"]["labels"]["kubenas.dev/trial"] for j in await kube.read_all(JOBS)}
    assert jobs <= want, sorted(jobs - want)


async def _equal(bed: OperatorBed, want: set[str]) -> bool:
    return await names_of(bed) == want


async def test_a_restart_between_the_checkpoint_and_the_deletes_finishes_them(
        kube: KubeTestBed) -> None:
    refuse = threading.Event()
    refuse.set()
    refused = 0

    def refusing() -> bool:
        nonlocal refused
        if refuse.is_set():
            refused += 1
        return refuse.is_set()

    def inject() -> None:  # the API server refuses every NASTrial delete for now
        kube.emulator["delete", kmock.resource("kubenas.dev", "v1alpha1", "nastrials"),
                      refusing] << 503

    await kube.server.call(inject)
    bed = OperatorBed(kube, OperatorConfig(status_interval=0.2, retention_batch=4))
    async with FakeCluster(kube, trainer):
        async with bed.running():
            await kube.client.create(NASSEARCHES, manifest())
            await bed.wait_phase("ret", "Succeeded", "Failed", timeout=120)
            await wait_for(lambda: _refused(lambda: refused), 30, "a refused delete")
        # The operator is gone after writing its checkpoint (the write-ahead), with every
        # NASTrial still there: the deletes it tried were refused.
        assert len(await names_of(bed)) == TRIALS
        ledger = await checkpointed_ledger(kube, "ret")
        assert [tag for tag, _ in ledger["trials"]["search"]] == [1] * TRIALS  # all compacted
        want = expected_names(ledger)
        best_before = (await bed.search("ret"))["status"]["best"]
        refuse.clear()
        creates = await kube.calls("create", "jobs.batch")
        async with bed.running():
            await wait_for(lambda: _equal(bed, want), 90, f"only {sorted(want)} left")
            best_after = (await bed.search("ret"))["status"]["best"]
        assert await kube.calls("create", "jobs.batch") == creates  # nothing ran again
    assert best_after == best_before
    assert (await checkpointed_ledger(kube, "ret")) == ledger
    assert await kube.read(CONFIGMAPS, "ret-checkpoint") is not None


async def _refused(count: Any) -> bool:
    return count() > 0
