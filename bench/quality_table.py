"""The evaluation table behind ``bench.bench_search_quality``: every architecture of a small space, trained for real.

Search strategies are compared at equal budget over many seeds; training each
proposal afresh for every (strategy, seed) pair would cost hours, and two
strategies proposing the same child should see the same result anyway. So,
like the tabular NAS benchmarks, we train every architecture of the space once
with the real trainer (``nas_trainer.cli.run_trial``, the code path of
``python -m nas_trainer``) and look results up by token list.

Task (``TASK`` below): ENAS macro space with 3 layers (6 ops x skip bits:
1,728 architectures), bundled digits (1,200 train / 300 validation / 297 test
images, 8x8), 3 epochs, batch 64, SGD-Nesterov lr 0.05 cosine, 8 filters, no
augmentation, trial seed 0, 1 torch thread on CPU. Each entry stores the
per-epoch validation accuracy, the test accuracy, the parameter count and the
CPU-seconds the training took. A few architectures are also retrained with
other seeds so the report can say how much of the spread is seed noise.

Rebuild from scratch (resumable; keeps finished entries when interrupted)::

    python -m bench.quality_table --rebuild --workers 2
    python -m bench.quality_table --verify 5     # retrain 5 entries, compare
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.machine import cpu_model, git_commit
from controller_policy.objective import Objective, compute_reward, metric_series
from controller_policy.spaces import make_space
from controller_policy.spaces.base import SearchSpace

TABLE_PATH = Path(__file__).parent / "data" / "quality_enas_macro3_digits.json"

TASK: dict[str, Any] = {
    "spaceType": "enas-macro",
    "spaceOptions": {"layers": 3},
    "dataset": {"name": "digits"},
    "training": {
        "epochs": 3, "batchSize": 64, "learningRate": 0.05, "schedule": "cosine",
        "augment": False, "threads": 1, "device": "cpu", "reportTestAccuracy": True,
        "model": {"filters": 8, "stemMultiplier": 1},
    },
    "seed": 0,
}
"""The training recipe of every table entry (the parts of a TrialDocument that matter)."""

NOISE_ARCHS = 24
NOISE_SEEDS = (1, 2)
OBJECTIVE = Objective()
"""kubenas' default objective: reward = (max val accuracy of the last 5 epochs)^3."""


def task_space() -> SearchSpace:
    return make_space(TASK["spaceType"], TASK["spaceOptions"])


def key_of(tokens: Sequence[int]) -> str:
    return ",".join(str(t) for t in tokens)


def all_token_lists(space: SearchSpace) -> Iterable[list[int]]:
    """Every token list of the space (feasible only for small spaces)."""
    for combo in itertools.product(*(range(s.num_values) for s in space.slots)):
        yield list(combo)


def train_child(space_type: str, space_options: dict[str, Any], tokens: Sequence[int],
                training: dict[str, Any], seed: int, dataset: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one architecture through the trainer's own dispatch (``python -m nas_trainer``'s code
    path, in this process); returns its per-epoch history, final metrics and the CPU-seconds used."""
    from controller_policy.contract import TrialDocument
    from nas_trainer.checkpoint import StopRequest
    from nas_trainer.cli import run_trial
    from nas_trainer.epochs import TrialContext
    from nas_trainer.reporter import Reporter
    from nas_trainer.runtime import setup_runtime

    logging.getLogger("nas_trainer").setLevel(logging.WARNING)
    space = make_space(space_type, space_options)
    doc = TrialDocument.model_validate({
        "search": "bench", "trial": f"t-{key_of(tokens)}", "seed": seed,
        "architecture": space.architecture(list(tokens)).model_dump(),
        "spaceOptions": space_options, "dataset": dataset or {"name": "digits"}, "training": training,
    })
    cpu = time.process_time()
    ctx = TrialContext(doc, setup_runtime(doc.training),
                       Reporter(None, None, None, echo_stdout=False), StopRequest())
    result = run_trial(ctx)
    return {"history": result.history, "metrics": result.metrics, "cpu_s": time.process_time() - cpu}


def train_entry(tokens: Sequence[int], seed: int = TASK["seed"]) -> dict[str, Any]:
    """One table entry: the task's recipe applied to ``tokens``."""
    out = train_child(TASK["spaceType"], TASK["spaceOptions"], tokens, TASK["training"], seed, TASK["dataset"])
    return {
        "val": [round(h["val_accuracy"], 6) for h in out["history"]],
        "test": round(out["metrics"]["test_accuracy"], 6),
        "params": int(out["metrics"]["params"]),
        "cpu_s": round(out["cpu_s"], 3),
    }


@dataclass
class Entry:
    """One table row: what a search would learn from training this architecture."""

    tokens: list[int]
    val: list[float]
    test: float
    params: int
    cpu_s: float

    @property
    def accuracy(self) -> float:
        """The objective's metric: max validation accuracy of the last k epochs."""
        return max(metric_series([{"val_accuracy": v} for v in self.val], "val_accuracy")
                   [-OBJECTIVE.lastEpochs:])

    @property
    def reward(self) -> float:
        return compute_reward(OBJECTIVE, [{"val_accuracy": v} for v in self.val])


