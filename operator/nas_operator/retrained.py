"""Two kinds of score, told apart wherever a result is shown.

A multi-trial search scores each architecture by training it on its own. A weight-sharing
search (ENAS) scores its derived architecture through the supernet's shared weights: a
ranking signal that is usually far below what the same cell reaches when trained alone
(docs/papers.md §4). ``finalTraining`` retrains the chosen architectures standalone; this
module pairs each retraining with the search trial it retrains, so ``best.json``,
``kubenas show``, the progress output and the NASSearch status can print both, labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from controller_policy.strategies.registry import is_weight_sharing
from nas_operator.api import TrialResult

ScoredBy = Literal["supernet", "training"]

SCORE_LABEL: dict[str, str] = {
    "supernet": "supernet score (shared weights, not trained alone)",
    "training": "trained score",
}


def scored_by(strategy_type: str) -> ScoredBy:
    """How the search stage's rewards were measured for this strategy."""
    return "supernet" if is_weight_sharing(strategy_type) else "training"


def retrained_of(search_results: Sequence[TrialResult], final: TrialResult) -> str | None:
    """The search trial a final run retrains: the first search result with its tokens."""
    for result in search_results:
        if list(result.tokens) == list(final.tokens):
            return result.trial
    return None


def with_retrains(search_results: Sequence[TrialResult], final: TrialResult) -> TrialResult:
    """A final run's status entry: measured by training, naming the trial it retrains."""
    return final.model_copy(update={"scoredBy": "training",
                                    "retrains": retrained_of(search_results, final)})


def retrained_entries(search_results: Sequence[TrialResult],
                      final_results: Sequence[TrialResult]) -> list[dict[str, Any]]:
    """best.json's ``retrained`` list: each standalone retraining and what it retrains."""
    return [{"trial": f.trial, "retrains": retrained_of(search_results, f), "reward": f.reward,
             "metrics": dict(f.metrics)} for f in final_results]
