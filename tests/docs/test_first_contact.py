"""What a new user types first, typed the same way: the README's commands, relative paths, a
fresh checkout, another working directory. These would have caught the relative run folder
that broke ``make demo`` (trainers run in their attempt folders) and the SIGPIPE in
``make tools``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO

KUBENAS = Path(sys.executable).with_name("kubenas")
SOURCE_DIRS = ("operator", "trainer_image", "controller_policy")


def clone_env(clone: Path) -> dict[str, str]:
    """Run the clone's own code (its source folders first on the path) with this venv."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(str(clone / d) for d in SOURCE_DIRS)
    return env


def fresh_clone(tmp_path: Path) -> Path:
    """A ``git clone`` of this repository whose ``make`` finds this test's venv installed.

    The clone links this checkout's ``.venv`` and dates its ``pyproject.toml`` before the
    venv's stamp, so ``make`` skips the (minutes-long, tested by CI's own fresh clone) pip
    install and runs the command itself from the clone's folder.
    """
    clone = tmp_path / "kubenas"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(Path(sys.prefix))  # the venv running this test
    os.utime(clone / "pyproject.toml", (0, 0))
    return clone


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs a git checkout to clone")
def test_make_demo_in_a_fresh_clone_succeeds_and_writes_what_it_says(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    done = subprocess.run(["make", "demo"], cwd=clone, env=clone_env(clone), text=True,
                          capture_output=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "phase       Succeeded" in out, out[-4000:]
    assert "cannot read trial document" not in out
    run = clone / "demo-out"
    for name in ("best.json", "trials.csv", "best.png", "rewards.png", "search.yaml"):
        assert (run / name).is_file(), f"make demo said it wrote {name}: {out[-2000:]}"
        assert name.split(".")[0] in out  # the summary names the files it wrote
    rows = (run / "trials.csv").read_text().splitlines()[1:]
    assert len(rows) == 12 and all(",Succeeded," in r for r in rows), rows


def readme_block(readme: Path, heading: str) -> list[str]:
    """The command lines of the first ```bash block under ``heading``, comments dropped."""
    section = readme.read_text().split(heading, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = (line.split(" #", 1)[0].strip() for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs a git checkout to clone")
def test_readme_local_commands_verbatim_in_a_fresh_clone(tmp_path: Path) -> None:
    """The README's "Run a search on your machine" block, line by line, as a user pastes it."""
    clone = fresh_clone(tmp_path)
    commands = readme_block(clone / "README.md", "## Run a search on your machine")
    assert any(c.startswith(".venv/bin/kubenas run --resume") for c in commands), commands
    for port in (int(p) for c in commands for p in re.findall(r"--metrics-port (\d+)", c)):
        if not port_is_free(port):  # another program's port, not a kubenas failure
            pytest.skip(f"the README's --metrics-port {port} is taken on this machine by another program")
    outputs = []
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=clone_env(clone), text=True,
                              capture_output=True, timeout=900)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, (command, outputs[-1][-3000:])
    assert "phase       Succeeded" in outputs[-1], outputs[-1]
    assert (clone / "runs" / "demo" / "best.json").is_file()


def write_ptb(folder: Path) -> None:
    """A tiny PTB-format corpus (one sentence per line) the trainer reads from dataset.path."""
    folder.mkdir(parents=True)
    words = [f"w{i}" for i in range(40)]
    for split, lines in (("train", 300), ("valid", 60), ("test", 20)):
        text = "\n".join(" ".join(words[(i * 7 + j) % 40] for j in range(8)) for i in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text + "\n")


SEARCH = """\
apiVersion: kubenas.dev/v1alpha1
kind: NASSearch
metadata:
  name: relative-paths
spec:
  searchSpace:
    type: zoph-le-rnn
  strategy:
    type: random
    seed: 3
  budget:
    maxTrials: 4
    parallelism: 1
  trial:
    dataset:
      name: ptb
      path: data/ptb            # relative: from where kubenas run starts
    training:
      epochs: 2
      batchSize: 8
      bptt: 8
      device: cpu
      threads: 1
      model:
        numLayers: 1
        embeddingSize: 8
        hiddenSize: 8
    retries: 0
"""


def finished_rows(run: Path) -> list[str]:
    csv = run / "trials.csv"
    return csv.read_text().splitlines()[1:] if csv.exists() else []


def test_run_and_resume_with_relative_paths_from_different_directories(tmp_path: Path) -> None:
    """``kubenas run search.yaml --out runs/rel`` in one folder (relative search file, run
    folder and dataset path), Ctrl-C after the first trial, then ``kubenas run --resume``
    from the parent folder with a different relative path to the same run."""
    work = tmp_path / "work"
    write_ptb(work / "data" / "ptb")
    (work / "search.yaml").write_text(SEARCH)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen([str(KUBENAS), "run", "search.yaml", "--out", "runs/rel", "--quiet"],
                             cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    run = work / "runs" / "rel"
    deadline = time.monotonic() + 240
    while not finished_rows(run) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    assert "cannot read" not in out, out
    rows = finished_rows(run)
    assert rows and all(",Succeeded," in r for r in rows), out
    assert len(rows) < 4, f"stopped too late to test a resume: {out}"

    resumed = subprocess.run([str(KUBENAS), "run", "--resume", "work/runs/rel", "--quiet"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out
    assert "phase       Succeeded" in out, out
    rows = finished_rows(run)
    assert len(rows) == 4 and all(",Succeeded," in r for r in rows), rows
    shown = subprocess.run([str(KUBENAS), "show", "rel"], cwd=work / "runs", env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "4/4 created: 4 succeeded" in shown.stdout, shown.stdout


def test_fetch_tools_runs_twice_in_the_same_folder(tmp_path: Path) -> None:
    """``make tools`` again over unpacked tools (what a second ``make test`` does after a
    pyproject change), with the script's pipefail: both runs exit 0 and print versions."""
    script = REPO / ".ci" / "fetch-tools.sh"
    for _ in range(2):
        done = subprocess.run(["bash", str(script), str(tmp_path / "bin"), sys.executable],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Client Version: v1." in done.stdout, done.stdout
        assert re.search(r"^v\d+\.\d+", done.stdout, re.MULTILINE), done.stdout  # helm
    assert os.access(tmp_path / "bin" / "helm", os.X_OK)
    assert os.access(tmp_path / "bin" / "kubectl", os.X_OK)


def test_fetch_tools_never_pipes_into_an_early_exit() -> None:
    """Under ``set -o pipefail`` a reader that exits early (``head``, ``grep -q``) fails the
    writer with SIGPIPE, and make with it — depending on timing."""
    text = (REPO / ".ci" / "fetch-tools.sh").read_text()
    assert "pipefail" in text
    offending = [line for line in text.splitlines()
                 if not line.lstrip().startswith("#") and ("| head" in line or "| grep -q" in line)]
    assert not offending, offending
