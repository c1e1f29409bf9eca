"""Reward functions of the papers, computed from reported per-epoch metrics."""

import math

import pytest
from pydantic import ValidationError

from controller_policy.objective import Objective, RewardError, compute_reward


def test_cube_of_max_of_last_five_epochs():
    epochs = [{"val_accuracy": a} for a in (0.9, 0.1, 0.5, 0.6, 0.4, 0.3, 0.2)]
    # the 0.9 of epoch 0 is outside the last five epochs
    assert compute_reward(Objective(), epochs) == pytest.approx(0.6**3)


def test_inverse_square_perplexity():
    obj = Objective(metric="val_perplexity", reward="inverse-square", constant=80)
    epochs = [{"val_perplexity": p} for p in (200.0, 100.0, 120.0)]
    assert compute_reward(obj, epochs) == pytest.approx(80 / 100.0**2)


def test_identity_negates_lower_is_better():
    obj = Objective(metric="val_perplexity", reward="identity", lastEpochs=2)
    assert compute_reward(obj, [{"val_perplexity": 50.0}, {"val_perplexity": 70.0}]) == -50.0


def test_missing_or_nonfinite_metric_is_refused():
    with pytest.raises(RewardError, match="val_accuracy"):
        compute_reward(Objective(), [{"train_loss": 1.0}])
    with pytest.raises(RewardError, match="non-finite"):
        compute_reward(Objective(), [{"val_accuracy": math.nan}])


def test_transform_must_fit_metric():
    with pytest.raises(ValidationError, match="needs objective.metric"):
        Objective(metric="val_perplexity", reward="cube")


@pytest.mark.parametrize(("objective", "value", "words"), [
    ({"reward": "cube"}, 1e300, "overflows"),
    ({"reward": "identity", "metric": "val_accuracy"}, float("inf"), "non-finite"),
    ({"reward": "inverse-square", "metric": "val_perplexity", "constant": 1e308}, 1e-10,
     "not finite"),
])
def test_a_reward_is_never_inf_or_nan(objective, value, words):
    """Metrics reach compute_reward checked by the Report model; this is the last guard."""
    metric = objective.get("metric", "val_accuracy")
    with pytest.raises(RewardError, match=words):
        compute_reward(Objective(**objective), [{metric: value}])
