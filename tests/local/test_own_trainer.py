"""`kubenas run` with a trainer of the user's own, reporting through the trial SDK.

* A shell script that reports with the `kubenas-report` command (no Python in it)
  completes a search; the rewards are the search's own, from the metrics it reported.
* A Python script with `kubenas_trial.Trial` reports a metric of its own (`score`,
  minimized); the reward follows `objective.metric` and `direction`.
* SIGKILL of the runner while such trainers run (on a declared space): `--resume` adopts
  them, loses no finished trial and starts none twice.
* `kubenas-report` itself: numbers parsed, bad input refused with the reason, the epochs
  of earlier calls carried by the final report (also into the termination message).

Real subprocesses and the real status API on loopback throughout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nas_operator import cli
from nas_operator.local.output import RunFolder
from tests.support.local_run import (
    attempt_pids,
    checkpoint_facts,
    csv_rows,
    image_search,
    live_trainers,
    wait_for,
    write_yaml,
)

SHELL_TRAINER = r"""#!/bin/sh
# A trainer in plain shell: reads its assignment and reports with kubenas-report.
set -eu
tokens=$(kubenas-report --show architecture.tokens)
epochs=$(kubenas-report --show training.epochs)
# a deterministic 'accuracy' from the architecture: more zero tokens is better
accuracy=$(printf '%s\n' "$tokens" | tr -d '[] ' | awk -F, \
  '{z = 0; for (i = 1; i <= NF; i++) if ($i == 0) z++; printf "%.4f", 0.2 + 0.7 * z / NF}')
epoch=0
while [ "$epoch" -lt "$epochs" ]; do
  sleep "${EPOCH_SECONDS:-0}"
  value=$(awk -v a="$accuracy" -v e="$epoch" -v n="$epochs" 'BEGIN {printf "%.4f", a * (e + 1) / n}')
  kubenas-report --epoch "$epoch" val_accuracy="$value" loss=0.5
  epoch=$((epoch + 1))
done
kubenas-report --final
"""

PYTHON_TRAINER = '''"""A user's script with the trial SDK: a metric of its own, to minimize."""
from kubenas_trial import Trial

with Trial.from_env() as trial:
    zeros = sum(1 for t in trial.tokens if t == 0)
    for epoch in range(trial.next_epoch, trial.training.epochs):
        trial.report_epoch(epoch, score=10.0 - zeros - epoch, seconds=0.01)
    trial.report_final(score=10.0 - zeros - (trial.training.epochs - 1))
