"""`kubenas run` end to end: real trainer processes on the bundled digits, the real status API
on loopback (scraped while the search runs), the real REINFORCE controller; then `kubenas show`.

Also home of the helpers the other local-mode tests share (search files, run-folder readers,
and the fixture that leaves no process behind).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller_policy.strategies import make_strategy
from nas_operator import cli
from nas_operator.api import load_search_yaml, space_class
from nas_operator.checkpoint import decode_checkpoint
from nas_operator.ledger import Ledger
from nas_operator.local.launcher import process_alive
from nas_operator.local.output import RunFolder

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- shared helpers -------------------------------------------------------------------------
def image_search(name: str, *, max_trials: int, parallel: int, epochs: int = 1,
                 **spec: Any) -> dict[str, Any]:
    """A tiny real search: 2-layer Zoph & Le CNNs on a slice of digits, one thread per trainer."""
    doc: dict[str, Any] = {
        "apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch", "metadata": {"name": name},
        "spec": {
            "searchSpace": {"type": "zoph-le-cnn", "options": {"layers": 2,
                                                               "filterChoices": [4, 8]}},
            "strategy": {"type": "reinforce", "batchSize": 2, "seed": 3},
            "objective": {"lastEpochs": 1},
            "budget": {"maxTrials": max_trials, "parallelism": parallel},
            "trial": {
                "dataset": {"name": "digits", "maxTrainExamples": 300, "validationSize": 150},
                "training": {"epochs": epochs, "batchSize": 50, "learningRate": 0.05,
                             "augment": False, "device": "cpu", "threads": 1},
                "retries": 0,
            },
        },
    }  # fmt: skip
    for key, value in spec.items():
        doc["spec"][key] = {**doc["spec"].get(key, {}), **value}
    return doc


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def checkpoint_facts(folder: Path) -> tuple[dict[str, Any], Ledger, dict[str, Any]]:
    """(loop state, ledger, strategy summary) from the run folder's checkpoint."""
    run = RunFolder(folder)
    ckpt = decode_checkpoint(run.checkpoint_file.read_bytes())
    search = load_search_yaml(run.search_yaml.read_text())
    summary: dict[str, Any] = {}
    if ckpt.strategy:
        space = space_class(search.spec.searchSpace.type)(search.spec.searchSpace.options)
        strategy = make_strategy(search.spec.strategy.type, space, search.spec.strategy_config())
        strategy.load_bytes(ckpt.strategy)
        summary = strategy.summary()
    return ckpt.state, Ledger.from_state(ckpt.state["ledger"]), summary


def attempt_pids(folder: Path) -> dict[str, tuple[int, str | None]]:
    """pid file of every attempt that was started: 'trial/aN' -> (pid, start token)."""
    out = {}
    for pid_file in sorted((folder / "trials").glob("*/a*/pid")):
        info = json.loads(pid_file.read_text())
        out[f"{pid_file.parent.parent.name}/{pid_file.parent.name}"] = (info["pid"], info["start"])
    return out


def live_trainers(folder: Path) -> list[str]:
    return [k for k, (pid, start) in attempt_pids(folder).items() if process_alive(pid, start)]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class OutputTail:
    """Every line a runner prints, read by a thread as it comes, so a test can wait for what
    the runner itself printed (a trainer's log line reaches the runner's output later)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        wait_for(lambda: any(text in line for line in self.lines), timeout, repr(text))

    def finish(self, timeout: float) -> str:
        """Wait for the process to exit and return all it printed."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return "".join(self.lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runner_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas_operator.cli", *args]


