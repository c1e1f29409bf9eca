"""Asynchronous successive halving (ASHA), with Hyperband brackets as an option.

Rungs lie at ``minEpochs * eta**k`` epochs (k = 0, 1, ...), below the trial's own
epoch budget (a trial at its last epoch ends anyway). When a trial reaches a rung it
is compared, by its score at that epoch, with every trial of its bracket that has
reached the rung so far: it continues while fewer than ``n / eta`` of those ``n``
trials (itself included) are strictly better, i.e. while it is in the top 1/eta;
otherwise it stops there. Ties favour continuing, and the first trial at a rung always
continues: ASHA never waits for a rung to fill.

Hyperband (``brackets`` > 1): trial ``i`` is in bracket ``i % brackets`` and bracket ``b``
starts its rungs at ``minEpochs * eta**b``, so later brackets stop fewer trials and stop
them later; trials are compared within their bracket only. Round-robin, not random,
so the bracket of a trial follows from its index alone (restart-exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller_policy.early_stopping.base import Curve, Decision


def rungs(min_epochs: int, eta: int, budget: int, bracket: int = 0) -> list[int]:
    """Rung epochs of ``bracket`` for a trial of ``budget`` epochs, in order."""
    out, epoch = [], min_epochs * eta**bracket
    while epoch < budget:
        out.append(epoch)
        epoch *= eta
    return out


@dataclass(frozen=True, slots=True)
class HalvingRule:
    min_epochs: int = 1
    eta: int = 3
    brackets: int = 1
    name: str = "successive-halving"

    def bracket(self, index: int) -> int:
        return index % self.brackets

    def decide(self, trial: Curve, others: Sequence[Curve], budget: int) -> Decision | None:
        epoch = trial.epochs
        bracket = self.bracket(trial.index)
        if epoch not in rungs(self.min_epochs, self.eta, budget, bracket):
            return None
        mine = trial.scores[epoch - 1]
        peers = [c.scores[epoch - 1] for c in others
                 if c.index != trial.index and c.epochs >= epoch and self.bracket(c.index) == bracket]
        reached = len(peers) + 1
        better = sum(1 for s in peers if s > mine)
        where = f"rung {epoch}" + (f" of bracket {bracket}" if self.brackets > 1 else "")
        if better * self.eta < reached:
            return Decision(False, self.name, epoch,
                            f"promoted at {where}: {better} of {reached} trials there are better")
        return Decision(True, self.name, epoch,
                        f"not in the top 1/{self.eta} at {where}: {better} of {reached} trials "
                        f"there are better than {mine:.6g}")
