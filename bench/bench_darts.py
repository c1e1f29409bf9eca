"""DARTS on several gloo workers: steps per second and time to the same loss with 1 and 2 workers, and skip-edge collapse.

Scaling: the same second-order DARTS search on the bundled digits (fixed global
batch, so 2 workers each compute half of it) runs as ``python -m nas_trainer``
with ``darts.workers`` 1 and 2, every variant once per seed, alternating. Steps
per second leave out each run's first epoch (warm-up); mean and standard
deviation over the timed epochs of all runs show the noise of a shared machine.
Time to the same loss: the target is the 1-worker runs' training loss averaged
over one epoch's steps (mean over seeds, epoch K = half the run); each run's
training seconds and images until its first epoch at or below it are reported
per variant as mean ± sd over seeds, and a difference smaller than the two
standard deviations summed is reported as none. One worker with two
micro-batches computes the same weights as two workers (the equivalence test in
tests/trainer/test_darts_distributed.py), so they need the same images; one
worker on the whole batch is the plain baseline (batch norm over the whole
batch, so a slightly different run).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.table import bench_main, format_table

VARIANTS = ((1, 1), (1, 2), (2, 1))
"""(workers, micro-batches per worker): one worker whole, one worker computing what two do, two workers."""
STEPS_PER_EPOCH = 4
"""Steps per epoch: an epoch's mean training loss is the loss smoothed over this many steps."""


