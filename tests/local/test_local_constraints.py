"""One tiny local search with objective.constraints on real trainer processes: every trained
trial's row carries params, flops and latency_ms; a proposal over the limit is recorded as
Infeasible and never launched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

from tests.support.local_run import csv_rows, image_search, runner_command, write_yaml

DEVICE = "cuda:0" if torch.cuda.is_available() else "cpu"
"""The trainer's device (``auto``): its name starts so (a GPU's adds its model)."""
LIMIT = 12_000
"""Multiply-adds: about half of these 2-layer CNNs on 8x8 digits fit."""


def test_a_local_constrained_search_measures_every_trial_and_skips_the_infeasible(
        tmp_path: Path) -> None:
    doc = image_search("limits", max_trials=3, parallel=2,
                       objective={"constraints": {"maxFlops": LIMIT}})
    write_yaml(tmp_path / "s.yaml", doc)
    proc = subprocess.run(runner_command("run", "s.yaml", "--out", "run", "--quiet"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = csv_rows(tmp_path / "run")
    trained = [r for r in rows if r["phase"] == "Succeeded"]
    infeasible = [r for r in rows if r["phase"] == "Infeasible"]
    assert len(trained) == 3
    for r in trained:
        assert float(r["params"]) > 0 and 0 < float(r["flops"]) <= LIMIT
        assert float(r["latency_ms"]) > 0
        assert r["device"].startswith(DEVICE)  # where the trainer timed it, as its final report says
    assert infeasible, "no proposal broke the limit: lower LIMIT"
    for r in infeasible:
        assert float(r["flops"]) > LIMIT and "maxFlops" in r["failure"]
        assert float(r["reward"]) == 0
        assert not (tmp_path / "run" / "trials" / r["trial"]).exists()  # never launched
        assert r["device"] == ""
    shown = subprocess.run(runner_command("show", "run"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["device"].startswith(DEVICE)
    assert f"measured on {best['device']}, latency " in shown.stdout
    top = shown.stdout.split("top ", 1)[1]
    assert all(r["trial"] not in top for r in infeasible)  # its reward is only the penalty
