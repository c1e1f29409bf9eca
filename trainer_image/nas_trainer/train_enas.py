"""Mode ``enas``: one trial runs a whole weight-sharing search (docs/papers.md §4).

The supernet and the controller live in this one process; see
``nas_trainer.enas.search`` for the alternating loop and the derivation. The
final report carries the derived architecture and its shared-weight metrics.
"""

from __future__ import annotations

import os

from nas_trainer.enas.search import EnasSearch
from nas_trainer.epochs import TrainResult, TrialContext


def run_enas(ctx: TrialContext) -> TrainResult:
    """Run the ENAS search of ``ctx.doc`` (mode 'enas') and return the derived architecture."""
    workers = ctx.doc.enas.workers if ctx.doc.enas else 1
    if workers > 1 or "WORLD_SIZE" in os.environ:  # one child per worker per step (nas_trainer.darts.enas_workers)
        from nas_trainer.darts.enas_workers import WorkerEnasSearch
        from nas_trainer.darts.workers import run_on_workers

        return run_on_workers(ctx, workers, "ENAS", lambda c, coll: WorkerEnasSearch(c, coll).run())
    return EnasSearch(ctx).run()
