"""``python -m bench.bench_fashion_supernet``: the zoph-le-cnn supernet's ranking of the Fashion-MNIST table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_fashion_supernet import chance_band, noise_ceiling, verdict
from bench.fashion_table import DATA_ENV, DEFAULT_DATA_DIR
from tests.support import REPO


def test_chance_band_and_verdicts() -> None:
    # the null standard error of Kendall's tau is sqrt(2(2n+5) / (9n(n-1)))
    assert chance_band(10) == pytest.approx(2 * (50 / 810) ** 0.5)
    assert chance_band(512) < chance_band(51) < 0.2
    assert verdict(0.3, 0.1) == "better than chance"
    assert verdict(0.05, 0.1) == "no better than chance"
    assert verdict(-0.3, 0.1).startswith("worse")


def test_noise_ceiling_falls_with_the_noise() -> None:
    accs = [0.5 + 0.002 * i for i in range(100)]
    quiet, _ = noise_ceiling(accs, 0.001)
    loud, _ = noise_ceiling(accs, 0.05)
    assert 0.9 < quiet <= 1.0 and loud < quiet - 0.2


def _fashion_installed() -> bool:
    root = Path(os.environ.get(DATA_ENV, DEFAULT_DATA_DIR))
    return (root / "train-images-idx3-ubyte.gz").exists() or (root / "train-images-idx3-ubyte").exists()


@pytest.mark.timeout(600)
@pytest.mark.skipif(not _fashion_installed(), reason="Fashion-MNIST IDX files not installed")
def test_quick_run_ranks_with_each_setting_and_states_the_baselines() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_fashion_supernet", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=580, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for setting in ("controller", "uniform", "controller, identity init"):
        row = re.search(rf"^\| {re.escape(setting)}\s+\| 0\s+\| (-?[\d.]+)\s+\| (-?[\d.]+)\s+\| (-?[\d.]+)", out, re.M)
        assert row, out
        assert all(-1.0 <= float(v) <= 1.0 for v in row.groups())
    assert "Ceiling: the table against its own seed reruns" in out
    assert "random E[best of n]" in out and "Sciuto" in out
    assert re.search(r"^- controller: all children (better|no better|worse) than chance", out, re.M), out
    darts = re.search(r"^\| DARTS first order[^|]*\| 0\s+\|((?:\s*-?[\d.]+\s+\|){8}) (0\.\d+) \(rank", out, re.M)
    assert darts, out  # 8 correlations (score and alpha), then the pick's table accuracy
    assert all(-1.0 <= float(v) <= 1.0 for v in darts.group(1).split("|") if v.strip())
    assert "by alpha, all" in out
