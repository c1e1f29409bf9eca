"""``python -m bench.bench_supernet_ranking``: the supernet's ranking against the digits table (docs/testing.md)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.bench_supernet_ranking import correlations
from tests.support import REPO


def test_correlations_of_perfect_and_reversed_rankings() -> None:
    truth = [i / 100 for i in range(40)]
    assert correlations([t * 2 for t in truth], truth) == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert correlations([-t for t in truth], truth) == pytest.approx((-1.0, -1.0, -1.0, -1.0))
    # a score that gets the order right only below the top 10% ranks the top at random (here: reversed)
    scores = truth[:36] + [0.0, -0.1, -0.2, -0.3]
    tau, _, tau_top, _ = correlations(scores, truth)
    assert tau > 0.5 and tau_top == pytest.approx(-1.0)


@pytest.mark.timeout(600)
def test_quick_run_prints_both_samplers_and_the_ceiling() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_supernet_ranking", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=580, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for sampler in ("controller", "uniform"):
        row = re.search(rf"^\| {sampler}\s+\| 0\s+\| (-?[\d.]+)\s+\| (-?[\d.]+)", out, re.M)
        assert row, out
        assert all(-1.0 <= float(v) <= 1.0 for v in row.groups())
    assert "Ceiling: one standalone training against another seed" in out
    assert "random E[best of n]" in out
