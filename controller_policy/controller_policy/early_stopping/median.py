"""Median stopping: a trial whose best so far is below what finished trials averaged.

The rule of Google Vizier, also Katib's only one: at epoch ``e`` (from ``minEpochs`` on,
before the trial's last epoch), compare the trial's best score over epochs 1..e with
the median, over the completed trials that reached ``e``, of each one's mean score over
epochs 1..e. Strictly below: stop. Equal (a tie): continue. Fewer than ``minTrials``
completed peers at that epoch: continue (too little to judge by).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from controller_policy.early_stopping.base import Curve, Decision


@dataclass(frozen=True, slots=True)
class MedianRule:
    min_epochs: int = 1
    min_trials: int = 3
    name: str = "median"

    def decide(self, trial: Curve, others: Sequence[Curve], budget: int) -> Decision | None:
        epoch = trial.epochs
        if epoch < self.min_epochs or epoch >= budget:
            return None
        peers = [c for c in others if c.completed and c.index != trial.index and c.epochs >= epoch]
        if len(peers) < self.min_trials:
            return Decision(False, self.name, epoch,
                            f"{len(peers)} completed trials reached epoch {epoch}, "
                            f"fewer than minTrials {self.min_trials}")  # fmt: skip
        median = statistics.median(sum(c.scores[:epoch]) / epoch for c in peers)
        best = max(trial.scores)
        if best < median:
            return Decision(True, self.name, epoch,
                            f"best {best:.6g} by epoch {epoch} is below the median "
                            f"{median:.6g} of {len(peers)} completed trials' running averages")
        return Decision(False, self.name, epoch,
                        f"best {best:.6g} by epoch {epoch} is not below the median {median:.6g}")
