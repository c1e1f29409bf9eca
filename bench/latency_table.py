"""CPU latency of every child of the Fashion-MNIST table, measured once and kept beside it.

The multi-objective benchmark (``bench.bench_pareto``) needs a latency per
architecture that a search can trade accuracy against. The table's own
``latency_ms`` column is batch 1, where Python overhead hides most of the
difference between a 1x1 and a 7x7 child. Here every one of the 512 children is
built with the trainer's model builder (``nas_trainer.models.build_model``, what
``nas_trainer.child`` calls), put in eval mode, and a forward pass of
``BATCH`` images of the table's input size is timed on one CPU thread: ``WARMUP``
untimed passes, then the median of ``RUNS`` timed ones. The clock is the thread's
CPU time (``time.thread_time``), not the wall: on a machine shared by many
processes the wall clock mostly measures how long this one waited for a core
(a first build with the wall clock, under a load average of 5 to 8 on 2 cores,
gave passes that ordered the architectures with a Spearman rho of 0.15), while
the thread's CPU time still feels other processes only through shared caches
and cores. The architectures are
visited in a shuffled order (seed 0) so that a change of machine load during the
build spreads over the space instead of biasing one corner of it.

Noise: the space is timed in ``PASSES`` passes, each in its own shuffled order,
and the stored latency is the median over the passes; ``noise()`` gives the mean,
over architectures, of the relative standard deviation across passes (the noise
of one pass). The machine this runs on is usually shared: the header records the
load average before and after each pass, and the figures should be read with
that noise.

    python -m bench.latency_table [--out PATH]   # about a CPU-minute per pass
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fashion_table import TASK, task_space
from bench.machine import cpu_model, git_commit
from bench.quality_table import all_token_lists, key_of

LATENCY_PATH = Path(__file__).resolve().parent / "data" / "fashion_zoph2x16_latency.json"
BATCH = 64
"""Images per timed forward pass: the trainer's evaluation batch is of this order, and at this
size the convolutions, not the interpreter, set the time."""
WARMUP = 3
RUNS = 15
PASSES = 2
INPUT_SHAPE = (1, TASK["dataset"]["imageSize"], TASK["dataset"]["imageSize"])
NUM_CLASSES = 10


def time_forward(tokens: Sequence[int], batch: int = BATCH, warmup: int = WARMUP, runs: int = RUNS) -> float:
    """Median thread-CPU milliseconds of one eval-mode forward pass of ``batch`` images, 1 thread."""
    import torch

    from nas_trainer.models import build_model

    torch.set_num_threads(1)
    model = build_model(task_space().architecture(list(tokens)), None, input_shape=INPUT_SHAPE,
                        num_classes=NUM_CLASSES, space_options=TASK["spaceOptions"]).eval()
    x = torch.randn(batch, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            started = time.thread_time()
            model(x)
            if i >= warmup:
                times.append(time.thread_time() - started)
    return statistics.median(times) * 1000


def build(out: Path = LATENCY_PATH, limit: int | None = None, passes: int = PASSES) -> dict[str, Any]:
    """Time every architecture (or the first ``limit`` of the space) once per pass, each pass in
    its own shuffled order; keep every pass and their median."""
    import torch

    every = list(all_token_lists(task_space()))[:limit]
    started, cpu = time.perf_counter(), time.process_time()
    runs: dict[str, list[float]] = {key_of(t): [] for t in every}
    loads = []
    for n in range(passes):
        order = list(every)
        random.Random(n).shuffle(order)
        before = os.getloadavg()[0]
        for t in order:
            runs[key_of(t)].append(round(time_forward(t), 4))
        loads.append([round(before, 2), round(os.getloadavg()[0], 2)])
    data = {
        "task": TASK,
        "measure": {"batch": BATCH, "warmup": WARMUP, "runs": RUNS, "threads": 1, "passes": passes,
                    "statistic": "median over passes of the median of the runs",
                    "input_shape": list(INPUT_SHAPE), "mode": "eval, torch.inference_mode",
                    "clock": "time.thread_time"},
        "built_with": {"torch": torch.__version__, "commit": git_commit(), "cpu": cpu_model(),
                       "cores": os.cpu_count(), "load_per_pass": loads,
                       "wall_s": round(time.perf_counter() - started, 1),
                       "cpu_s": round(time.process_time() - cpu, 1)},
        "latency_ms": {k: round(statistics.median(v), 4) for k, v in sorted(runs.items())},
        "passes_ms": dict(sorted(runs.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    os.replace(tmp, out)
    return data


@dataclass(frozen=True)
class LatencyTable:
    """Latency (ms) by token key, with the build's facts."""

    latency_ms: dict[str, float]
    passes_ms: dict[str, list[float]]
    measure: dict[str, Any]
    built_with: dict[str, Any]

    @classmethod
    def load(cls, path: Path = LATENCY_PATH) -> LatencyTable:
        if not path.exists():
            raise SystemExit(f"{path}: no latency table; build it with python -m bench.latency_table")
        data = json.loads(path.read_text())
        if data.get("task") != TASK:
            raise ValueError(f"{path}: measured for another task than bench.fashion_table.TASK; rebuild it "
                             "with python -m bench.latency_table")
        return cls(data["latency_ms"], data["passes_ms"], data["measure"], data["built_with"])

    def get(self, tokens: Sequence[int]) -> float:
        return self.latency_ms[key_of(tokens)]

    def noise(self) -> float:
        """Mean over architectures of the relative standard deviation across passes: the noise
        of one pass's figure (the stored median of the passes is less noisy)."""
        rel = [statistics.stdev(v) / statistics.mean(v) for v in self.passes_ms.values() if len(v) > 1]
        return statistics.mean(rel) if rel else float("nan")

    def pass_agreement(self) -> float:
        """Spearman rank correlation between the first two passes: whether one pass orders the
        architectures as the next one does (1 = the same order)."""
        from scipy.stats import spearmanr

        pairs = [v for v in self.passes_ms.values() if len(v) > 1]
        return float(spearmanr([v[0] for v in pairs], [v[1] for v in pairs])[0]) if len(pairs) > 2 else float("nan")

    def describe(self) -> str:
        """One sentence for a report: what was measured, where, at what cost and noise."""
        m, b = self.measure, self.built_with
        values = sorted(self.latency_ms.values())
        return (f"Latency: eval forward of a batch of {m['batch']} images {m['input_shape']}, 1 thread, "
                f"{'thread CPU time' if m.get('clock') == 'time.thread_time' else 'wall clock'}, median "
                f"of {m['runs']} after {m['warmup']} warm-up passes, each of the {len(values)} children built "
                f"with nas_trainer.models.build_model on {b['cpu']} ({b['cores']} cores, shared: 1-minute "
                f"load average {', '.join(f'{x}->{y}' for x, y in b['load_per_pass'])} over the "
                f"{m['passes']} passes), median of the passes; min / median / max {values[0]:.2f} / "
                f"{statistics.median(values):.2f} / {values[-1]:.2f} ms; one pass's relative noise "
                f"{self.noise():.0%} (std across passes, mean over architectures), rank agreement of "
                f"two passes (Spearman) {self.pass_agreement():.2f}; build "
                f"{b['wall_s']:.0f} s wall, {b['cpu_s']:.0f} CPU-s (python -m bench.latency_table).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_table", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=LATENCY_PATH)
    parser.add_argument("--limit", type=int, default=None, help="time only the first N architectures (a trial)")
    args = parser.parse_args(argv)
    build(args.out, args.limit)
    if args.limit is None:
        print(LatencyTable.load(args.out).describe())
    else:
        print(f"wrote {args.out} ({args.limit} architectures)")


if __name__ == "__main__":
    main()
