"""Every command the README shows is exercised here where this machine allows.

No cluster, Docker engine or GPU exists here, so: `helm install` is rendered
with `helm template` using exactly the README's flags (and the manifests must
parse and carry the images it names); `kubectl apply -f FILE` validates FILE as
a NASSearch; `docker build -f FILE` needs FILE to exist (hadolint runs in
test_dockerfiles.py); `kubenas validate` runs for real; `make X` must be a
Makefile target. A command of any other kind fails this test, so the README
cannot grow an unchecked command.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from tests.support.helm import run_helm

README = REPO / "README.md"
REGISTRY = "registry.example.com/team"


def readme_commands() -> list[list[str]]:
    """Shell commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    text = README.read_text()
    commands: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in line.split("&&"):
                commands.append(shlex.split(part.replace("REGISTRY", REGISTRY)))
    return commands


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def test_readme_opens_with_demo_and_test() -> None:
    first = readme_commands()[:2]
    assert first == [["make", "demo"], ["make", "test"]]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M), ".ci/run must call the README's test command"


def _check_helm_install(argv: list[str]) -> None:
    release, chart = argv[2], argv[3]
    flags = argv[4:]
    proc = run_helm("template", release, str(REPO / chart), "--kube-version", "1.33",
                 "--include-crds", *flags)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "CustomResourceDefinition", "ServiceMonitor", "ConfigMap"} <= kinds
    images = {c["image"] for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert any(i.startswith(f"{REGISTRY}/kubenas-operator:") for i in images), images
    env = {e["name"]: e.get("value") for d in docs if d["kind"] == "Deployment"
           for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert env["KUBENAS_TRAINER_IMAGE"].startswith(f"{REGISTRY}/kubenas-trainer:")


def _check_kubenas(argv: list[str]) -> None:
    sub = argv[1]
    if sub == "validate":
        proc = subprocess.run([sys.executable, "-m", "nas_operator.cli", *argv[1:]],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    elif sub in {"run", "show", "export"}:
        # Real runs are covered by test_local_run.py / test_local_resume.py (and
        # test_transfer.py for export); here the
        # README's file arguments must exist and its flags must be accepted.
        for arg in argv[2:]:
            if arg.startswith("examples/"):
                assert (REPO / arg).exists(), arg
        proc = subprocess.run([sys.executable, "-m", "nas_operator.cli", sub, "--help"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        for flag in (a for a in argv[2:] if a.startswith("--")):
            assert flag in proc.stdout, f"README uses {flag} but `kubenas {sub}` has no such flag"
    else:
        pytest.fail(f"README command not checked by this test: {' '.join(argv)}")


def test_every_readme_command_is_exercised() -> None:
    targets = makefile_targets()
    checked = 0
    for argv in readme_commands():
        tool = Path(argv[0]).name
        if tool == "make":
            assert argv[1] in targets, f"make {argv[1]}: no such Makefile target"
        elif tool == "pip":
            assert argv[1:3] == ["install", "-e"] and argv[3].startswith(".[")
        elif tool == "helm" and argv[1] == "install":
            _check_helm_install(argv)
        elif tool == "kubectl" and argv[1] == "apply":
            path = REPO / argv[argv.index("-f") + 1]
            proc = subprocess.run([sys.executable, "-m", "nas_operator.cli", "validate", str(path)],
                                  cwd=REPO, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        elif tool == "kubectl" and argv[1] in {"get", "create", "describe"}:
            pass  # read-only or namespace creation: needs a cluster, stated in the README
        elif tool == "docker":
            if argv[1] == "build":
                assert (REPO / argv[argv.index("-f") + 1]).exists()
        elif tool == "kubenas":
            _check_kubenas(argv)
        else:
            pytest.fail(f"README command not checked by this test: {' '.join(argv)}")
        checked += 1
    assert checked >= 15
