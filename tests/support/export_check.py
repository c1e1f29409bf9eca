"""Run exported models in a fresh interpreter that has torch but no kubenas on its path.

Shared by the export and transfer tests (not a test module): ``check_without_kubenas``
writes a small script, runs it under ``python -I -S`` with only torch's install folders
on ``sys.path`` (no .pth files, so no editable kubenas), and returns, per export folder,
the largest difference between its outputs and the expected ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

CLEAN_CHECK = r"""
import importlib.util, json, sys, torch
for name in ("nas_trainer", "controller_policy", "nas_operator"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is importable: not a clean interpreter")


def check(folder, io_file):
    spec = importlib.util.spec_from_file_location("model_" + str(len(sys.modules)), folder + "/model.py")
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    io = torch.load(io_file)
    net = model.load()
    out = net(*io["inputs"])
    result = {"module": float((out[0] if isinstance(out, tuple) else out).sub(io["expected"]).abs().max())}
    if model.INPUT["kind"] == "image":
        program = torch.export.load(folder + "/model.pt2").module()
        result["program"] = float(program(*io["inputs"]).sub(io["expected"]).abs().max())
    else:  # the program is one time step: run the sequence through it
        program = torch.export.load(folder + "/model.pt2").module()
        tokens, state = io["inputs"]
        steps = []
        for t in range(tokens.shape[1]):
            logits, state = program(tokens[:, t : t + 1], state)
            steps.append(logits)
        result["program"] = float(torch.cat(steps, 1).sub(io["expected"]).abs().max())
    print(json.dumps(result))


for i in range(1, len(sys.argv), 2):
    check(sys.argv[i], sys.argv[i + 1])
"""


def clean_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -I -S``: no user site, no .pth files (so no editable kubenas), only the folders
    torch is installed in."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    boot = f"import sys; sys.path.extend({sorted(paths)!r}); exec(open({script!r}).read())"
    return subprocess.run([sys.executable, "-I", "-S", "-c", boot, *args], capture_output=True,
                          text=True, timeout=120, cwd="/")


def check_without_kubenas(work: Path, pairs: list[str]) -> list[dict[str, Any]]:
    """``pairs``: export folder, io file (torch.save of {"inputs", "expected"}), ... ."""
    (work / "check.py").write_text(CLEAN_CHECK)
    run = clean_python(str(work / "check.py"), *pairs)
    assert run.returncode == 0, run.stderr[-2000:]
    return [json.loads(line) for line in run.stdout.strip().splitlines()]