def scaling_doc(quick: bool, workers: int, accumulate: int = 1, seed: int = 0) -> dict[str, Any]:
    batch = 16 if quick else 32
    return {
        "search": "bench", "trial": "darts", "seed": seed, "mode": "darts",
        "spaceType": "enas-micro", "spaceOptions": {"nodes": 2},
        "dataset": {"name": "digits", "maxTrainExamples": STEPS_PER_EPOCH * batch, "validationSize": 4 * batch},
        "training": {"epochs": 3 if quick else 6, "batchSize": batch, "learningRate": 0.025,
                     "nesterov": False, "weightDecay": 3e-4, "learningRateMin": 0.001,
                     "gradClip": 5.0, "threads": 1, "augment": False,
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


@dataclass(frozen=True)
class Reached:
    """When one run's smoothed training loss first got to the target (None: never, within its epochs)."""

    seconds: float | None
    samples: int | None


def time_to_target(epochs: list[dict[str, float]], target: float, samples_per_epoch: int) -> Reached:
    """Training seconds and images seen until the end of the first epoch whose mean training loss is at
    or below ``target`` (epoch resolution: the mean over an epoch is only known at its end)."""
    seconds = 0.0
    for i, e in enumerate(epochs):
        seconds += e["epoch_seconds"]
        if e["train_loss"] <= target:
            return Reached(seconds, (i + 1) * samples_per_epoch)
    return Reached(None, None)


def verdict(values: list[float], base: list[float]) -> str:
    """Against the baseline: a difference of means within the summed standard deviations is none."""
    if not values or not base:
        return "n/a"
    diff = statistics.mean(values) - statistics.mean(base)
    noise = sum(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (values, base))
    if abs(diff) <= noise:
        return f"no difference (|{diff:+.3g}| <= noise {noise:.2g})"
    return f"{'more' if diff > 0 else 'less'} ({diff:+.3g}, noise {noise:.2g})"


def scaling(quick: bool) -> str:
    seeds = [0] if quick else [0, 1, 2]
    load_before = os.getloadavg()[0]
    runs: dict[tuple[int, int], list[list[dict[str, float]]]] = {v: [] for v in VARIANTS}
    for seed in seeds:  # alternating, so a change of load hits every variant alike
        for workers, accumulate in VARIANTS:
            runs[workers, accumulate].append(run_trainer(scaling_doc(quick, workers, accumulate, seed)))
    load_after = os.getloadavg()[0]
    doc = scaling_doc(quick, 1)
    batch, n_epochs = doc["training"]["batchSize"], doc["training"]["epochs"]
    rates = {v: [e["steps_per_second"] for run in runs[v] for e in run[1:]] for v in VARIANTS}
    base = statistics.mean(rates[VARIANTS[0]])
    rate_rows = [
        [w, a, batch // (w * a), _mean_sd(rates[w, a]), len(rates[w, a]),
         f"{statistics.mean(rates[w, a]) / base:.2f}",
         " / ".join(f"{run[-1]['train_loss']:.6f}" for run in runs[w, a])]
        for w, a in VARIANTS
    ]
    # the target: the 1-worker runs' mean training loss over the steps of epoch K, averaged over seeds
    k = max(n_epochs // 2 - 1, 0)
    target = statistics.mean(run[k]["train_loss"] for run in runs[VARIANTS[0]])
    reached = {v: [time_to_target(run, target, STEPS_PER_EPOCH * batch) for run in runs[v]] for v in VARIANTS}
    secs = {v: [r.seconds for r in reached[v] if r.seconds is not None] for v in VARIANTS}
    samples = {v: [float(r.samples) for r in reached[v] if r.samples is not None] for v in VARIANTS}
    target_rows = [
        [w, a, f"{len(secs[w, a])} of {len(seeds)}",
         _mean_sd(secs[w, a]) if secs[w, a] else "-", verdict(secs[w, a], secs[VARIANTS[0]]),
         _mean_sd(samples[w, a]) if samples[w, a] else "-", verdict(samples[w, a], samples[VARIANTS[0]])]
        for w, a in VARIANTS
    ]
    head = (f"Second-order DARTS on digits (8x8), nodes {doc['spaceOptions']['nodes']}, "
            f"filters {doc['training']['model']['filters']}, global batch {batch}, {STEPS_PER_EPOCH} steps "
            f"per epoch, {n_epochs} epochs, seeds {seeds} (each seed runs every variant, alternating), gloo on "
            f"CPU, 1 thread per worker, on a machine of {os.cpu_count()} CPUs shared with other work "
            f"(1-minute load {load_before:.1f} before, {load_after:.1f} after: wall times are inflated and "
            f"noisy). Steps/s leave out each run's first epoch (warm-up).\n\n")
    loss_head = (
        f"\n\nTime to the same supernet training loss: the target is {target:.4f}, the mean over seeds of "
        f"the 1-worker runs' training loss averaged over the {STEPS_PER_EPOCH} steps of epoch {k} "
        f"(of 0..{n_epochs - 1}). A run reaches it at the end of the first epoch whose mean training loss is "
        "at or below it (epoch resolution); seconds are training seconds (the epochs' step loops: process "
        "start, the gloo rendezvous and the final evaluation are left out); images are training images "
        "seen. Mean ± sd over the seeds that reached it; a difference to 1 worker is called one only "
        "where it exceeds the two standard deviations summed. With the global batch fixed, 1 worker x 2 "
        "micro-batches and 2 workers compute the same weights (tests/trainer/test_darts_distributed.py), "
        "so they need the same images and differ only in speed; 1 worker on the whole batch takes batch-norm "
        f"statistics over {batch} images, not {batch // 2}, so its loss path differs slightly.\n\n")
    return head + format_table(
        ["workers", "micro-batches", "images per micro-batch", "steps/s (mean ± sd)", "timed epochs",
         "speed-up", "last train loss per seed"],
        rate_rows,
    ) + loss_head + format_table(
        ["workers", "micro-batches", "seeds reaching target", "training s to target (mean ± sd)",
         "s against 1 worker", "images to target (mean ± sd)", "images against 1 worker"],
        target_rows,
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
    return "### Steps per second and time to the same loss, 1 and 2 gloo workers\n\n" + scaling(quick) + (
        "\n\n### Skip edges of the derived cell per epoch\n\n" + collapse(quick)
    )


if __name__ == "__main__":
    bench_main(run, __doc__.split("\n")[0])