class Processes:
    """Runner processes a test starts, and every trainer its run folders list; all are killed
    at teardown (by pid, each in its own process group), so no test leaves anything behind."""

    def __init__(self) -> None:
        self.runners: list[subprocess.Popen[str]] = []
        self.folders: list[Path] = []

    def start(self, args: list[str], folder: Path, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[str]:
        self.folders.append(folder)
        proc = subprocess.Popen(runner_command(*args), cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.runners.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.runners:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for folder in self.folders:
            for pid, start in attempt_pids(folder).values() if folder.exists() else []:
                if process_alive(pid, start):
                    os.killpg(pid, signal.SIGKILL)


def guarded_processes() -> Iterator[Processes]:
    """Body of each test file's ``processes`` fixture."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


@pytest.fixture
def processes() -> Iterator[Processes]:
    yield from guarded_processes()


# --- the end-to-end test --------------------------------------------------------------------
def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_local_search_runs_to_max_trials_with_real_trainers(tmp_path, capsys, processes):
    search = write_yaml(tmp_path / "search.yaml",
                        image_search("e2e", max_trials=4, parallel=2))
    out = tmp_path / "run"
    processes.folders.append(out)  # trainers left by a failure are killed at teardown
    port = free_port()
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(cli.main([
        "run", str(search), "--out", str(out), "--metrics-port", str(port), "--quiet"])))
    runner.start()  # in this process (no second torch import); the test scrapes meanwhile
    accepted = succeeded = 0.0
    while runner.is_alive():  # the live status API, while real trainers report to it
        text = _scrape(port)
        accepted = max(accepted, _sample(text, "kubenas_status_api_reports_total",
                                         result="accepted"))
        succeeded = max(succeeded, _sample(text, "kubenas_trials_total", search="e2e",
                                           outcome="succeeded"))
        time.sleep(0.3)
    runner.join()
    output = capsys.readouterr().out
    assert result == [0], output
    assert accepted >= 2 and succeeded >= 1, (accepted, succeeded, output)

    rows = csv_rows(out)
    assert [r["trial"] for r in rows] == [f"e2e-t{i:04d}" for i in range(4)]
    assert {r["phase"] for r in rows} == {"Succeeded"} and {r["attempt"] for r in rows} == {"0"}
    for r in rows:  # reward = (val accuracy of the single epoch)^3, computed by the loop
        assert float(r["reward"]) == pytest.approx(float(r["val_accuracy"]) ** 3, rel=1e-4)
        assert r["genotype"].startswith("L1: ") and float(r["params"]) > 0
    for trial in (r["trial"] for r in rows):  # each trial really ran the trainer, once
        log = (out / "trials" / trial / "a0" / "output.log").read_text()
        assert "epoch 1/1" in log, log
        assert not (out / "trials" / trial / "a1").exists()

    best = json.loads((out / "best.json").read_text())
    top = max(rows, key=lambda r: float(r["reward"]))
    assert best["trial"] == top["trial"]
    assert best["reward"] == pytest.approx(float(top["reward"]), rel=1e-5)
    arch = best["architecture"]
    space = space_class(arch["space"])(best["spaceOptions"])
    assert space.encode(arch["genotype"]) == arch["tokens"]  # the readable genotype round-trips
    for picture in ("best.png", "rewards.png"):
        data = (out / picture).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, picture

    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Succeeded" and ledger.created("search") == 4
    assert ledger.counts["search"]["succeeded"] == 4
    assert (strategy["asked"], strategy["told"], strategy["failed"]) == (4, 4, 0)
    assert strategy["updates"] == 2  # batchSize 2: two REINFORCE updates from four rewards
    assert live_trainers(out) == []

    capsys.readouterr()
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Succeeded" in shown and "4/4 created: 4 succeeded" in shown
    assert best["trial"] in shown and re.search(r"reward \d", shown)
    assert "resume with" not in shown


# --- the picture of the best architecture: one drawer for every space ------------------------
SPACES = ["zoph-le-cnn", "zoph-le-rnn", "nasnet", "enas-macro", "enas-micro", "enas-rnn"]


@pytest.mark.parametrize("space_type", SPACES)
def test_every_space_genotype_becomes_a_drawable_dag(tmp_path, space_type):
    from nas_operator.local.genotype_graph import genotype_graphs, genotype_summary
    from nas_operator.local.plots import draw_architecture, layered_positions

    space = space_class(space_type)({})
    genotype = space.to_genotype(space.sample(7))
    graphs = genotype_graphs(genotype)
    ops_on_edges: list[str] = []
    for graph in graphs:
        ids = [n.id for n in graph.nodes]
        assert len(ids) == len(set(ids))
        pos = layered_positions(graph)
        for e in graph.edges:  # every edge joins known nodes and runs left to right
            assert e.src in ids and e.dst in ids and pos[e.src][0] < pos[e.dst][0], e
            ops_on_edges.append(e.label)
        for n in graph.nodes:  # inputs feed, outputs are fed, operations do both
            fed = any(e.dst == n.id for e in graph.edges)
            feeds = any(e.src == n.id for e in graph.edges)
            assert fed == (n.kind != "input") and (feeds or n.kind == "output"), n
    if space_type in ("nasnet", "enas-micro"):  # the cells' operations are on the edges
        cells = [genotype[c].get("blocks", genotype[c].get("nodes")) for c in ("normal",
                                                                             "reduction")]
        expected = sorted(op for cell in cells for node in cell for op in node["ops"])
        assert sorted(label for label in ops_on_edges if label != "concat") == expected
    if space_type == "zoph-le-cnn":
        assert sum(n.kind == "op" for n in graphs[0].nodes) == len(genotype["layers"])
    assert genotype_summary(genotype)
    draw_architecture(genotype, tmp_path / "best.png", space_type)
    assert (tmp_path / "best.png").read_bytes().startswith(PNG_MAGIC)
