"""The one contract every early-stopping rule keeps, and the data it decides on.

Why a contract of its own: the loop (operator and local runner) and the benchmark's
replay of learning curves must take the same decision from the same curves, so a
rule is a pure function of per-epoch metric histories, with no clock, no randomness
and no memory of its own. Given the same curves it answers the same, which is what
makes a restarted loop decide exactly as the first one did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Curve:
    """One trial's history of the objective's metric, one value per epoch reached.

    ``scores`` are oriented so that higher is better (a lower-is-better metric such as
    perplexity is given negated; see ``oriented``)."""

    index: int
    """The trial's index in its search: its Hyperband bracket and the tie order."""
    scores: tuple[float, ...]
    completed: bool = False
    """Whether the trial ran all its epochs and succeeded (the median rule's peers)."""

    @property
    def epochs(self) -> int:
        return len(self.scores)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a rule said about a trial at one epoch."""

    stop: bool
    rule: str
    epoch: int
    reason: str


class Rule(Protocol):
    """``decide`` is called each time ``trial`` reports an epoch (``trial.epochs`` is that
    epoch, 1-based); ``others`` are the other trials of the search as they stand now
    (running, completed or stopped); ``budget`` is the epochs ``trial`` would run in all.
    None: this epoch is no decision point for the rule (nothing to record)."""

    name: str

    def decide(self, trial: Curve, others: Sequence[Curve], budget: int) -> Decision | None: ...


LOWER_IS_BETTER = frozenset({"val_perplexity"})


def oriented(metric: str, values: Sequence[float]) -> tuple[float, ...]:
    """``values`` of ``metric`` as scores where higher is better."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return tuple(sign * float(v) for v in values)


def shown(metric: str, score: float) -> float:
    """A score back in the metric's own units (for reasons a user reads)."""
    return -score if metric in LOWER_IS_BETTER else score
