"""Process-wide settings of the long-running commands (``kubenas operator``, ``kubenas run``).

Why: CPython's cyclic garbage collector runs a young collection every 700
allocations and, now and then, a full one that walks every object alive. After
importing torch, pydantic and the models that is some 200,000 objects: about
200 ms on the shared 2-core test machine, a pause every report and launch waiting
at that moment sits behind (``bench/bench_loop.py``: it was most of the report ->
launch p99). The startup objects live as long as the process, so they are frozen
out of the collector's reach, and collections are made rarer: a search allocates
little garbage in cycles, and what it has is still collected, later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 20, 1_000)
"""Young-generation allocations, and collections of each generation before the next one
up is collected (CPython's default: 700, 10, 10)."""


def tune_garbage_collector() -> None:
    """Collect once, freeze every object alive now, and make collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
