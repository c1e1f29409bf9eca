"""How the Prometheus-backed tests get their binaries: .ci/system-packages.sh (called by
`make test`) never fails the build, and without the binaries the tests skip saying how to
install them. See docs/monitoring.md and docs/testing.md §8."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.prometheus import REPO, binary

SCRIPT = REPO / ".ci" / "system-packages.sh"


def _fake_bin(folder: Path, **programs: str) -> Path:
    folder.mkdir()
    for name, body in programs.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


def test_make_test_runs_the_system_package_setup_before_pytest() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in recipe.splitlines()[1:]]
    assert lines[0] == "bash .ci/system-packages.sh" and "pytest" in lines[1], recipe
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("make test")


def test_without_root_the_setup_says_what_is_missing_and_succeeds(tmp_path: Path) -> None:
    """No prometheus on the PATH, not root, no apt-get: a message naming the packages, exit 0."""
    fake = _fake_bin(tmp_path / "bin", id="echo 1000")
    proc = subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT)], capture_output=True,
                          text=True, timeout=60, env={"PATH": str(fake)})
    assert proc.returncode == 0, proc.stderr
    assert "prometheus" in proc.stdout and "will skip" in proc.stdout, proc.stdout
    assert "apt-get install -y prometheus" in proc.stdout


def test_with_the_binaries_on_the_path_the_setup_does_nothing(tmp_path: Path) -> None:
    fashion = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    if not fashion.exists():
        pytest.skip("dataset-fashion-mnist is not installed: the script would want it")
    fake = _fake_bin(tmp_path / "bin", prometheus="exit 0", promtool="exit 0",
                     id="echo 'id must not be asked'; exit 1")
    proc = subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT)], capture_output=True,
                          text=True, timeout=60, env={"PATH": str(fake)})
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_a_missing_binary_skips_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setenv("KUBENAS_PROMETHEUS", os.devnull + "/absent")
    with pytest.raises(pytest.skip.Exception, match=r"prometheus is not installed.*apt-get "
                       r"install -y prometheus"):
        binary("prometheus")
