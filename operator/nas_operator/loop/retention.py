"""Retention: which per-trial objects of finished trials a driver may delete.

Pure selection over the ledger, so the rule is testable without an API server; the
deleting is the driver's (``kube/retention.py`` for NASTrials). A trial qualifies only
when the ledger has compacted it (finished, its result told to the strategy) and a
checkpoint holding it has been saved (``covered``): the ledger is the record, the object
a view of it. Kept are the ``keep_best`` best rewards and the ``keep_recent`` highest
indices among the objects that still exist, and every final-training trial. Since
every object of the ``keep_best`` best is kept, the best among the objects left is the
search's best whatever was deleted before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nas_operator.ledger import FinishedTrial, Ledger


@dataclass(frozen=True, slots=True)
class Retained:
    """A finished search trial whose object exists."""

    name: str
    index: int
    reward: float | None


def finished_objects(ledger: Ledger, present: Iterable[str]) -> list[Retained]:
    """The search-stage trials among ``present`` that the ledger has compacted."""
    found: list[Retained] = []
    for name in present:
        parsed = ledger.parse(name)
        if parsed is None or parsed[0] != "search":
            continue
        rec = ledger.get(name)
        if isinstance(rec, FinishedTrial):
            found.append(Retained(name, parsed[1], rec.reward))
    return found


def to_delete(ledger: Ledger, present: Iterable[str], keep_best: int, keep_recent: int) -> list[str]:
    """Names among ``present`` whose objects retention lets go, in index order."""
    finished = finished_objects(ledger, present)
    scored = sorted((f for f in finished if f.reward is not None),
                    key=lambda f: (-f.reward, f.index))  # type: ignore[operator]
    keep = {f.name for f in scored[:keep_best]}
    keep.update(f.name for f in sorted(finished, key=lambda f: -f.index)[:keep_recent])
    return [f.name for f in sorted(finished, key=lambda f: f.index) if f.name not in keep]


def covered(names: Iterable[str], stamps: dict[str, int], compactions: int,
            saved: int) -> list[str]:
    """Those of ``names`` (compacted trials) that a saved checkpoint holds.

    A name seen for the first time is stamped with the ledger's compaction count now
    (``compactions``), an upper bound of when it was compacted; it is covered once the
    latest saved checkpoint's count (``saved``) reaches its stamp. No forced checkpoint:
    the loop's own write-ahead checkpoints cover the trials as they go.
    """
    ready = []
    for name in names:
        if stamps.setdefault(name, compactions) <= saved:
            ready.append(name)
    return ready
