"""Mode ``enas``: one trial runs a whole weight-sharing search (docs/papers.md §4).

The supernet and the controller live in this one process; see
``nas_trainer.enas.search`` for the alternating loop and the derivation. The
final report carries the derived architecture and its shared-weight metrics.
"""

from __future__ import annotations

from nas_trainer.enas.search import EnasSearch
from nas_trainer.loop import TrainResult, TrialContext


def run_enas(ctx: TrialContext) -> TrainResult:
    """Run the ENAS search of ``ctx.doc`` (mode 'enas') and return the derived architecture."""
    return EnasSearch(ctx).run()
