"""examples/: every file is a valid NASSearch; the cluster ones carry the papers' settings; the
local ones run on bundled data — and the local ENAS one really runs (shrunk) as one ENAS
trainer process, with progress, run folder, derived best architecture, Ctrl-C and resume."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nas_operator import cli
from nas_operator.api import load_search_yaml, space_class
from tests.support.local_run import (
    REPO,
    OutputTail,
    Processes,
    checkpoint_facts,
    csv_rows,
    guarded_processes,
    live_trainers,
    write_yaml,
)

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
REQUIRED = {"zoph-le-cnn-cifar10", "nasnet-ppo-cifar10", "enas-micro-cifar10", "zoph-le-rnn-ptb",
            "local-demo", "local-enas-micro", "local-rnn"}


@pytest.fixture
def processes() -> Iterator[Processes]:
    yield from guarded_processes()


def load(name: str):
    return load_search_yaml((REPO / "examples" / f"{name}.yaml").read_text())


def test_the_promised_examples_exist():
    assert REQUIRED <= {p.stem for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_validates_and_is_named_after_its_file(path: Path):
    search = load_search_yaml(path.read_text())
    assert search.metadata.name == path.stem
    assert cli.main(["validate", str(path)]) == 0


def test_validate_accepts_all_examples_at_once(capsys):
    assert cli.main(["validate", *map(str, EXAMPLES)]) == 0
    assert capsys.readouterr().out.count(": ok") == len(EXAMPLES)


def test_zoph_le_cnn_example_uses_the_papers_settings():
    spec = load("zoph-le-cnn-cifar10").spec
    config = spec.validated_strategy_config()
    assert spec.strategy.type == "reinforce" and spec.strategy.batchSize == 8
    assert (config.lstm_layers, config.hidden_size, config.init_range, config.learning_rate) == (
        2, 35, 0.08, 0.0006)
    assert (spec.objective.reward, spec.objective.lastEpochs) == ("cube", 5)
    t = spec.trial.training
    assert (t.epochs, t.learningRate, t.momentum, t.nesterov, t.weightDecay) == (
        50, 0.1, 0.9, True, 1e-4)
    assert spec.trial.dataset.name == "cifar10" and spec.trial.dataset.validationSize == 5000
    assert spec.budget.maxTrials == 12800 and spec.trial.resources["limits"]["nvidia.com/gpu"] == 1


def test_nasnet_example_uses_ppo_with_the_papers_settings():
    spec = load("nasnet-ppo-cifar10").spec
    config = spec.validated_strategy_config()
    assert spec.strategy.type == "ppo" and spec.strategy.batchSize == 20
    assert (config.lstm_layers, config.hidden_size, config.learning_rate, config.entropy_weight,
            config.baseline_decay) == (1, 100, 0.00035, 1e-5, 0.95)
    assert spec.searchSpace.options["blocks"] == 5 and spec.budget.maxTrials == 20000
    assert (spec.trial.training.epochs, spec.trial.training.model.cellsPerStage) == (20, 2)
    final = spec.final_training_spec()
    assert (final.model.cellsPerStage, final.model.filters, final.epochs) == (6, 32, 600)


def test_enas_micro_example_is_one_weight_sharing_trial_with_the_papers_controller():
    spec = load("enas-micro-cifar10").spec
    enas = spec.enas_spec()
    assert spec.strategy.type == "enas" and spec.budget.maxTrials == 1
    assert (enas.controllerStepsPerEpoch, enas.controllerBatch, enas.deriveSamples) == (30, 10, 100)
    assert enas.controller["learningRate"] == 0.00035 and enas.controller["tanhConstant"] == 2.5
    t = spec.trial.training
    assert (t.schedule, t.learningRate, t.learningRateMin, t.sgdrPeriod, t.sgdrMultiplier) == (
        "sgdr", 0.05, 0.001, 10, 2)


def test_zoph_le_rnn_example_scores_perplexity_like_the_paper():
    spec = load("zoph-le-rnn-ptb").spec
    assert (spec.objective.metric, spec.objective.reward, spec.objective.constant) == (
        "val_perplexity", "inverse-square", 80)
    assert spec.validated_strategy_config().learning_rate == 0.0005
    assert spec.trial.dataset.name == "ptb" and spec.trial.training.epochs == 35
    assert spec.trial.training.model.numLayers == 2


@pytest.mark.parametrize(("name", "claim", "sub_path"), [
    ("zoph-le-cnn-cifar10", "cifar10", "cifar-10-batches-py"),
    ("nasnet-ppo-cifar10", "cifar10", "cifar-10-batches-py"),
    ("enas-micro-cifar10", "cifar10", "cifar-10-batches-py"),
    ("zoph-le-rnn-ptb", "ptb", None),
])
def test_cluster_examples_mount_their_data_from_a_read_only_claim(name: str, claim: str,
                                                                  sub_path: str | None):
    spec = load(name).spec
    for stage in ("search", "final"):
        dataset = spec.dataset_for(stage)
        pvc = dataset.persistentVolumeClaim
        assert pvc is not None, (name, stage)
        assert (pvc.claimName, pvc.subPath, pvc.readOnly) == (claim, sub_path, True)
        assert dataset.path == f"/data/{dataset.name}" and not dataset.download


@pytest.mark.parametrize("name", ["local-demo", "local-enas-micro", "local-rnn"])
def test_local_examples_need_nothing_but_this_machine(name: str):
    spec = load(name).spec
    assert spec.trial.dataset.name in ("digits", "pydoc-text") and spec.trial.dataset.path is None
    assert spec.trial.dataset.persistentVolumeClaim is None
    assert spec.trial.training.device == "cpu" and spec.budget.max_trials() <= 12
    assert space_class(spec.searchSpace.type) is not None


def test_local_enas_example_runs_as_one_trainer_with_progress_resume_and_a_derived_best(
        tmp_path, processes, capsys):
    doc = yaml.safe_load((REPO / "examples" / "local-enas-micro.yaml").read_text())
    spec = doc["spec"]  # the same search, shrunk to seconds
    spec["strategy"]["batchSize"] = 2
    spec["strategy"]["config"] = {"controllerStepsPerEpoch": 1, "deriveSamples": 2}
    spec["trial"]["dataset"].update({"maxTrainExamples": 96, "validationSize": 64})
    spec["trial"]["training"].update({"epochs": 2, "batchSize": 32, "threads": 1})
    spec["trial"]["training"]["model"].update({"filters": 4})
    spec["finalTraining"]["training"]["epochs"] = 1
    search = write_yaml(tmp_path / "enas.yaml", doc)
    out = tmp_path / "run"

    first = processes.start(["run", str(search), "--out", str(out), "--quiet"], out)
    tail = OutputTail(first)
    tail.wait_for("epoch 1/2:", 120)  # the runner has seen the supernet's first epoch
    first.send_signal(signal.SIGINT)
    output = tail.finish(timeout=60)
    assert first.returncode == 130, output
    assert "epoch 1/2:" in output and "resume with" in output
    assert live_trainers(out) == []

    capsys.readouterr()
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2:" in printed
    # the supernet's score and the standalone retraining of the derived cell, told apart
    assert "succeeded: reward" in printed and "supernet score (shared weights" in printed
    assert "retraining local-enas-micro-f0000 epoch 1/1:" in printed
    assert re.search(r"^retrained   local-enas-micro-f0000 of local-enas-micro-t0000  reward "
                     r"[0-9.]+  \(val_accuracy [0-9.]+.*trained alone, 1 epochs", printed, re.M)
    resumed = (out / "trials" / "local-enas-micro-t0000" / "a1" / "output.log").read_text()
    assert "resumed from" in resumed  # the requeued attempt continued the supernet's training

    rows = csv_rows(out)
    assert [(r["trial"], r["phase"], r["attempt"]) for r in rows] == [
        ("local-enas-micro-t0000", "Succeeded", "1"), ("local-enas-micro-f0000", "Succeeded", "0")]
    best = yaml.safe_load((out / "best.json").read_text())
    assert best["trial"] == "local-enas-micro-t0000" and best["scoredBy"] == "supernet"
    [retrained] = best["retrained"]
    assert retrained["trial"] == "local-enas-micro-f0000"
    assert retrained["retrains"] == "local-enas-micro-t0000"
    assert retrained["metrics"]["val_accuracy"] == float(rows[1]["val_accuracy"])
    arch = best["architecture"]
    space = space_class("enas-micro")(best["spaceOptions"])
    assert arch["space"] == "enas-micro" and space.validate_tokens(arch["tokens"]) == arch["tokens"]
    assert space.to_genotype(arch["tokens"]) == arch["genotype"]  # the derived architecture
    assert (out / "best.png").read_bytes()[:4] == b"\x89PNG"
    state, ledger, _ = checkpoint_facts(out)
    assert state["phase"] == "Succeeded" and ledger.created("search") == 1
    assert ledger.counts["search"]["failed"] == 0 and ledger.counts["search"]["retried"] == 0