'''



def trainer_path(tmp_path: Path) -> str:
    """PATH for the trainers: where `kubenas-report` is installed (the venv of this Python);
    a venv installed before the command existed gets a shim to `python -m kubenas_trial.report`."""
    found = shutil.which("kubenas-report") or shutil.which(
        "kubenas-report", path=str(Path(sys.executable).parent))
    if found:
        folder = Path(found).parent
    else:
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        shim = folder / "kubenas-report"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kubenas_trial.report "$@"\n')
        shim.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def shell_trainer(tmp_path: Path) -> Path:
    script = tmp_path / "train.sh"
    script.write_text(SHELL_TRAINER)
    script.chmod(0o755)
    return script


def expected_accuracy(tokens: list[int]) -> float:
    return round(0.2 + 0.7 * sum(1 for t in tokens if t == 0) / len(tokens), 4)


def attempt_tokens(out: Path, trial: str, attempt: int = 0) -> list[int]:
    doc = json.loads((out / "trials" / trial / f"a{attempt}" / "trial.json").read_text())
    return doc["architecture"]["tokens"]


def own_search(name: str, command: list[str], *, max_trials: int, parallel: int,
               epochs: int = 2, **spec: object) -> dict:
    doc = image_search(name, max_trials=max_trials, parallel=parallel, epochs=epochs, **spec)
    doc["spec"]["trial"]["command"] = command
    return doc


def test_a_shell_trainer_with_kubenas_report_completes_a_search(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", trainer_path(tmp_path))
    script = shell_trainer(tmp_path)
    search = write_yaml(tmp_path / "s.yaml", own_search("sh", [str(script)], max_trials=4,
                                                        parallel=2))
    out = tmp_path / "run"
    assert cli.main(["run", str(search), "--out", str(out), "--quiet"]) == 0, \
        capsys.readouterr().out
    rows = csv_rows(out)
    assert [r["trial"] for r in rows] == [f"sh-t{i:04d}" for i in range(4)]
    for row in rows:  # the search scored what the script reported: (last epoch's accuracy)^3
        accuracy = expected_accuracy(attempt_tokens(out, row["trial"]))
        assert row["phase"] == "Succeeded" and row["attempt"] == "0"
        assert float(row["val_accuracy"]) == pytest.approx(accuracy, abs=1e-4)
        assert float(row["reward"]) == pytest.approx(accuracy**3, rel=1e-3)
        log = (out / "trials" / row["trial"] / "a0" / "output.log").read_text()
        assert "error" not in log and "warning" not in log, log  # every report went through
    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Succeeded" and ledger.counts["search"]["succeeded"] == 4
    assert (strategy["asked"], strategy["told"], strategy["failed"]) == (4, 4, 0)


def test_a_python_script_reports_its_own_metric_to_minimize(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text(PYTHON_TRAINER)
    search = write_yaml(tmp_path / "s.yaml", own_search(
        "py", ["python", str(script)], max_trials=3, parallel=3, epochs=3,
        objective={"metric": "score", "direction": "minimize", "reward": "identity",
                   "lastEpochs": 3}))
    out = tmp_path / "run"
    assert cli.main(["run", str(search), "--out", str(out), "--quiet"]) == 0, \
        capsys.readouterr().out
    rows = csv_rows(out)
    assert len(rows) == 3
    for row in rows:  # identity of a minimized metric: minus its best (lowest) value
        zeros = sum(1 for t in attempt_tokens(out, row["trial"]) if t == 0)
        assert float(row["reward"]) == pytest.approx(-(10.0 - zeros - 2))
    best = json.loads((out / "best.json").read_text())
    assert best["reward"] == pytest.approx(max(float(r["reward"]) for r in rows))


def test_sigkill_of_the_runner_with_own_trainers_running_loses_nothing(tmp_path, processes,
                                                                      capsys, monkeypatch):
    path = trainer_path(tmp_path)
    script = shell_trainer(tmp_path)
    search = write_yaml(tmp_path / "s.yaml", own_search("kill", [str(script)], max_trials=3,
                                                        parallel=2, epochs=3,
                                                        searchSpace=CUSTOM))  # your own family
    out = tmp_path / "run"
    env = {"PATH": path, "EPOCH_SECONDS": "0.7"}
    first = processes.start(["run", str(search), "--out", str(out), "--quiet"], out, env)

    def one_done_one_running() -> bool:
        return bool([r for r in RunFolder(out).rows()] and live_trainers(out))

    wait_for(one_done_one_running, 90, "one trial finished and a trainer still at work")
    first.kill()  # SIGKILL: the trainers keep running and reporting into the void
    first.wait()
    before = {r.trial: r.reward for r in RunFolder(out).rows()}
    running = live_trainers(out)
    assert before and running
    time.sleep(1.0)  # the orphans' reports meet a closed port (and are kept for the final)

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0
    rows = {r["trial"]: r for r in csv_rows(out)}
    assert list(rows) == ["kill-t0000", "kill-t0001", "kill-t0002"]
    assert {r["phase"] for r in rows.values()} == {"Succeeded"}
    for trial, reward in before.items():  # finished before the kill: kept as it was
        assert float(rows[trial]["reward"]) == pytest.approx(reward)
    started = Counter(key.split("/")[0] for key in attempt_pids(out))
    assert started == {"kill-t0000": 1, "kill-t0001": 1, "kill-t0002": 1}, started
    for key in running:  # the orphan's own result counted, not a relaunch
        trial = key.split("/")[0]
        accuracy = expected_accuracy(attempt_tokens(out, trial))
        assert float(rows[trial]["reward"]) == pytest.approx(accuracy**3, rel=1e-3)
    assert live_trainers(out) == []
    state, ledger, strategy = checkpoint_facts(out)
    assert ledger.counts["search"]["succeeded"] == 3 and ledger.counts["search"]["retried"] == 0
    assert (strategy["asked"], strategy["told"], strategy["failed"], strategy["pending"]) == (
        3, 3, 0, 0)


def test_the_trainer_command_flag_is_judged_like_spec_trial_command(tmp_path):
    """Typed in a shell from the script's folder: `kubenas run s.yaml --trainer-command
    'python train.py'` on a built-in space, objective.metric a name only the script reports.
    The flag lifts the built-in trainer's metric rule as spec.trial.command does, and the
    two runs (same seed) score the same architectures the same."""
    (tmp_path / "train.py").write_text(PYTHON_TRAINER)
    doc = image_search("flag", max_trials=2, parallel=2, epochs=2, objective={
        "metric": "score", "direction": "minimize", "reward": "identity", "lastEpochs": 2})
    write_yaml(tmp_path / "s.yaml", doc)
    env = {**os.environ, "PATH": trainer_path(tmp_path)}
    if not shutil.which("kubenas", path=env["PATH"]):
        shim = tmp_path / "bin" / "kubenas"
        shim.parent.mkdir(exist_ok=True)
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nas_operator.cli "$@"\n')
        shim.chmod(0o755)
        env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"

    def typed(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    bare = typed("kubenas run s.yaml --out bare --quiet")  # the built-in trainer's rule holds
    assert bare.returncode == 2 and "spec.objective.metric" in bare.stdout + bare.stderr
    flag = typed("kubenas run s.yaml --trainer-command 'python train.py' --out flag --quiet")
    assert flag.returncode == 0, flag.stdout + flag.stderr
    doc["spec"]["trial"]["command"] = ["python", "train.py"]
    write_yaml(tmp_path / "c.yaml", doc)
    field = typed("kubenas run c.yaml --out field --quiet")
    assert field.returncode == 0, field.stdout + field.stderr
    by_flag, by_field = csv_rows(tmp_path / "flag"), csv_rows(tmp_path / "field")
    assert [r["phase"] for r in by_flag] == ["Succeeded"] * 2
    for row in by_flag:  # minus the lowest score the script reported
        zeros = sum(1 for t in attempt_tokens(tmp_path / "flag", row["trial"]) if t == 0)
        assert float(row["reward"]) == pytest.approx(-(10.0 - zeros - 1))
    assert [(r["trial"], r["reward"]) for r in by_flag] == [
        (r["trial"], r["reward"]) for r in by_field]


# --- kubenas-report as a command -------------------------------------------------------------
def report(tmp_path: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubenas-report", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": trainer_path(tmp_path), **(env or {})})


def trial_env(tmp_path: Path) -> dict[str, str]:
    """A trial's environment without a status API (stdout and the termination file)."""
    doc = {"search": "hand", "trial": "hand-t0000", "attempt": 1, "seed": 7,
           "architecture": {"space": "zoph-le-cnn", "tokens": [0, 1], "genotype": {"x": 1}},
           "training": {"epochs": 2}, "checkpointDir": str(tmp_path / "ckpt")}
    (tmp_path / "trial.json").write_text(json.dumps(doc))
    return {"KUBENAS_TRIAL_FILE": str(tmp_path / "trial.json"),
            "KUBENAS_TERMINATION_FILE": str(tmp_path / "termination.json")}


def test_kubenas_report_parses_numbers_and_carries_earlier_epochs(tmp_path):
    env = trial_env(tmp_path)
    assert json.loads(report(tmp_path, "--show", "architecture.genotype", env=env).stdout) == {
        "x": 1}
    first = report(tmp_path, "--epoch", "0", "val_accuracy=0.5", "loss=1e-1", "steps=300",
                   env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["metrics"] == {"val_accuracy": 0.5, "loss": 0.1,
                                                   "steps": 300.0}
    assert report(tmp_path, "--epoch", "1", "val_accuracy=0.75", env=env).returncode == 0
    final = report(tmp_path, "--final", env=env)
    assert final.returncode == 0, final.stderr
    written = json.loads((tmp_path / "termination.json").read_text())
    assert written["kind"] == "final" and written["attempt"] == 1
    assert written["metrics"] == {"val_accuracy": 0.75}  # the last epoch's, by default
    assert [e["val_accuracy"] for e in written["epochs"]] == [0.5, 0.75]


@pytest.mark.parametrize(("args", "words"), [
    (["--epoch", "0", "val_accuracy=high"], "'high' is not a number"),
    (["--epoch", "0", "val_accuracy"], "write a metric as name=number"),
    (["--epoch", "0", "loss=nan"], "not finite"),
    (["--epoch", "0", "val_accuracy=1.5"], "an accuracy must lie in [0, 1]"),
    (["--epoch", "-1", "loss=1"], "epochs count from 0"),
    (["--epoch", "0"], "needs at least one metric"),
    (["--show", "architecture.nothing"], "no 'nothing'"),
])
def test_kubenas_report_refuses_bad_input_with_the_reason(tmp_path, args, words):
    proc = report(tmp_path, *args, env=trial_env(tmp_path))
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert not (tmp_path / "termination.json").exists()


def test_kubenas_report_outside_a_trial_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBENAS_")}
    proc = subprocess.run(["kubenas-report", "--epoch", "0", "loss=1"], capture_output=True,
                          text=True, timeout=60, env={**env, "PATH": trainer_path(tmp_path)})
    assert proc.returncode == 2 and "KUBENAS_TRIAL_FILE" in proc.stderr


# --- which program kubenas run starts --------------------------------------------------------
CUSTOM = {"type": "custom", "options": {"decisions": [
    {"name": "width", "choices": [8, 16]}, {"name": "depth", "range": {"low": 1, "high": 3}}]}}


def test_kubenas_run_names_the_program_it_needs(tmp_path, monkeypatch):
    from nas_operator.local.runner import RunError, RunOptions, prepare

    monkeypatch.chdir(tmp_path)
    bare = image_search("own", max_trials=2, parallel=1)
    bare["spec"]["searchSpace"] = CUSTOM
    path = write_yaml(tmp_path / "custom.yaml", bare)
    with pytest.raises(RunError, match="spec.trial.command"):  # no program for a custom space
        prepare(RunOptions(search_file=path, out=tmp_path / "a"))
    run = prepare(RunOptions(search_file=path, out=tmp_path / "b",
                             trainer_command=["python", "train.py"]))  # the flag names one
    assert run.settings.trainer_command == [sys.executable, "train.py"]  # as spec.trial.command
    templated = image_search("tpl", max_trials=2, parallel=1)
    templated["spec"]["trial"]["template"] = {"image": "registry.example.com/me/train:1"}
    with pytest.raises(RunError, match="spec.trial.template.*set spec.trial.command"):
        prepare(RunOptions(search_file=write_yaml(tmp_path / "t.yaml", templated),
                           out=tmp_path / "c"))
    assert not (tmp_path / "c").exists()  # refused before any run folder was made
