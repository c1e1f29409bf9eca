"""The trainer image's contract (hadolint itself runs in test_dockerfiles.py for both images).

What the operator's Jobs rely on: ``python -m nas_trainer`` as entrypoint, a
numeric non-root user, a pinned CUDA PyTorch base, and exactly the trainer's
runtime dependencies (pyproject's core minus torch, plus the ``trainer`` extra).
"""

from __future__ import annotations

import json
import re
import tomllib

from tests.support import REPO

DOCKERFILE = REPO / "trainer_image" / "Dockerfile"
REQUIREMENTS = REPO / "trainer_image" / "requirements.txt"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_entrypoint_user_and_pinned_cuda_base() -> None:
    instr = instructions()
    assert json.loads([a for w, a in instr if w == "ENTRYPOINT"][-1]) == ["python", "-m", "nas_trainer"]
    user = [a for w, a in instr if w == "USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric non-root uid lets runAsNonRoot verify it"
    args = dict(a.split("=", 1) for w, a in instr if w == "ARG" and "=" in a)
    base = [a for w, a in instr if w == "FROM"][-1]
    base = args.get(base.strip("${}"), base)
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", base), base


def test_requirements_are_exactly_the_trainers_pinned_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {requirement_name(d) for d in project["dependencies"]} - {"torch"}
    wanted |= {requirement_name(d) for d in project["optional-dependencies"]["trainer"]}
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert {requirement_name(ln) for ln in lines} == wanted
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", ln) for ln in lines), "pin every version"


def test_the_image_carries_the_trainer_and_the_search_spaces() -> None:
    copies = [a for w, a in instructions() if w == "COPY"]
    assert any(a.startswith("trainer_image/nas_trainer ") for a in copies)
    assert any(a.startswith("controller_policy/controller_policy ") for a in copies)
    assert not any(a.startswith("operator") for a in copies), "no operator code in the trainer image"
    env = " ".join(a for w, a in instructions() if w == "ENV")
    assert "PYTHONPATH=/opt/kubenas" in env
