"""``spec.earlyStopping`` of a NASSearch: which rule stops weak trials, and with what.

Pure pydantic on the project's strict base, so the operator's spec, the local runner
and the benchmark read the same settings and build the same rule from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller_policy.early_stopping.asha import HalvingRule
from controller_policy.early_stopping.base import Rule
from controller_policy.early_stopping.median import MedianRule
from controller_policy.strict import Strict

RuleType = Literal["median", "successive-halving"]
StoppedReward = Literal["partial", "exclude"]


class EarlyStopping(Strict):
    """``spec.earlyStopping``: stop trials whose per-epoch objective metric lags behind."""

    type: RuleType = Field(
        description="median: stop a trial whose best so far is below the median of completed "
        "trials' running averages at the same epoch; successive-halving: asynchronous "
        "successive halving (ASHA), a trial continues past a rung only in the top 1/eta."
    )
    minEpochs: int = Field(
        default=1, ge=1, le=1000,
        description="No trial is stopped before this epoch (successive-halving: the first rung).",
    )  # fmt: skip
    minTrials: int = Field(
        default=3, ge=1, le=10000,
        description="median: completed trials needed at an epoch before it stops anything.",
    )  # fmt: skip
    reductionFactor: int = Field(
        default=3, ge=2, le=100,
        description="successive-halving: eta; rungs at minEpochs * eta^k, top 1/eta promoted.",
    )  # fmt: skip
    brackets: int = Field(
        default=1, ge=1, le=10,
        description="successive-halving: Hyperband brackets; trial i is in bracket i % brackets, "
        "whose first rung is minEpochs * eta^bracket.",
    )  # fmt: skip
    stoppedReward: StoppedReward = Field(
        default="partial",
        description="partial: the strategy is told the objective on the epochs a stopped trial "
        "reached; exclude: the strategy is not told stopped trials.",
    )

    def rule(self) -> Rule:
        """The rule these settings describe."""
        if self.type == "median":
            return MedianRule(min_epochs=self.minEpochs, min_trials=self.minTrials)
        return HalvingRule(min_epochs=self.minEpochs, eta=self.reductionFactor,
                           brackets=self.brackets)  # fmt: skip
