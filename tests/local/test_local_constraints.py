"""One tiny local search with objective.constraints on real trainer processes: every trained
trial's row carries params, flops and latency_ms; a proposal over the limit is recorded as
Infeasible and never launched."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.local_run import csv_rows, image_search, runner_command, write_yaml

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
    assert infeasible, "no proposal broke the limit: lower LIMIT"
    for r in infeasible:
        assert float(r["flops"]) > LIMIT and "maxFlops" in r["failure"]
        assert float(r["reward"]) == 0
        assert not (tmp_path / "run" / "trials" / r["trial"]).exists()  # never launched
    shown = subprocess.run(runner_command("show", "run"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
