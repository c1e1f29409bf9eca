"""examples/custom-resnet-local.yaml end to end, shrunk: a user's own PyTorch script
(examples/custom_resnet/train.py) trains the genotypes of a declared ResNet-style family and
reports through the trial SDK to the real status API; REINFORCE learns from the rewards the
search computes. Then Ctrl-C mid-trial: the script checkpoints on SIGTERM, says it was
interrupted, and after ``--resume`` continues from its checkpoint, its earlier epochs
carried into the final report, nothing counted as a failure, nothing trained twice."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from nas_operator import cli
from nas_operator.api import space_class
from tests.support import REPO
from tests.support.local_run import (
    checkpoint_facts,
    csv_rows,
    live_trainers,
    wait_for,
    write_yaml,
)

EXAMPLE = REPO / "examples" / "custom-resnet-local.yaml"



def shrunk(max_trials: int, parallel: int, epochs: int, examples: int) -> dict:
    """The example as shipped, with a smaller budget (the script and space unchanged)."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    spec = doc["spec"]
    spec["budget"].update(maxTrials=max_trials, parallelism=parallel)
    spec["trial"]["training"]["epochs"] = epochs
    spec["trial"]["dataset"]["maxTrainExamples"] = examples
    spec["objective"]["lastEpochs"] = 1
    spec["strategy"]["batchSize"] = 2
    return doc


def test_the_example_searches_a_users_own_resnet_family(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # as the README says: kubenas run from the repository
    search = write_yaml(tmp_path / "s.yaml", shrunk(max_trials=4, parallel=2, epochs=2,
                                                    examples=500))
    out = tmp_path / "run"
    assert cli.main(["run", str(search), "--out", str(out), "--quiet"]) == 0, \
        capsys.readouterr().out
    rows = csv_rows(out)
    assert [r["phase"] for r in rows] == ["Succeeded"] * 4
    space = space_class("custom")(yaml.safe_load(EXAMPLE.read_text())["spec"]["searchSpace"][
        "options"])
    for row in rows:
        folder = out / "trials" / row["trial"]
        arch = json.loads((folder / "a0" / "trial.json").read_text())["architecture"]
        assert space.encode(arch["genotype"]) == arch["tokens"]  # the genotype it was given
        log = (folder / "a0" / "output.log").read_text()
        assert "epoch 2/2: val_accuracy" in log and "resuming" not in log, log
        assert (folder / "checkpoint" / "resnet.pt").is_file()  # the script's own checkpoint
        # the reward is the search's: (reported val_accuracy)^3, never the script's word
        assert float(row["reward"]) == pytest.approx(float(row["val_accuracy"]) ** 3, rel=1e-4)
        assert float(row["params"]) > 1000 and float(row["val_loss"]) > 0
    assert max(float(r["val_accuracy"]) for r in rows) > 0.2  # it learned (chance: 0.1)
    best = json.loads((out / "best.json").read_text())
    assert best["architecture"]["space"] == "custom"
    assert {"stem", "stage"} <= set(best["architecture"]["genotype"])
    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Succeeded" and ledger.counts["search"]["succeeded"] == 4
    assert (strategy["asked"], strategy["told"], strategy["updates"]) == (4, 4, 2)


def test_ctrl_c_then_resume_continues_the_script_from_its_checkpoint(tmp_path, processes,
                                                                     capsys, monkeypatch):
    search = write_yaml(tmp_path / "s.yaml", shrunk(max_trials=2, parallel=2, epochs=4,
                                                    examples=1400))
    out = tmp_path / "run"
    first = processes.start(["run", str(search), "--out", str(out), "--quiet",
                             "--grace-seconds", "20"], out)

    def one_epoch_each() -> bool:
        done = [json.loads(p.read_text()) for p in out.glob("trials/*/checkpoint/"
                                                            "kubenas-epochs.json")]
        return len(done) == 2 and all(1 <= len(d) < 4 for d in done)

    wait_for(one_epoch_each, 300, "both scripts one epoch in")  # two torch imports on 2 loaded cores
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=90)
    assert first.returncode == 130, output
    assert live_trainers(out) == []
    state, ledger, _ = checkpoint_facts(out)
    assert state["phase"] == "Suspended" and ledger.counts["search"]["failed"] == 0
    interrupted = [p for p in out.glob("trials/*/a0/termination.json")
                   if json.loads(p.read_text())["kind"] == "interrupted"]
    assert interrupted  # the script said so itself (Trial.report_interrupted)

    monkeypatch.chdir(tmp_path)  # a resume may start anywhere: the command stays REPO's
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0, capsys.readouterr().out
    rows = {r["trial"]: r for r in csv_rows(out)}
    assert {r["phase"] for r in rows.values()} == {"Succeeded"}
    state, ledger, strategy = checkpoint_facts(out)
    assert ledger.counts["search"]["failed"] == 0 and ledger.counts["search"]["retried"] == 0
    assert (strategy["asked"], strategy["told"]) == (2, 2)
    for path in interrupted:
        trial = path.parent.parent.name
        assert rows[trial]["attempt"] == "1"
        log = (out / "trials" / trial / "a1" / "output.log").read_text()
        assert "resuming at epoch" in log and "epoch 1/4" not in log, log  # not from scratch
        assert ledger.get(trial).epochs == 4  # the final report carried attempt 0's epochs too


def test_the_cluster_example_runs_the_same_script_from_a_template():
    doc = yaml.safe_load((REPO / "examples" / "custom-resnet-cluster.yaml").read_text())
    template = doc["spec"]["trial"]["template"]
    assert template["command"] == ["python", "/app/train.py"]
    dockerfile = (REPO / "examples" / "custom_resnet" / "Dockerfile").read_text()
    assert "COPY examples/custom_resnet/train.py /app/train.py" in dockerfile
    assert Path(REPO / "examples" / "custom_resnet" / "train.py").is_file()
