"""A tabular benchmark where architectures matter: every child of a small Zoph & Le space trained on Fashion-MNIST.

The digits table of ``bench.quality_table`` is too easy: its spread across
architectures is barely twice one training's seed noise, so no strategy can
be told apart from another (docs/testing.md). This table covers a complete
space where the choices change the answer: Zoph & Le's layer-wise CNN space
(docs/papers.md §1) with 2 layers of 16 filters, filter height and width in
{1, 3, 5, 7} per layer and the skip from layer 1 into layer 2: 512
architectures, from 1x1 convolutions that see one pixel to 7x7 ones. Task:
Fashion-MNIST at 12x12 (downsampled from 28x28), 3,000 training and 2,000
validation images held out of the official training set, 4 epochs, batch 32,
SGD-Nesterov lr 0.1 cosine, one CPU thread: about 1.4 CPU-seconds per
training. The size was set by what a niced build on a shared 2-core machine
finishes in a session: with 8 or 16 filters per layer (2,048 architectures)
the spread was larger, but at 3-6 s wall per training under that load the
build would have taken hours.

Why not enas-macro with 3 layers (the digits table's space): pilots on the
same Fashion-MNIST subset at 8 filters gave a spread across architectures of
0.007-0.008 against 0.008-0.011 seed noise (a ratio near 1), at 2-5
CPU-seconds per training; with global average pooling after three layers of 8
channels, every child with any convolution lands within a point of the others.

Every row is one real training through the trainer's own dispatch
(``nas_trainer.cli.run_trial``, the code path of ``python -m nas_trainer``)
with the ``idx`` loader, and stores the per-epoch validation accuracy, the
parameter count, the multiply-adds of one forward pass of one image
(``torch.utils.flop_counter``; convolutions and linear layers, not BN or
pooling), the training CPU-seconds and a batch-1 CPU latency (median of 20;
noisy on a shared machine). A sample of architectures is retrained with other
seeds for the noise estimate. ``bench.build_fashion_table`` builds it.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.quality_table import Entry, key_of
from controller_policy.spaces import make_space
from controller_policy.spaces.base import SearchSpace

BENCH_DIR = Path(__file__).resolve().parent
TABLE_PATH = BENCH_DIR / "data" / "fashion_zoph2x16.jsonl.gz"
PARTIAL_PATH = BENCH_DIR / "out" / "fashion_zoph2x16.partial.jsonl"
"""Rows of an unfinished build, one JSON line each (appended as they finish)."""
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DATA_ENV = "KUBENAS_FASHION_MNIST"
"""Where the IDX files are: Debian's dataset-fashion-mnist, or this variable."""

TASK: dict[str, Any] = {
    "spaceType": "zoph-le-cnn",
    "spaceOptions": {"layers": 2, "filterChoices": [16]},
    "dataset": {"name": "idx", "imageSize": 12, "maxTrainExamples": 3000, "validationSize": 2000},
    "training": {
        "epochs": 4, "batchSize": 32, "learningRate": 0.1, "schedule": "cosine",
        "augment": False, "threads": 1, "device": "cpu", "reportTestAccuracy": False,
    },
    "seed": 0,
}
"""The recipe of every row (the dataset's path is the machine's, so it is not part of it)."""

NOISE_ARCHS = 32
NOISE_SEEDS = (1, 2)


def task_space() -> SearchSpace:
    return make_space(TASK["spaceType"], TASK["spaceOptions"])


def data_dir() -> Path:
    """The Fashion-MNIST folder; a clear error when it is not installed."""
    root = Path(os.environ.get(DATA_ENV, DEFAULT_DATA_DIR))
    if not (root / "train-images-idx3-ubyte.gz").exists() and not (root / "train-images-idx3-ubyte").exists():
        raise SystemExit(f"Fashion-MNIST IDX files not found in {root}: install Debian's "
                         f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set {DATA_ENV} "
                         "to a folder holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
    return root


@dataclass
class Row(Entry):
    """One training of one architecture: what a search would learn from it (``accuracy`` and
    ``reward`` as in the digits table) and what it cost. ``test`` is NaN: no test split is
    evaluated here (it would cost a quarter of each training)."""

    macs: int = 0
    latency_ms: float | None = None
    seed: int = 0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Row:
        return cls(list(raw["tokens"]), list(raw["val"]), float("nan"), int(raw["params"]), float(raw["cpu_s"]),
                   int(raw["macs"]), raw.get("latency_ms"), int(raw.get("seed", 0)))


def read_rows(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, rows) of a table file, gzip or plain JSON lines; a torn last line (a build killed
    mid-write) is skipped."""
    if not path.exists():
        return None, []
    opener = gzip.open if path.suffix == ".gz" else open
    header, rows = None, []
    with opener(path, "rt") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "task" in record:
                header = header or record
            elif "tokens" in record:
                rows.append(record)
    return header, rows


class FashionTable:
    """Lookup of real trainings by token list; duck-types ``bench.quality_table.QualityTable`` for
    the search runners (``space``, ``get``, ``all_entries``, ``complete``)."""

    def __init__(self, header: dict[str, Any], rows: Iterable[dict[str, Any]], path: Path | None = None) -> None:
        if header.get("task") != TASK:  # stale results would pass for the current recipe's
            raise ValueError(f"{path}: the table was built for another task than bench.fashion_table.TASK; "
                             "rebuild it: python -m bench.build_fashion_table --fresh")
        self.header = header
        self.path = path
        self.space = task_space()
        self.trained_live = 0
        self.rows: dict[str, Row] = {}
        self.noise: dict[str, dict[int, Row]] = {}
        for raw in rows:
            row = Row.from_json(raw)
            if row.seed == TASK["seed"]:
                self.rows[key_of(row.tokens)] = row
            else:
                self.noise.setdefault(key_of(row.tokens), {})[row.seed] = row

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> FashionTable:
        header, rows = read_rows(path)
        if header is None:
            raise SystemExit(f"{path}: no table here; build it with python -m bench.build_fashion_table")
        return cls(header, rows, path)

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.space.size()

    def get(self, tokens: Sequence[int]) -> Row:
        row = self.rows.get(key_of(tokens))
        if row is None:
            raise KeyError(f"architecture {list(tokens)} is not in {self.path}; the table is incomplete "
                           f"({len(self.rows)} of {self.space.size()}): finish it with "
                           "python -m bench.build_fashion_table")
        return row

    def all_entries(self) -> list[Row]:
        return list(self.rows.values())


@dataclass(frozen=True)
class Noise:
    """Across-architecture spread against one training's seed noise, both as standard deviations."""

    seed_std: float
    """Mean over the rerun sample of the seed-to-seed std of one architecture's accuracy."""
    across_std: float
    archs: int
    runs_per_arch: int

    @property
    def ratio(self) -> float:
        return self.across_std / self.seed_std if self.seed_std > 0 else float("inf")


def noise_summary(table: FashionTable) -> Noise:
    stds, runs = [], 0
    for key, by_seed in table.noise.items():
        accs = [r.accuracy for r in by_seed.values()] + ([table.rows[key].accuracy] if key in table.rows else [])
        if len(accs) > 1:
            stds.append(statistics.stdev(accs))
            runs = max(runs, len(accs))
    across = [r.accuracy for r in table.all_entries()]
    return Noise(statistics.mean(stds) if stds else float("nan"),
                 statistics.stdev(across) if len(across) > 1 else float("nan"), len(stds), runs)
