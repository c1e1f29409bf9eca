"""``strategy.type: darts`` through ``kubenas run``: examples/local-darts.yaml, shrunk, runs as one
trial on 2 gloo workers, reports once per epoch with the skip-edge counts, and retrains the
derived cell as a final-stage trial (docs/papers.md §8, DARTS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nas_operator import cli
from nas_operator.api import SpecError, load_search_yaml, space_class
from tests.support.local_run import REPO, csv_rows, write_yaml


def shrunk_example() -> dict:
    doc = yaml.safe_load((REPO / "examples" / "local-darts.yaml").read_text())
    spec = doc["spec"]
    spec["searchSpace"]["options"]["nodes"] = 2
    spec["trial"]["dataset"].update({"maxTrainExamples": 64, "validationSize": 32})
    spec["trial"]["training"].update({"epochs": 2, "batchSize": 16})
    spec["trial"]["training"]["model"]["filters"] = 4
    spec["finalTraining"]["training"]["epochs"] = 1
    return doc


def test_darts_search_runs_as_one_trial_on_two_workers_then_retrains_the_derived_cell(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    search = write_yaml(tmp_path / "darts.yaml", shrunk_example())
    out = tmp_path / "run"
    assert cli.main(["run", str(search), "--out", str(out), "--quiet"]) == 0
    rows = csv_rows(out)
    assert [(r["trial"], r["phase"]) for r in rows] == [
        ("local-darts-t0000", "Succeeded"), ("local-darts-f0000", "Succeeded")]
    attempt = out / "trials" / "local-darts-t0000" / "a0"
    log = (attempt / "output.log").read_text()
    assert "started 1 local workers" in log
    assert log.count("derived cell") == 2  # rank 0 logs each epoch's cell once (rank 1 is silent)
    final = json.loads((attempt / "termination.json").read_text())
    assert final["kind"] == "final" and final["metrics"]["workers"] == 2.0
    assert [e["normal_skip_edges"] >= 0 for e in final["epochs"]] == [True, True]
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == "local-darts-t0000" and best["scoredBy"] == "supernet"
    arch = best["architecture"]
    space = space_class("enas-micro")(best["spaceOptions"])
    assert arch["space"] == "enas-micro" and space.validate_tokens(arch["tokens"]) == arch["tokens"]
    [retrained] = best["retrained"]
    assert retrained["trial"] == "local-darts-f0000" and retrained["retrains"] == "local-darts-t0000"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"searchSpace": {"type": "nasnet"}}, "spec.strategy.type: 'darts' relaxes the enas-micro cell"),
        ({"budget": {"maxTrials": 3}}, "spec.budget.maxTrials: must be 1 with strategy.type 'darts'"),
        ({"strategy": {"type": "darts", "config": {"order": "third"}}}, "spec.strategy.config.order"),
    ],
)
def test_bad_darts_specs_are_named(change: dict, message: str) -> None:
    doc = shrunk_example()
    doc["spec"].update(change)
    with pytest.raises(SpecError, match=message):
        load_search_yaml(yaml.safe_dump(doc))
