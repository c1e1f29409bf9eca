"""Smoke test of ``python -m bench``: the report is written with its machine, sections and tables.

Runs the quick mode of the two benchmarks that need real trainings (search
quality from the shipped table, weight sharing at tiny sizes) through the
runner, as ``make bench-quick`` would; checks structure, never a time. The
report-rendering checks for failed and missing modules run in-process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import MISSING, MODULES, Outcome, render, select
from bench.quality_table import TABLE_PATH, QualityTable
from tests.support import REPO


@pytest.mark.timeout(900)
def test_quick_run_writes_report_with_tables(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS-quick.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "fashion_search,search_quality,weight_sharing",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=880, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "## Machine" in text and "| CPU" in text and "| torch" in text
    assert "- date: " in text and "mode: quick" in text
    assert "## 1. Search quality at equal budget" in text
    assert "## 2. Weight sharing against multi-trial" in text
    assert "## 3. Orchestration overhead" not in text  # not selected
    for strategy in ("random", "reinforce", "ppo", "evolution", "optuna-tpe"):
        assert f"| {strategy} " in text
    assert "best val acc @30" in text and "uniform random, exact expectation" in text
    assert "| ENAS " in text and "| multi-trial REINFORCE " in text and "multi / ENAS" in text
    # The shipped table answered every lookup: no training happened for the comparison.
    assert "0 trained now" in text
    # The Fashion-MNIST table: every strategy, the paired test against random, both expectations.
    assert "### Strategies on the Fashion-MNIST table" in text and "spread / seed noise" in text
    assert "Wilcoxon signed-rank" in text and "random, exact expectation (distinct archs)" in text
    assert (REPO / "bench" / "out" / "fashion_search-quick.png").stat().st_size > 0
    assert (REPO / "bench" / "out" / "search_quality-quick.png").stat().st_size > 0


def test_shipped_table_is_complete() -> None:
    table = QualityTable.load(TABLE_PATH)
    assert table.complete, f"{len(table.entries)} of {table.space.size()} architectures"
    assert all(len(e["val"]) == table.data["task"]["training"]["epochs"] for e in table.entries.values())


def test_only_selects_modules_by_short_or_full_name() -> None:
    names = [m.name for m in select(["loop", "bench.bench_controller,bench_trainer"])]
    assert names == ["bench_controller", "bench_loop", "bench_trainer"]  # report order
    assert len(select(None)) == len(MODULES)
    with pytest.raises(SystemExit, match="unknown module"):
        select(["nope"])


def test_report_keeps_going_past_failed_and_missing_modules() -> None:
    from datetime import UTC, datetime

    by_name = {m.name: m for m in MODULES}
    outcomes = [
        Outcome(by_name["bench_controller"], 0, 1.0, "| a | b |\n|---|---|\n| 1 | 2 |\n", ""),
        Outcome(by_name["bench_loop"], 1, 2.0, "", "Traceback ...\nValueError: boom"),
        Outcome(by_name["bench_operator"], MISSING, 0.0, "", "bench/bench_operator.py is not in this checkout"),
    ]
    text = render(outcomes, quick=False, started=datetime.now(UTC), wall=3.0, load="n/a", note="shared")
    assert "| 1 | 2 |" in text
    assert "failed (exit 1)" in text and "ValueError: boom" in text
    assert "missing" in text and "- note: shared" in text
