"""A multi-objective `kubenas run` end to end: real trainer processes on the bundled digits,
evolution selecting on the Pareto front; the run folder ends with the front in the checkpoint's
status, best.json and front.json, the front.png picture; `kubenas show` prints the front and
`kubenas export --trial` exports a front member."""

from __future__ import annotations

import json

from controller_policy.pareto import pareto_front
from nas_operator import cli
from nas_operator.local.output import RunFolder
from tests.support.local_run import checkpoint_facts, image_search, write_yaml

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MEASURES = ("params", "flops", "latency_ms")
"""What every trial of the built-in trainer reports about its cost."""
OBJECTIVE = {"objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                            {"metric": "params", "direction": "minimize", "target": 1000}]}


def test_a_multi_objective_search_ends_with_its_front(tmp_path, capsys, processes):
    search = write_yaml(tmp_path / "search.yaml", image_search(
        "mo", max_trials=6, parallel=2, objective=OBJECTIVE,
        strategy={"type": "evolution", "config": {"populationSize": 3, "sampleSize": 2}}))
    out = tmp_path / "run"
    processes.folders.append(out)
    assert cli.main(["run", str(search), "--out", str(out), "--quiet"]) == 0
    folder = RunFolder(out)

    rows = [r for r in folder.rows() if r.stage == "search"]
    assert len(rows) == 6 and all(r.phase == "Succeeded" for r in rows)
    for r in rows:  # every trial reports what it costs, and carries its objective values
        assert all(r.metrics.get(m, 0) > 0 for m in MEASURES), r.metrics
        assert r.objectives == {"val_accuracy": r.objectives["val_accuracy"],
                                "params": r.metrics["params"]}
    points = [(r.objectives["val_accuracy"], -r.objectives["params"]) for r in rows]
    expected = {rows[i].trial for i in pareto_front(points)}

    state, ledger, _ = checkpoint_facts(out)
    assert state["phase"] == "Succeeded"
    assert {m.name for m in ledger.front.members} == expected

    front = json.loads(folder.front_json.read_text())
    assert {m["trial"] for m in front["members"]} == expected and front["size"] == len(expected)
    assert front["objectives"] == ["maximize val_accuracy", "minimize params"]
    assert front["referencePoint"] == {"val_accuracy": 0.0, "params": 2000.0}
    devices = {r.trial: r.device for r in rows}
    assert all(devices.values()), devices  # every trial names where it timed its latency
    for m in front["members"]:
        assert m["architecture"]["space"] == "zoph-le-cnn" and m["architecture"]["tokens"]
        assert m["device"] == devices[m["trial"]]
    best = json.loads(folder.best_json.read_text())
    assert best["trial"] == max(rows, key=lambda r: r.reward).trial
    assert folder.front_png.read_bytes().startswith(PNG_MAGIC)

    folder.front_png.unlink()  # show draws it again from the journal
    capsys.readouterr()
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "objectives maximize val_accuracy, minimize params (target 1000)" in shown
    assert f"Pareto front: {len(expected)} trials" in shown
    assert all(name in shown for name in expected)
    assert "front.json" in shown and folder.front_png.read_bytes().startswith(PNG_MAGIC)

    member = sorted(expected)[-1]  # any member, not only the best
    target = tmp_path / "exported"
    assert cli.main(["export", str(out), "--trial", member, "--untrained", "--no-onnx",
                     "--out", str(target)]) == 0
    assert (target / "model.py").is_file()
