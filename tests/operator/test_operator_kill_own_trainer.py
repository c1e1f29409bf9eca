"""SIGKILL of the operator mid-search while the user's own trainers run (issue 13).

The operator is the real ``kubenas operator`` command in a child process (kubeconfig to the
emulator), so the kill is a real SIGKILL: no stop handler, no last checkpoint. The search
runs a declared model family (``searchSpace.type: custom``) with ``spec.trial.template``;
the fake kubelet starts each Job's own command — a user's script with the trial SDK,
reporting a metric of its own (``top1``) — as a real process with the Job's environment.
The trainers keep running through the kill and the restart: every reward stays the one the
script reported, no Job and no trainer is started twice, and the search ends with exactly
``maxTrials`` trials.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_emulator import JOBS, NASSEARCHES, NASTRIALS, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    crd_test_bed,
    run_container,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()

TRAIN_PY = '''"""A user's trainer: its own metric (top1), a duration that differs per trial."""
import os
import time

from kubenas_trial import Trial

with Trial.from_env() as trial:
    g = trial.genotype
    top1 = round(0.3 + g["stem"] / 100 + sum(s["width"] for s in g["stage"]) / 1000
                 + 0.01 * sum(s["kernel"] for s in g["stage"]), 6)
    pause = float(os.environ["EPOCH_SECONDS"]) * (int(trial.name[-4:]) % 4 + 1)
    for epoch in range(trial.training.epochs):
        time.sleep(pause)
        trial.report_epoch(epoch, top1=round(top1 * (epoch + 1) / trial.training.epochs, 6))
    trial.report_final()
'''

SPACE = {"type": "custom", "options": {"decisions": [
    {"name": "stem", "choices": [16, 24, 32]},
    {"name": "stage", "repeat": 2, "decisions": [
        {"name": "kernel", "choices": [3, 5]}, {"name": "width", "choices": [32, 64]},
        {"name": "skip", "inputs": {"maxInputs": 1}}]}]}}
MAX_TRIALS = 8


def expected_top1(genotype: dict[str, Any]) -> float:
    stages = genotype["stage"]
    return round(0.3 + genotype["stem"] / 100 + sum(s["width"] for s in stages) / 1000
                 + 0.01 * sum(s["kernel"] for s in stages), 6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """``kubenas operator`` in a child process against the emulator, on a fixed port (trial
    Jobs keep their report URL across restarts)."""

    def __init__(self, kube: KubeTestBed, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        config = folder / "kubeconfig"
        config.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
            "users": [{"name": "operator", "user": {}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator",
                                                          "user": "operator",
                                                          "namespace": "default"}}]}))
        self.env = {**os.environ, "KUBECONFIG": str(config),
                    "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.folder / f"operator-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nas_operator.cli", "operator", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "WARNING"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.folder.glob("operator-*.log")))


async def test_sigkill_of_the_operator_with_own_trainers_running_loses_nothing(
        kube: KubeTestBed, tmp_path: Path) -> None:
    work = tmp_path / "image"  # what the user's image holds: train.py in its working folder
    work.mkdir()
    (work / "train.py").write_text(TRAIN_PY)
    started: Counter[str] = Counter()
    exited: list[str] = []
    finals: set[str] = set()

    async def kubelet(cluster: FakeCluster, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        started[name] += 1
        await cluster.run(job)
        pod = tmp_path / "pods" / name
        watcher = asyncio.create_task(_watch_final(pod / "termination-log", name, finals))
        try:
            code, message = await run_container(cluster, job, pod, cwd=work)
        finally:
            watcher.cancel()
        assert code == 0, message
        exited.append(name)
        await cluster.terminate(job, 0, message)

    operator = Operator(kube, tmp_path)
    manifest = search_manifest(
        "kill", searchSpace=SPACE,
        strategy={"type": "reinforce", "batchSize": 4, "seed": 5},
        objective={"metric": "top1", "direction": "maximize", "reward": "identity",
                   "lastEpochs": 1},
        budget={"maxTrials": MAX_TRIALS, "parallelism": 4},
        trial={"retries": 0, "training": {"epochs": 3}, "template": {
            "image": "registry.example.com/me/resnet:1", "command": ["python", "train.py"],
            "env": [{"name": "EPOCH_SECONDS", "value": "0.4"}]}})

    async def trials() -> dict[str, dict[str, Any]]:
        return {t["metadata"]["name"]: t for t in await kube.read_all(NASTRIALS, "default")}

    async def status() -> dict[str, Any]:
        return ((await kube.read(NASSEARCHES, "kill")) or {}).get("status") or {}

    try:
        async with FakeCluster(kube, kubelet) as cluster:
            operator.start()
            await kube.client.create(NASSEARCHES, manifest)

            async def some_done_some_running() -> bool:
                done = [t for t in (await trials()).values()
                        if (t.get("status") or {}).get("phase") == "Succeeded"]
                return len(done) >= 2 and len(started) - len(exited) >= 2

            await wait_for(some_done_some_running, 180,
                           "2 trials succeeded and 2 trainers running")
            operator.kill()  # SIGKILL: no stop handler runs, no last checkpoint is written
            before = {n: t["status"]["reward"] for n, t in (await trials()).items()
                      if (t.get("status") or {}).get("phase") == "Succeeded"}
            running = set(started) - set(exited)
            assert len(before) >= 2 and running

            async def a_final_while_no_operator() -> bool:  # its HTTP report meets a closed port
                return bool(finals & running)

            await wait_for(a_final_while_no_operator, 60,
                           "a running trainer's final report while no operator runs")
            operator.start()
            done = await _wait_phase(status, 240)
            final_trials = await trials()
            assert not cluster.errors, cluster.errors
    except BaseException:
        print(operator.logs())
        raise
    finally:
        operator.stop()

    assert done["phase"] == "Succeeded", (done, operator.logs())
    counts = done["trials"]
    assert (counts["total"], counts["succeeded"], counts.get("failed", 0), counts["retried"]) == (
        MAX_TRIALS, MAX_TRIALS, 0, 0)
    # exactly maxTrials trials, each one Job (its first attempt), created once, trained once
    assert sorted(final_trials) == [f"kill-t{i:04d}" for i in range(MAX_TRIALS)]
    jobs = sorted(j["metadata"]["name"] for j in await kube.read_all(JOBS, "default"))
    assert jobs == [f"kill-t{i:04d}-a0" for i in range(MAX_TRIALS)]
    assert await kube.calls("create", "jobs.batch") == MAX_TRIALS  # no create retried either
    assert started == {job: 1 for job in jobs}  # the running ones adopted, not started again
    for name, trial in final_trials.items():  # every reward the script's own top1
        assert trial["status"]["phase"] == "Succeeded"
        genotype = trial["spec"]["architecture"]["genotype"]
        assert abs(trial["status"]["reward"] - expected_top1(genotype)) < 1e-9, name
    for name, reward in before.items():  # finished before the kill: kept as they were
        assert final_trials[name]["status"]["reward"] == reward
    assert done["controller"]["updates"] == MAX_TRIALS // 4  # the controller lost no reward


async def _watch_final(path: Path, name: str, finals: set[str]) -> None:
    """Note when a trainer wrote its final report (the SDK writes it before sending)."""
    while True:
        if path.exists():
            finals.add(name)
            return
        await asyncio.sleep(0.05)


async def _wait_phase(status: Any, timeout: float) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        current = await status()
        return current if current.get("phase") in ("Succeeded", "Failed") else None

    return await wait_for(ended, timeout, "the search to end")
