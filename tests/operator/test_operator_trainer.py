"""The operator with real trainers: one trial trained by ``python -m nas_trainer`` in a
subprocess on tiny digits data, started exactly as its Job says (env, token from the Secret);
and an ENAS search: one long trainer Job with progress in the status, then the derived
architecture retrained as a final-stage NASTrial."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from nas_operator.api import space_class
from tests.support.kube_emulator import NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    Gate,
    OperatorBed,
    crd_test_bed,
    document_of,
    env_of,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()

TINY_DIGITS = {
    "dataset": {"name": "digits", "maxTrainExamples": 64, "validationSize": 32},
    "training": {"epochs": 2, "batchSize": 32, "threads": 1, "device": "cpu",
                 "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1}},
}


async def test_a_trial_runs_the_real_trainer_from_its_job_spec(kube: KubeTestBed,
                                                               tmp_path: Path) -> None:
    exits: list[int] = []

    async def kubelet(cluster: FakeCluster, job: dict[str, Any]) -> None:
        """Start the container as the kubelet would: the Job's env, the Secret's token."""
        await cluster.run(job)
        env = {k: v for k, v in env_of(job).items() if isinstance(v, str)}
        env["KUBENAS_REPORT_TOKEN"] = await cluster.token(job)
        termination = tmp_path / f"{job['metadata']['name']}.termination-log"
        env["KUBENAS_TERMINATION_FILE"] = str(termination)  # the kubelet's file for this pod
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        env["HOME"] = env["TMPDIR"] = str(tmp_path)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nas_trainer", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode is not None
        exits.append(proc.returncode)
        message = termination.read_text() if termination.exists() else stderr.decode()[-4096:]
        await cluster.terminate(job, proc.returncode, message)

    bed = OperatorBed(kube)
    manifest = search_manifest("real", searchSpace={"type": "enas-macro", "options": {"layers": 2}},
                               budget={"maxTrials": 1, "parallelism": 1},
                               trial={**TINY_DIGITS, "retries": 0})
    async with FakeCluster(kube, kubelet) as cluster, bed.running() as runtime:
        await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("real", "Succeeded", "Failed", timeout=240)

        async def exited() -> bool:
            return bool(exits)

        await wait_for(exited, message="the trainer process to exit")
        accepted = runtime.metrics.registry.get_sample_value(
            "kubenas_status_api_reports_total", {"result": "accepted"})

    assert exits == [0]
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    [trial] = await bed.trials("real")
    epochs = trial["status"]["epochs"]
    assert len(epochs) == 2 and all(0.0 <= e["val_accuracy"] <= 1.0 for e in epochs)
    best_acc = max(e["val_accuracy"] for e in epochs)
    assert trial["status"]["reward"] == pytest.approx(best_acc**3)
    assert status["best"]["reward"] == pytest.approx(best_acc**3)
    # The trainer's own HTTP report arrived; the test posted none.
    assert cluster.responses == [] and accepted is not None and accepted >= 1
    assert status["trials"]["succeeded"] == 1


async def test_enas_runs_one_long_job_with_progress_then_final_training(
        kube: KubeTestBed) -> None:
    space = space_class("enas-macro")({"layers": 4})  # type: ignore[misc]
    derived = space.sample(random.Random(7))
    progress_seen: list[dict[str, Any]] = []
    go_on = Gate()

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        doc = document_of(job)
        await cluster.run(job)
        if doc["mode"] == "train":  # a final-stage retraining run
            assert doc["architecture"]["tokens"] == derived
            await cluster.succeed(job, accuracy=0.9)
            return
        assert doc["enas"]["controllerStepsPerEpoch"] >= 1 and doc.get("architecture") is None
        for epoch in range(3):
            report = {"kind": "epoch", "trial": doc["trial"], "attempt": 0, "epoch": epoch,
                      "metrics": {"val_accuracy": 0.3 + 0.1 * epoch}}
            assert (await cluster.post(job, report))[0] == 200
            if epoch == 1:
                await go_on.wait()
        final = {"kind": "final", "trial": doc["trial"], "attempt": 0,
                 "metrics": {"val_accuracy": 0.5},
                 "epochs": [{"val_accuracy": 0.3 + 0.1 * e} for e in range(3)],
                 "architecture": space.architecture(derived).model_dump()}
        assert (await cluster.post(job, final))[0] == 200
        await cluster.terminate(job, 0)

    bed = OperatorBed(kube)
    manifest = search_manifest(
        "enas", searchSpace={"type": "enas-macro", "options": {"layers": 4}},
        strategy={"type": "enas", "batchSize": 10, "seed": 1},
        budget={"maxTrials": 1, "parallelism": 1},
        trial={"training": {"epochs": 3}, "retries": 0},
        finalTraining={"topK": 1, "training": {"epochs": 5}})
    async with FakeCluster(kube, trainer), bed.running():
        await kube.client.create(NASSEARCHES, manifest)

        async def progress() -> dict[str, Any] | None:
            status = ((await bed.search("enas")) or {}).get("status") or {}
            if (status.get("progress") or {}).get("epoch") == 1:
                return status
            return None

        mid = await wait_for(progress, message="ENAS progress at epoch 1 in the status")
        progress_seen.append(mid["progress"])
        go_on.open()
        done = await bed.wait_phase("enas", "Succeeded", "Failed")

    assert progress_seen[0]["trial"] == "enas-t0000" and progress_seen[0]["epochs"] == 3
    assert progress_seen[0]["metrics"] == {"val_accuracy": pytest.approx(0.4)}
    assert mid["trials"]["running"] == 1 and mid["phase"] == "Running"
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["best"]["tokens"] == derived
    [final] = status["finalTraining"]
    assert final["trial"] == "enas-f0000" and final["reward"] == pytest.approx(0.9**3)
    # the supernet's score and the standalone retraining, labelled apart in the status
    assert status["best"]["scoredBy"] == "supernet" and status["topK"][0]["scoredBy"] == "supernet"
    assert final["scoredBy"] == "training" and final["retrains"] == "enas-t0000"
    assert "best enas-t0000 supernet score 0.125" in status["message"], status["message"]
    assert "retrained enas-f0000 (of enas-t0000) reward 0.729" in status["message"]
    trials = {t["metadata"]["name"]: t for t in await bed.trials("enas")}
    assert set(trials) == {"enas-t0000", "enas-f0000"}
    assert trials["enas-f0000"]["spec"]["stage"] == "final"
    assert trials["enas-f0000"]["spec"]["architecture"]["tokens"] == derived
    assert trials["enas-t0000"]["status"]["epochs"][-1]["val_accuracy"] == pytest.approx(0.5)
    jobs = await bed.jobs("enas")
    assert sorted(j["metadata"]["name"] for j in jobs) == ["enas-f0000-a0", "enas-t0000-a0"]
    final_doc = document_of([j for j in jobs if j["metadata"]["name"] == "enas-f0000-a0"][0])
    assert final_doc["training"]["epochs"] == 5
