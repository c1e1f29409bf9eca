"""A space and a strategy added through the registration path alone (docs/design.md, "Module
layout"): ``tests/core/plugins/kubenas_toy.py`` registers a toy space and a toy strategy, and
``kubenas_toy_trainer.py`` the toy space's network; nothing in the project names them.

`kubenas validate` and `kubenas run` see them through ``KUBENAS_PLUGINS``, the real trainer
through ``KUBENAS_TRAINER_PLUGINS``; the run trains real networks on the bundled digits.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller_policy.registry import ENV_PLUGINS, ENV_TRAINER_PLUGINS, PluginError, load_plugins
from controller_policy.spaces.registry import space_types
from controller_policy.strategies.registry import strategy_types

PLUGINS = Path(__file__).resolve().parent / "plugins"


def toy_search(**budget: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch", "metadata": {"name": "toy"},
        "spec": {
            "searchSpace": {"type": "toy-mlp", "options": {"widths": [4, 8]}},
            "strategy": {"type": "toy-sweep", "config": {"start": 1}},
            "objective": {"lastEpochs": 1},
            "budget": {"maxTrials": 3, "parallelism": 2, **budget},
            "trial": {
                "dataset": {"name": "digits", "maxTrainExamples": 200, "validationSize": 100},
                "training": {"epochs": 1, "batchSize": 50, "learningRate": 0.05,
                             "augment": False, "device": "cpu", "threads": 1},
                "retries": 0,
            },
        },
    }  # fmt: skip


def kubenas(tmp_path: Path, *args: str, plugins: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(ENV_PLUGINS, None)
    env.pop(ENV_TRAINER_PLUGINS, None)
    if plugins:
        env[ENV_PLUGINS] = "kubenas_toy"
        env[ENV_TRAINER_PLUGINS] = "kubenas_toy_trainer"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "nas_operator.cli", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_toy_is_unknown_without_its_plugin(tmp_path: Path) -> None:
    write(tmp_path / "toy.yaml", toy_search())
    proc = kubenas(tmp_path, "validate", "toy.yaml", plugins=False)
    assert proc.returncode != 0
    assert "spec.searchSpace.type" in proc.stdout + proc.stderr
    assert "toy-mlp" not in space_types() and "toy-sweep" not in strategy_types()


def test_validate_takes_the_toy_and_names_its_options(tmp_path: Path) -> None:
    write(tmp_path / "toy.yaml", toy_search())
    good = kubenas(tmp_path, "validate", "toy.yaml")
    assert good.returncode == 0, good.stdout + good.stderr
    space = toy_search()
    space["spec"]["searchSpace"]["options"]["depth"] = 2
    strategy = toy_search()
    strategy["spec"]["strategy"]["config"]["start"] = -1
    write(tmp_path / "space.yaml", space)
    write(tmp_path / "strategy.yaml", strategy)
    bad = kubenas(tmp_path, "validate", "space.yaml", "strategy.yaml")
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "spec.searchSpace.options.depth" in out and "spec.strategy.config.start" in out


def test_a_search_runs_with_the_toy_space_and_strategy(tmp_path: Path) -> None:
    """The space's default strategy (the search names none), the strategy's proposals, the
    trainer's network and the drawing all come from the plugin modules."""
    doc = toy_search()
    del doc["spec"]["strategy"]["type"]  # the toy space's paper_strategy: toy-sweep
    write(tmp_path / "toy.yaml", doc)
    proc = kubenas(tmp_path, "run", "toy.yaml", "--out", "run", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "run"
    best = json.loads((run / "best.json").read_text())
    assert best["architecture"]["space"] == "toy-mlp"
    with open(run / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["phase"] for r in rows] == ["Succeeded"] * 3
    # the sweep starts at index 1 of [4, 8] x [relu, tanh]; the drawing is the space's own
    assert [r["genotype"] for r in rows] == [
        "h: 4 tanh<-image; softmax<-h", "h: 8 relu<-image; softmax<-h",
        "h: 8 tanh<-image; softmax<-h"]
    # the plugin's network: 64 pixels -> width -> 10 classes
    assert [int(r["params"]) for r in rows] == [64 * 4 + 4 + 4 * 10 + 10,
                                                64 * 8 + 8 + 8 * 10 + 10,
                                                64 * 8 + 8 + 8 * 10 + 10]
    assert (run / "best.png").read_bytes().startswith(b"\x89PNG")


def test_a_plugin_that_cannot_be_imported_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PLUGINS, "kubenas_no_such_plugin")
    with pytest.raises(PluginError, match=r"\$KUBENAS_PLUGINS names module 'kubenas_no_such"):
        load_plugins()
