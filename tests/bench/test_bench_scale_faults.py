"""Smoke tests of the long-search and fault benchmarks at ``--quick`` sizes: they run the real
operator against the emulator (and ``kubenas run``), end, and print the figures a user asks
for; the fault benchmark's own exit status says no reward was lost, no Job was duplicated and
the status API gave no 5xx. Structure only, never a time.

Both run the real operator for minutes (about 2 each on a quiet 2-core machine), so they are in
``make test-slow``; ``make test`` keeps the same guarantees through the operator SIGKILL, restart and retention
tests (tests/operator) and the status-API fuzz (tests/loop/test_status_api.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


def quick(module: str) -> str:
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.timeout(660)
def test_the_long_search_benchmark_prints_its_figures_for_both_cases() -> None:
    out = quick("bench_scale")
    for words in ("operator API requests per trial", "etcd-bound bytes written per trial",
                  "RSS slope per 10k trials", "| retention ", "| no retention ",
                  "Operator RSS over the search", "extrapolated"):
        assert words in out, out
    retained = next(line for line in out.splitlines() if line.startswith("| retention "))
    assert "Succeeded, 300" in retained, retained


def figures(out: str) -> dict[str, str]:
    """The benchmark's table as figure -> value (cells stripped of their padding)."""
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return {label.strip(): value.strip() for label, value, *_ in rows}


@pytest.mark.timeout(660)
def test_the_fault_benchmark_kills_fuzzes_and_loses_nothing() -> None:
    table = figures(quick("bench_faults"))
    kills = next(v for k, v in table.items() if k.startswith("operator: SIGKILLs"))
    assert int(kills) >= 1, table  # the quick search lasts long enough to be killed
    assert int(next(v for k, v in table.items() if k.startswith("local runner: SIGKILLs"))) >= 1
    assert table["operator: lost rewards (accepted, not in the checkpoint)"] == "0", table
    assert table["operator: duplicate Jobs (a Job name created twice)"] == "0", table
    assert table["operator: search phase; trials succeeded / failed"].startswith("Succeeded;")
    assert table["status-API fuzz: 5xx answers"] == "0", table
    assert "connection" not in table["status-API fuzz: answers by class"], table  # it answered
    assert table["local runner: lost rewards"] == "0", table
    assert table["local runner: final exit; trials in trials.csv / succeeded"].startswith("0;")
