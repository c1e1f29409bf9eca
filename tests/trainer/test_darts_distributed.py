"""Weight sharing across workers (docs/papers.md §8, DARTS "Several workers"): 2 gloo processes
end on the weights and alpha of 1 process over the combined batch; only rank 0 reports; a lost
worker fails the attempt."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from controller_policy.spaces import make_space
from nas_trainer.checkpoint import CHECKPOINT_FILE
from tests.support.trainer import darts_doc, image_doc


def trainer_env(tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "KUBENAS_TERMINATION_FILE": str(tmp_path / f"{name}.term"),
           "OMP_NUM_THREADS": "1", **extra}
    for key in ("KUBENAS_REPORT_URL", "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in extra:
            env.pop(key, None)
    return env


def run(tmp_path: Path, name: str, doc: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    trial = tmp_path / f"{name}.json"
    trial.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-m", "nas_trainer", "--trial", str(trial)],
                          env=trainer_env(tmp_path, name), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((tmp_path / f"{name}.term").read_text())


def supernet_state(directory: Path) -> dict[str, torch.Tensor]:
    return torch.load(directory / CHECKPOINT_FILE, weights_only=False)["objects"]["supernet"]


def test_two_gloo_workers_equal_one_process_over_the_combined_batch(tmp_path: Path) -> None:
    """4 second-order steps of batch 16: 2 workers x 8 images == 1 worker accumulating 2 micro-batches of 8.

    Second order runs every collective the first order does (and three more gradients per step);
    the first order's path across workers is exercised by the environment-ranks test below.
    """
    order = "second"
    two = darts_doc(order, checkpointDir=str(tmp_path / "two"))
    two["darts"]["workers"] = 2
    proc, final = run(tmp_path, "two", two)
    epochs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [0, 1]  # rank 0 alone reports
    assert final["kind"] == "final" and final["metrics"]["workers"] == 2.0
    assert "started 1 local workers" in proc.stderr

    one = darts_doc(order, checkpointDir=str(tmp_path / "one"))
    one["darts"]["accumulate"] = 2
    _, reference = run(tmp_path, "one", one)
    assert reference["metrics"]["workers"] == 1.0

    got, want = supernet_state(tmp_path / "two"), supernet_state(tmp_path / "one")
    assert got.keys() == want.keys()
    for key in want:
        assert torch.allclose(got[key], want[key], rtol=1e-4, atol=1e-6), key
    assert final["architecture"] == reference["architecture"]
    for a, b in zip(final["epochs"], reference["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"])

    # the tolerance tells runs apart: one micro-batch of 16 (BN over 16) ends elsewhere
    whole = darts_doc(order, checkpointDir=str(tmp_path / "whole"))
    run(tmp_path, "whole", whole)
    whole_alpha = supernet_state(tmp_path / "whole")["alphas.normal"]
    assert not torch.allclose(whole_alpha, want["alphas.normal"], rtol=1e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ranks(tmp_path: Path, doc: dict[str, Any]) -> list[subprocess.Popen[str]]:
    """Two trainer processes as two pods of an Indexed Job would run: WORLD_SIZE, RANK, MASTER_*."""
    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps(doc))
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = trainer_env(tmp_path, f"rank{rank}", WORLD_SIZE="2", RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, "-m", "nas_trainer", "--trial", str(trial)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


def test_ranks_from_the_environment_share_one_search_and_only_rank_0_reports(tmp_path: Path) -> None:
    (code0, out0, err0), (code1, out1, err1) = finish(start_ranks(tmp_path, darts_doc("first")))
    assert code0 == 0 and code1 == 0, err0 + err1
    reports = [json.loads(line) for line in out0.splitlines()]
    assert [r["kind"] for r in reports] == ["epoch", "epoch", "final"]
    assert reports[-1]["metrics"]["workers"] == 2.0
    assert out1 == "" and not (tmp_path / "rank1.term").exists()
    assert json.loads((tmp_path / "rank0.term").read_text())["kind"] == "final"


def test_a_lost_worker_fails_the_attempt(tmp_path: Path) -> None:
    doc = darts_doc("first")
    doc["training"]["epochs"] = 4
    doc["dataset"]["maxTrainExamples"] = 64
    procs = start_ranks(tmp_path, doc)
    try:
        assert procs[0].stdout is not None
        for line in procs[0].stdout:
            if json.loads(line)["kind"] == "epoch":
                break
        procs[1].send_signal(signal.SIGKILL)  # the node of rank 1 is gone
    finally:
        results = finish(procs)
    code0, _, err0 = results[0]
    assert code0 == 1, err0
    failed = json.loads((tmp_path / "rank0.term").read_text())
    assert failed["kind"] == "failed" and "a DARTS worker was lost" in failed["reason"]


def test_two_enas_workers_train_one_child_each_per_step_and_report_once(tmp_path: Path) -> None:
    doc = image_doc("enas-micro", {"nodes": 2})
    doc["enas"]["workers"] = 2
    proc, final = run(tmp_path, "enas2", doc)
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    epochs = [r for r in reports if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    assert [r["metrics"]["children_per_step"] for r in epochs] == [2.0, 2.0]
    assert [r["metrics"]["controller_updates"] for r in epochs] == [2.0, 4.0]  # one controller
    assert final["kind"] == "final"
    assert make_space("enas-micro", {"nodes": 2}).decode(final["architecture"]["tokens"])

    del doc["enas"]["workers"]
    _, single = run(tmp_path, "enas1", doc)
    assert "children_per_step" not in single["epochs"][0]
    # the first step is the same child on rank 0; averaging in rank 1's child changes the result
    assert single["epochs"][0]["train_loss"] != final["epochs"][0]["train_loss"]


def test_sigterm_stops_both_workers_and_the_rerun_resumes_them_bit_exactly(tmp_path: Path) -> None:
    doc = darts_doc("first", checkpointDir=str(tmp_path / "ckpt"))
    doc["darts"]["workers"] = 2
    doc["training"]["epochs"] = 3
    doc["dataset"]["maxTrainExamples"] = 64
    trial = tmp_path / "stopped.json"
    trial.write_text(json.dumps(doc))
    cmd = [sys.executable, "-m", "nas_trainer", "--trial", str(trial)]
    env = trainer_env(tmp_path, "stopped")
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if json.loads(line)["kind"] == "epoch":
                break
        first.send_signal(signal.SIGTERM)  # to rank 0 only: rank 1 stops at the same step
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    interrupted = json.loads((tmp_path / "stopped.term").read_text())
    assert interrupted["kind"] == "interrupted"
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stderr
    resumed = json.loads((tmp_path / "stopped.term").read_text())
    assert len(resumed["epochs"]) == 3

    reference = darts_doc("first", checkpointDir=str(tmp_path / "ref"))
    reference["darts"]["workers"] = 2
    reference["training"]["epochs"] = 3
    reference["dataset"]["maxTrainExamples"] = 64
    _, uninterrupted = run(tmp_path, "ref", reference)
    got, want = supernet_state(tmp_path / "ckpt"), supernet_state(tmp_path / "ref")
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert resumed["architecture"] == uninterrupted["architecture"]
