"""DARTS on several gloo workers: steps per second with 1 and 2 workers, and the skip-edge collapse measure.

Scaling: the same second-order DARTS search (fixed global batch, so 2 workers
each compute half of it) runs as ``python -m nas_trainer`` with
``darts.workers`` 1 and 2 in alternation, several times each; the first epoch
of each run is warm-up and left out. Every figure is the mean and standard
deviation over the timed epochs of all repeats, so the spread shows the noise
of a shared machine. One worker with two micro-batches computes the same
weights as two workers (the equivalence test in tests/trainer/test_darts_distributed.py),
so equal steps mean equal loss there; one worker on the whole batch is the
plain baseline (batch norm over the whole batch, so a slightly different run).

Collapse: one longer first-order search on the bundled digits prints, per epoch,
the derived cell's skip (identity) edges, the measure DARTS+ stops on
(docs/papers.md §8, DARTS).

    python -m bench.bench_darts [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.table import bench_main, format_table

VARIANTS = ((1, 1), (1, 2), (2, 1))
"""(workers, micro-batches per worker): one worker whole, one worker computing what two do, two workers."""


def scaling_doc(quick: bool, workers: int, accumulate: int = 1) -> dict[str, Any]:
    batch = 16 if quick else 32
    return {
        "search": "bench", "trial": "darts", "seed": 0, "mode": "darts",
        "spaceType": "enas-micro", "spaceOptions": {"nodes": 2},
        "dataset": {"name": "synthetic", "maxTrainExamples": (3 if quick else 4) * batch,
                    "validationSize": batch},
        "training": {"epochs": 2 if quick else 3, "batchSize": batch, "learningRate": 0.025,
                     "nesterov": False, "weightDecay": 3e-4, "learningRateMin": 0.001,
                     "gradClip": 5.0, "threads": 1,
                     "model": {"filters": 4, "cellsPerStage": 1}},
        "darts": {"order": "second", "workers": workers, "accumulate": accumulate},
    }


def collapse_doc(quick: bool) -> dict[str, Any]:
    return {
        "search": "bench", "trial": "darts-collapse", "seed": 0, "mode": "darts",
        "spaceType": "enas-micro", "spaceOptions": {"nodes": 3 if quick else 5},
        "dataset": {"name": "digits", "maxTrainExamples": 128 if quick else 768, "validationSize": 256},
        "training": {"epochs": 3 if quick else 12, "batchSize": 32, "learningRate": 0.025,
                     "nesterov": False, "weightDecay": 3e-4, "learningRateMin": 0.001,
                     "gradClip": 5.0, "threads": 1, "augment": False,
                     "model": {"filters": 4 if quick else 8, "cellsPerStage": 1}},
        "darts": {"order": "first"},
    }


def run_trainer(doc: dict[str, Any]) -> list[dict[str, float]]:
    """Every epoch's metrics of one ``python -m nas_trainer`` run of ``doc``."""
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.json"
        trial.write_text(json.dumps(doc))
        env = {**os.environ, "KUBENAS_TERMINATION_FILE": str(Path(tmp) / "term"), "OMP_NUM_THREADS": "1"}
        env.pop("KUBENAS_REPORT_URL", None)
        proc = subprocess.run([sys.executable, "-m", "nas_trainer", "--trial", str(trial)],
                              env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"trainer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    # the epoch reports (stdout without a report URL); the termination message is trimmed to 4 KiB
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [r["metrics"] for r in reports if r["kind"] == "epoch"]


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3g} ± {sd:.2g}"


def scaling(quick: bool) -> str:
    repeats = 1 if quick else 3
    rates: dict[tuple[int, int], list[float]] = {v: [] for v in VARIANTS}
    losses: dict[tuple[int, int], float] = {}
    for _ in range(repeats):
        for workers, accumulate in VARIANTS:
            epochs = run_trainer(scaling_doc(quick, workers, accumulate))
            rates[workers, accumulate] += [e["steps_per_second"] for e in epochs[1:]]
            losses[workers, accumulate] = epochs[-1]["train_loss"]
    doc = scaling_doc(quick, 1)
    base = statistics.mean(rates[VARIANTS[0]])
    rows = [
        [w, a, doc["training"]["batchSize"] // (w * a), _mean_sd(rates[w, a]), len(rates[w, a]),
         f"{statistics.mean(rates[w, a]) / base:.2f}", f"{losses[w, a]:.6f}"]
        for w, a in VARIANTS
    ]
    head = (f"Second-order DARTS, synthetic 3x32x32, nodes {doc['spaceOptions']['nodes']}, "
            f"filters {doc['training']['model']['filters']}, global batch {doc['training']['batchSize']}, "
            f"gloo on CPU, 1 thread per worker, {repeats} alternating repeats on a machine of "
            f"{os.cpu_count()} CPUs.\n\n")
    return head + format_table(
        ["workers", "micro-batches", "images per micro-batch", "steps/s (mean ± sd)", "timed epochs",
         "speed-up", "last train loss"],
        rows,
    )


def collapse(quick: bool) -> str:
    doc = collapse_doc(quick)
    epochs = run_trainer(doc)
    rows = [[i, int(e["normal_skip_edges"]), int(e["reduction_skip_edges"]), f"{e['val_accuracy']:.3f}",
             f"{e['alpha_entropy_normal']:.4f}"] for i, e in enumerate(epochs)]
    head = (f"First-order DARTS on digits, nodes {doc['spaceOptions']['nodes']} "
            f"({2 * doc['spaceOptions']['nodes']} edges per derived cell), "
            f"{doc['training']['epochs']} epochs.\n\n")
    return head + format_table(
        ["epoch", "normal skip edges", "reduction skip edges", "search val acc", "alpha entropy (normal)"], rows
    )


def run(quick: bool) -> str:
    return "### Steps per second, 1 and 2 gloo workers\n\n" + scaling(quick) + (
        "\n\n### Skip edges of the derived cell per epoch\n\n" + collapse(quick)
    )


if __name__ == "__main__":
    bench_main(run, __doc__.split("\n")[0])
