"""`kubenas run` end to end: real trainer processes on the bundled digits, the real status API
on loopback (scraped while the search runs), the real REINFORCE controller; then `kubenas show`.

The helpers the local-mode tests share are in tests/support/local_run.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pytest

from nas_operator import cli
from nas_operator.api import space_class
from tests.support.local_run import (
    checkpoint_facts,
    csv_rows,
    free_port,
    image_search,
    live_trainers,
    write_yaml,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
