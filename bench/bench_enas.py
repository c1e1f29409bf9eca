"""ENAS-micro search cost: seconds per search epoch and per shared-weight (omega) step.

ENAS epochs on CIFAR-10-shaped synthetic data (3x32x32, 10 classes, a small
subset): omega steps with a freshly sampled child each, then controller
updates scoring children on validation minibatches. The default uses the
reference micro search's shapes (5 nodes, 2 cells per stage, 20 filters,
batch 160, 10 children per controller step) on 640 images, and projects a full
CIFAR-10 search epoch from the per-step costs (45,000 / 160 = 281 omega steps
and 30 controller steps, docs/papers.md §7); ``--quick`` shrinks everything. The
device is picked automatically (CUDA when present). The first epoch includes
warm-up (allocator, cuDNN autotuning), so two epochs are timed.

    python -m bench.bench_enas [--quick] [--device cpu|cuda] [--amp bf16] [--threads N]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from bench.table import format_table
from controller_policy.contract import TrialDocument
from nas_trainer.checkpoint import StopRequest
from nas_trainer.enas.search import EnasSearch
from nas_trainer.epochs import TrialContext
from nas_trainer.reporter import Reporter
from nas_trainer.runtime import setup_runtime

CIFAR_OMEGA_STEPS = 45_000 // 160
"""Omega steps of one reference micro search epoch: 45k training images, batch 160."""
CIFAR_CONTROLLER_STEPS = 30
"""Controller steps of one reference micro search epoch (30 x 10 children)."""


def trial(quick: bool, device: str, amp: str, threads: int | None = None) -> TrialDocument:
    """An ENAS-micro search trial on synthetic CIFAR-shaped data."""
    batch = 32 if quick else 160
    return TrialDocument.model_validate({
        "search": "bench", "trial": "bench-enas", "seed": 0, "mode": "enas",
        "spaceType": "enas-micro", "spaceOptions": {"nodes": 2 if quick else 5},
        "dataset": {"name": "synthetic", "maxTrainExamples": 8 * batch if quick else 4 * batch,
                    "validationSize": 2 * batch},
        "training": {
            "epochs": 2, "batchSize": batch, "learningRate": 0.05,
            "schedule": "sgdr", "learningRateMin": 0.001, "device": device, "amp": amp,
            "threads": threads,
            "model": {"filters": 8 if quick else 20, "cellsPerStage": 1 if quick else 2},
        },
        "enas": {"controllerStepsPerEpoch": 3, "controllerBatch": 5 if quick else 10,
                 "deriveSamples": 5},
    })


def measure(doc: TrialDocument) -> tuple[list[dict[str, Any]], str, int]:
    """Per-epoch timings of one ENAS search (derivation not timed), the device, omega steps."""
    ctx = TrialContext(doc, setup_runtime(doc.training), Reporter(None, None, None, echo_stdout=False),
                       StopRequest())
    search = EnasSearch(ctx)
    rows = []
    for epoch in range(doc.training.epochs):
        metrics = search.run_epoch(epoch)
        search.loop.end_epoch(metrics)
        rows.append(metrics)
    return rows, str(ctx.runtime.device), search.task.steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_enas", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a laptop CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="CUDA only")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 avoids oversubscription on a busy machine)")
    args = parser.parse_args(argv)
    doc = trial(args.quick, args.device, args.amp, args.threads)
    rows, device, steps = measure(doc)
    t, e = doc.training, doc.enas
    assert e is not None
    print(f"ENAS micro search epoch on {device}: {len(rows)} epochs of {steps} omega steps "
          f"(batch {t.batchSize}, {t.model.filters} filters, {t.model.cellsPerStage} cells/stage, "
          f"{doc.spaceOptions['nodes']} nodes) + {e.controllerStepsPerEpoch} x {e.controllerBatch} "
          f"controller samples; synthetic 3x32x32; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print(format_table(
        ["epoch", "s/epoch", "omega s", "s/omega step", "controller s", "s/controller step",
         "train loss"],
        [[i, r["epoch_seconds"], r["omega_seconds"], r["omega_seconds"] / steps,
          r["controller_seconds"], r["controller_seconds"] / e.controllerStepsPerEpoch,
          r["train_loss"]] for i, r in enumerate(rows)],
    ))
    last = rows[-1]
    projected = (CIFAR_OMEGA_STEPS * last["omega_seconds"] / steps
                 + CIFAR_CONTROLLER_STEPS * last["controller_seconds"] / e.controllerStepsPerEpoch)
    print(f"projected full CIFAR-10 search epoch at these shapes ({CIFAR_OMEGA_STEPS} omega steps + "
          f"{CIFAR_CONTROLLER_STEPS} controller steps, from the last epoch): {projected:,.0f} s")

if __name__ == "__main__":
    main()
