"""The real helm binary for tests: the unpacked bin/helm (or one on PATH), isolated from the
user's helm configuration and any cluster; a test skips when helm is absent."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support import REPO

ROOT = REPO


def helm_bin() -> str:
    local = ROOT / "bin" / "helm"
    if local.exists():
        return str(local)
    found = shutil.which("helm")
    if found is None:
        pytest.skip("bin/helm is absent: run `make tools` (make test does it) to unpack helm")
    return found


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=os.devnull, HELM_CACHE_HOME="/tmp/kubenas-helm-cache",
               HELM_CONFIG_HOME="/tmp/kubenas-helm-config", HELM_DATA_HOME="/tmp/kubenas-helm-data")
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
