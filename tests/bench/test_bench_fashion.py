"""The Fashion-MNIST search-quality table and its statistics (docs/testing.md).

The exact random-search expectations are checked against brute-force
enumeration; the shipped table against its recipe and the claim the
benchmark rests on (architectures differ by several times one training's
seed noise); the builder through its command line, resumed after a stop and
after a torn last line, when the Fashion-MNIST files are installed.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_fashion_search import Verdict, expected_best_distinct, holm, wilcoxon_p
from bench.bench_search_quality import expected_random_best
from bench.fashion_table import (
    DATA_ENV,
    DEFAULT_DATA_DIR,
    TABLE_PATH,
    TASK,
    FashionTable,
    noise_summary,
    read_rows,
)
from tests.support import REPO

VALUES = [0.5, 0.61, 0.61, 0.7, 0.72, 0.9]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_expected_best_without_replacement_matches_enumeration(n: int) -> None:
    subsets = list(itertools.combinations(VALUES, n))
    brute = statistics.mean(max(s) for s in subsets)
    assert expected_best_distinct(VALUES, n) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_expected_best_with_replacement_matches_enumeration(n: int) -> None:
    draws = list(itertools.product(VALUES, repeat=n))
    brute = statistics.mean(max(d) for d in draws)
    assert expected_random_best(VALUES, n) == pytest.approx(brute, abs=1e-12)


def test_without_replacement_beats_with_replacement() -> None:
    # distinct draws can only see more of the table
    assert expected_best_distinct(VALUES, 3) > expected_random_best(VALUES, 3)
    assert expected_best_distinct(VALUES, len(VALUES) + 4) == max(VALUES)


def test_paired_test_and_verdict() -> None:
    assert wilcoxon_p([0.5] * 8, [0.5] * 8) == 1.0
    better = [0.70 + 0.01 * i for i in range(20)]
    worse = [b - 0.02 - 0.001 * i for i, b in enumerate(better)]
    p = wilcoxon_p(better, worse)
    assert p < 1e-4
    assert Verdict(0.02, p, p).text(seed_std=0.01) == "better"
    assert Verdict(-0.005, p, p).text(seed_std=0.01) == "worse (gap < seed noise)"
    assert Verdict(0.03, 0.01, 0.2).text(seed_std=0.01) == "no difference"  # the adjusted p decides


def test_holm_adjustment() -> None:
    verdicts = {"a": Verdict(0.01, 0.01), "b": Verdict(0.01, 0.04), "c": Verdict(0.01, 0.03), "d": Verdict(0, 0.5)}
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1, kept monotone
    assert holm(verdicts) == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


def test_shipped_table_is_complete_and_tells_architectures_apart() -> None:
    table = FashionTable.load(TABLE_PATH)
    assert table.complete, f"{len(table.rows)} of {table.space.size()} architectures"
    rows = table.all_entries()
    assert all(len(r.val) == TASK["training"]["epochs"] for r in rows)
    assert all(r.params > 0 and r.macs > 0 and r.cpu_s > 0 for r in rows)
    assert len({r.macs for r in rows}) > 50  # kernel shapes and widths change the cost
    noise = noise_summary(table)
    assert noise.archs >= 30 and noise.runs_per_arch == 3
    assert noise.ratio >= 4, f"spread {noise.across_std:.4f} vs seed noise {noise.seed_std:.4f}"


def test_table_refuses_another_recipe(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"task": {**TASK, "seed": 7}}) + "\n")
    with pytest.raises(ValueError, match="another task"):
        FashionTable.load(path)


def test_incomplete_table_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"task": TASK}) + "\n")
    table = FashionTable.load(path)
    with pytest.raises(KeyError, match="build_fashion_table"):
        table.get([0] * table.space.num_tokens)


def _fashion_installed() -> bool:
    root = Path(os.environ.get(DATA_ENV, DEFAULT_DATA_DIR))
    return (root / "train-images-idx3-ubyte.gz").exists() or (root / "train-images-idx3-ubyte").exists()


@pytest.mark.timeout(600)
@pytest.mark.skipif(not _fashion_installed(), reason="Fashion-MNIST IDX files not installed")
def test_builder_resumes_after_a_stop_and_a_torn_line(tmp_path: Path) -> None:
    table = tmp_path / "t.jsonl.gz"
    cmd = [sys.executable, "-m", "bench.build_fashion_table", "--table", str(table), "--limit"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*cmd, "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "0 rows done, 2 trainings" in first.stdout and "rerun to continue" in first.stdout
    partial = tmp_path / "t.partial.jsonl"
    header, rows = read_rows(partial)
    assert header is not None and header["task"] == TASK and len(rows) == 2
    assert all(len(r["val"]) == TASK["training"]["epochs"] and r["macs"] > 0 for r in rows)
    with partial.open("a") as fh:  # a build killed mid-write
        fh.write('{"tokens":[0,0,')
    second = subprocess.run([*cmd, "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "2 rows done, 1 trainings" in second.stdout
    _, rows = read_rows(partial)
    assert len({(tuple(r["tokens"]), r["seed"]) for r in rows}) == 3
    assert not table.exists()  # written only when every job is done
