"""Successive halving through the real operator on the emulator: a trial below the rung becomes
an EarlyStopped NASTrial (rule, epoch and reason in its status, an Event on it), its Job is
deleted, its later reports are refused with 409, and the search ends with every trial counted
and no NASTrial left running."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.kube_emulator import EVENTS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()
EPOCHS = 4
ACCURACY = {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}
"""Epoch-1 accuracy by trial index: trials 2 and 3 start only after 0 or 1 reached epoch 1
and are below both, so with eta 4 they stop there whatever the order of 0 and 1."""


async def test_successive_halving_deletes_the_jobs_of_stopped_trials(kube: KubeTestBed) -> None:
    refused: dict[str, tuple[int, dict[str, Any]]] = {}

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        doc = document_of(job)
        index = int(doc["trial"][-4:])
        await cluster.run(job)
        token = await cluster.token(job)  # in the pod's env from its start (the Secret's key
        # goes when the trial ends, and a stopped trainer still sends what it has)
        epochs = [{"val_accuracy": round(ACCURACY[index] + 0.01 * i, 4)} for i in range(EPOCHS)]
        for i, metrics in enumerate(epochs):
            status, body = await cluster.post(job, {"kind": "epoch", "trial": doc["trial"],
                                                    "attempt": doc["attempt"], "epoch": i,
                                                    "metrics": metrics}, token)
            if status != 200:  # stopped early: the pod would get its SIGTERM now
                refused[doc["trial"]] = (status, body)
                return
            await asyncio.sleep(0.1)
        report = {"kind": "final", "trial": doc["trial"], "attempt": doc["attempt"],
                  "metrics": epochs[-1], "epochs": epochs}
        status, body = await cluster.post(job, report, token)
        assert status == 200, body
        await cluster.terminate(job, 0)

    bed = OperatorBed(kube)
    manifest = search_manifest(
        "halving", budget={"maxTrials": 4, "parallelism": 2},
        trial={"training": {"epochs": EPOCHS}, "retries": 0},
        objective={"metric": "val_accuracy", "reward": "identity", "lastEpochs": 1},
        earlyStopping={"type": "successive-halving", "minEpochs": 1, "reductionFactor": 4},
    )  # fmt: skip
    async with FakeCluster(kube, trainer), bed.running():
        await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("halving", "Succeeded", "Failed", timeout=90)

        async def settled() -> list[dict[str, Any]] | None:
            trials = await bed.trials("halving")
            ended = all((t.get("status") or {}).get("phase") in ("Succeeded", "EarlyStopped")
                        for t in trials)
            return trials if len(trials) == 4 and ended else None

        trials = await wait_for(settled, 30, "every NASTrial ended")
        events = await kube.read_all(EVENTS)
        jobs = {j["metadata"]["name"]: j for j in await bed.jobs("halving")}

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    counts = status["trials"]
    stopped = {t["metadata"]["name"]: t["status"] for t in trials
               if t["status"]["phase"] == "EarlyStopped"}
    assert {"halving-t0002", "halving-t0003"} <= set(stopped), stopped
    assert (counts["total"], counts["failed"], counts["running"]) == (4, 0, 0)
    assert counts["earlyStopped"] == len(stopped) and counts["succeeded"] == 4 - len(stopped)
    assert status["earlyStopping"]["stopped"] == {"successive-halving": len(stopped)}
    assert status["earlyStopping"]["epochsSaved"] == len(stopped) * (EPOCHS - 1)
    for name, trial_status in stopped.items():
        stop = trial_status["earlyStopped"]
        assert (stop["rule"], stop["epoch"]) == ("successive-halving", 1)
        assert "top 1/4" in stop["reason"]
        assert f"{name}-a0" not in jobs  # its Job was deleted
        code, body = refused[name]  # its next report was refused, saying why
        assert code == 409 and "stopped early" in body["message"]
        assert any(e.get("reason") == "TrialEarlyStopped"
                   and e["involvedObject"]["name"] == name for e in events), name
    assert set(refused) == set(stopped)