class QualityTable:
    """Lookup of real training results by token list; trains (and keeps) what is missing."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        if data.get("task") != TASK:  # stale results would pass for the current recipe's
            raise ValueError(f"{path}: the table was built for another task than bench.quality_table.TASK; "
                             "rebuild it: python -m bench.quality_table --rebuild --fresh")
        self.data = data
        self.path = path
        self.space = task_space()
        self.trained_live = 0

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> QualityTable:
        if path.exists():
            return cls(json.loads(path.read_text()), path)
        return cls(new_table(), path)

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.data["entries"]

    @property
    def complete(self) -> bool:
        return len(self.entries) == self.space.size()

    def get(self, tokens: Sequence[int]) -> Entry:
        key = key_of(tokens)
        raw = self.entries.get(key)
        if raw is None:  # lazily: a real training, remembered for the next lookup
            raw = self.entries[key] = train_entry(tokens)
            self.trained_live += 1
        return Entry(list(tokens), raw["val"], raw["test"], raw["params"], raw["cpu_s"])

    def all_entries(self) -> list[Entry]:
        return [self.get([int(t) for t in k.split(",")]) for k in self.entries]

    def save(self, path: Path | None = None) -> None:
        """Atomic write, so an interrupted build never leaves a torn file."""
        path = path or self.path or TABLE_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, separators=(",", ":")))
        os.replace(tmp, path)


def new_table() -> dict[str, Any]:
    import torch

    return {
        "task": TASK,
        "built_with": {"torch": torch.__version__, "commit": git_commit()},
        "entries": {},
        "noise": {},
    }


def _train_keyed(job: tuple[str, list[int], int]) -> tuple[str, int, dict[str, Any]]:
    key, tokens, seed = job
    return key, seed, train_entry(tokens, seed)


def rebuild(path: Path, workers: int, fresh: bool) -> QualityTable:
    """Train every architecture (and the seed-noise subset) missing from the table at ``path``."""
    table = QualityTable(new_table(), path) if fresh or not path.exists() else QualityTable.load(path)
    space = table.space
    jobs = [(key_of(t), t, TASK["seed"]) for t in all_token_lists(space) if key_of(t) not in table.entries]
    rng = random.Random(0)
    noisy = rng.sample(list(all_token_lists(space)), NOISE_ARCHS)
    for tokens in noisy:
        done = table.data["noise"].get(key_of(tokens), {})
        jobs += [(key_of(tokens), tokens, s) for s in NOISE_SEEDS if str(s) not in done]
    started, cpu_total = time.perf_counter(), 0.0
    wall_before = table.data.get("build_wall_s", 0.0)
    if jobs:
        table.data["built_with"].update(cpu=cpu_model(), cores=os.cpu_count(), workers=workers)
    print(f"{len(jobs)} trainings to run with {workers} workers")
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_train_keyed, j) for j in jobs]
        for n, fut in enumerate(as_completed(futures), 1):
            key, seed, entry = fut.result()
            cpu_total += entry["cpu_s"]
            if seed == TASK["seed"]:
                table.entries[key] = entry
            else:
                table.data["noise"].setdefault(key, {})[str(seed)] = entry
            if n % 50 == 0 or n == len(jobs):
                table.data["build_wall_s"] = round(wall_before + time.perf_counter() - started, 1)
                table.save()
                print(f"{n}/{len(jobs)} done, {time.perf_counter() - started:.0f} s wall, "
                      f"{cpu_total:.0f} CPU-s in trainings", flush=True)
    table.save()
    return table


def noise_summary(table: QualityTable) -> tuple[float, float]:
    """(mean seed-to-seed std of accuracy over the noise subset, std of accuracy across the table)."""
    stds = []
    for key, by_seed in table.data["noise"].items():
        runs = [table.entries[key]] + list(by_seed.values()) if key in table.entries else list(by_seed.values())
        accs = [Entry([], r["val"], r["test"], r["params"], r["cpu_s"]).accuracy for r in runs]
        if len(accs) > 1:
            stds.append(statistics.stdev(accs))
    across = [e.accuracy for e in table.all_entries()]
    return (statistics.mean(stds) if stds else float("nan"),
            statistics.stdev(across) if len(across) > 1 else float("nan"))


def verify(table: QualityTable, count: int, seed: int = 0) -> float:
    """Retrain ``count`` random entries now; the largest |difference| in validation accuracy."""
    keys = random.Random(seed).sample(sorted(table.entries), min(count, len(table.entries)))
    worst = 0.0
    for key in keys:
        fresh = train_entry([int(t) for t in key.split(",")])
        worst = max(worst, max(abs(a - b) for a, b in zip(fresh["val"], table.entries[key]["val"], strict=True)))
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_table", description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="train every missing entry (resumable)")
    parser.add_argument("--fresh", action="store_true", help="with --rebuild: discard the existing table")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--verify", type=int, default=0, metavar="N", help="retrain N entries and compare")
    parser.add_argument("--path", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    table = rebuild(args.path, args.workers, args.fresh) if args.rebuild else QualityTable.load(args.path)
    n, size = len(table.entries), table.space.size()
    print(f"{args.path}: {n}/{size} architectures")
    if n:
        seed_std, across = noise_summary(table)
        best = max(table.all_entries(), key=lambda e: e.accuracy)
        print(f"best accuracy {best.accuracy:.4f} ({best.tokens}); std across table {across:.4f}; "
              f"seed-to-seed std {seed_std:.4f}")
    if args.verify:
        print(f"retrained {args.verify}: max |val accuracy difference| = {verify(table, args.verify):.6f}")


if __name__ == "__main__":
    main()
