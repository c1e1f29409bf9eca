"""Cross-field checks of ``spec.earlyStopping`` (the settings model is
``controller_policy.early_stopping.EarlyStopping``, shared with the benchmark).

Why here: whether a rule can act at all depends on other parts of the spec (the
strategy, the trial's epochs), which the settings model alone does not see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller_policy.early_stopping import HalvingRule, rungs
from controller_policy.strategies.registry import is_weight_sharing

if TYPE_CHECKING:
    from nas_operator.api.resources import NASSearchSpec


def early_stopping_problems(spec: NASSearchSpec) -> list[str]:
    """One ``spec.earlyStopping...: ...`` line per problem (none without earlyStopping)."""
    es = spec.earlyStopping
    if es is None:
        return []
    if is_weight_sharing(spec.strategy.type):
        return [f"spec.earlyStopping: strategy.type {spec.strategy.type!r} runs the whole search "
                "in one trainer; there are no trials to stop early. Remove spec.earlyStopping"]
    epochs = spec.trial.training.epochs
    if es.minEpochs >= epochs:
        return [f"spec.earlyStopping.minEpochs ({es.minEpochs}) must be below "
                f"spec.trial.training.epochs ({epochs}): a trial at its last epoch ends anyway, "
                "so nothing would ever be stopped"]
    rule = es.rule()
    if isinstance(rule, HalvingRule) and es.brackets > 1 and not rungs(
            es.minEpochs, es.reductionFactor, epochs, es.brackets - 1):
        return [f"spec.earlyStopping.brackets ({es.brackets}): bracket {es.brackets - 1} would "
                f"start at epoch {es.minEpochs * es.reductionFactor ** (es.brackets - 1)}, not "
                f"below spec.trial.training.epochs ({epochs}); use fewer brackets"]
    return []
