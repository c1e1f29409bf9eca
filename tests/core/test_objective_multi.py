"""The multi-objective form of spec.objective: what it accepts, what it refuses (with the field
named), and the values, rewards and reference point it computes from a trial's metrics."""

from __future__ import annotations

import pytest

from controller_policy.multi_objective import reference_point
from controller_policy.objective import Objective, RewardError, compute_reward, objective_point
from nas_operator.api import SpecError, parse_search

ACC = {"metric": "val_accuracy", "direction": "maximize"}
LAT = {"metric": "latency_ms", "direction": "minimize", "target": 5.0}


def search(objective, **trial):
    spec = {"searchSpace": {"type": "zoph-le-cnn", "options": {"layers": 3}},
            "strategy": {"type": "evolution"}, "objective": objective}
    if trial:
        spec["trial"] = trial
    return parse_search({"metadata": {"name": "mo"}, "spec": spec})


def test_the_multi_objective_form_is_accepted_and_picks_pareto_evolution():
    s = search({"objectives": [ACC, LAT]})
    assert s.spec.objective.multi and s.spec.objective.scalarization is None
    assert s.spec.validated_strategy_config().selection == "pareto"


def test_the_single_objective_form_is_unchanged():
    s = search({"metric": "val_accuracy", "reward": "cube"})
    assert not s.spec.objective.multi
    assert s.spec.validated_strategy_config().selection == "reward"
    assert compute_reward(s.spec.objective, [{"val_accuracy": 0.5}]) == 0.125


@pytest.mark.parametrize(("objective", "trial", "field", "words"), [
    ({"objectives": [ACC, {"metric": "latncy_ms", "direction": "minimize", "target": 5.0}]}, {},
     "spec.objective.objectives[1].metric", "not reported by the built-in trainer"),
    ({"objectives": [ACC, {"metric": "latency_ms", "target": 5.0}]}, {},
     "spec.objective.objectives[1].direction", "Field required"),
    ({"objectives": [ACC, {"metric": "latency_ms", "direction": "down", "target": 5.0}]}, {},
     "spec.objective.objectives[1].direction", "'maximize' or 'minimize'"),
    ({"objectives": [ACC, {**LAT, "target": 0.0}]}, {},
     "spec.objective.objectives[1].target", "greater than 0"),
    ({"objectives": [ACC, {**LAT, "target": -2.0}]}, {},
     "spec.objective.objectives[1].target", "greater than 0"),
    ({"objectives": [ACC, {"metric": "latency_ms", "direction": "minimize"}],
      "scalarization": {"type": "weighted-sum"}}, {},
     "spec.objective.objectives[1].target", "reference"),
    ({"objectives": [ACC]}, {}, "spec.objective.objectives", "at least 2"),
    ({"objectives": [ACC, ACC]}, {}, "spec.objective.objectives[1].metric", "listed twice"),
    ({"objectives": [LAT, ACC]}, {}, "spec.objective.objectives[0]", "list the quality first"),
    ({"objectives": [ACC, LAT], "metric": "val_perplexity"}, {}, "spec.objective.metric",
     "remove metric"),
    ({"objectives": [ACC, LAT], "scalarization": {"type": "mnasnet", "weights": {"x": 1.0}}},
     {}, "spec.objective.scalarization.weights", "only for type weighted-sum"),
    ({"objectives": [ACC, LAT], "scalarization": {"type": "mnasnet-hard", "w": -0.5}}, {},
     "spec.objective.scalarization.w", "only for type mnasnet"),
    ({"objectives": [ACC, LAT], "scalarization": {"w": 0.5}}, {},
     "spec.objective.scalarization.w", "less than or equal to 0"),
    ({"objectives": [ACC, LAT], "referencePoint": {"flops": 1.0}}, {},
     "spec.objective.referencePoint.flops", "not one of the objectives"),
    ({"objectives": [ACC, {"metric": "val accuracy", "direction": "maximize"}],
      "scalarization": {"type": "weighted-sum"}}, {},
     "spec.objective.objectives[1].metric", "String should match"),
    ({"metric": "val_accuracy", "referencePoint": {"val_accuracy": 0.0}}, {},
     "spec.objective.referencePoint", "only with objective.objectives"),
])
def test_bad_objective_forms_are_refused_naming_the_field(objective, trial, field, words):
    with pytest.raises(SpecError) as err:
        search(objective, **trial)
    lines = [e for e in err.value.errors if e.startswith(field)]
    assert lines and any(words in e for e in lines), err.value.errors


def test_a_users_own_trainer_may_optimise_any_metric_it_reports():
    energy = {"metric": "energy_mj", "direction": "minimize", "target": 2.0}
    s = search({"objectives": [ACC, energy]}, image="registry.example/me/trainer:1")
    assert [t.metric for t in s.spec.objective.objectives] == ["val_accuracy", "energy_mj"]


def objective(**extra) -> Objective:
    return Objective.model_validate({"objectives": [ACC, LAT], **extra})


@pytest.mark.parametrize(("extra", "epochs", "final", "reward"), [
    # soft: 0.9 x (10/5)^-0.07, the accuracy the best of the last 5 epochs
    ({}, [{"val_accuracy": 0.7}, {"val_accuracy": 0.9}, {"val_accuracy": 0.8}],
     {"latency_ms": 10.0}, 0.8573741982395436),
    ({"scalarization": {"type": "mnasnet", "w": -1.0}}, [{"val_accuracy": 0.9}],
     {"latency_ms": 10.0}, 0.45),
    ({"scalarization": {"type": "mnasnet-hard"}}, [{"val_accuracy": 0.8}], {"latency_ms": 4.0},
     0.8),
    ({"scalarization": {"type": "mnasnet-hard"}}, [{"val_accuracy": 0.8}], {"latency_ms": 10.0},
     0.4),
    # weighted sum: 1 x 0.9 - 0.5 x 10/5
    ({"scalarization": {"type": "weighted-sum", "weights": {"latency_ms": 0.5}}},
     [{"val_accuracy": 0.9}], {"latency_ms": 10.0}, -0.1),
    # a metric reported per epoch wins over the final one; lastEpochs bounds the window
    ({"lastEpochs": 1}, [{"val_accuracy": 0.95, "latency_ms": 5.0}, {"val_accuracy": 0.6,
                                                                      "latency_ms": 5.0}],
     {"val_accuracy": 0.1, "latency_ms": 99.0}, 0.6),
])
def test_rewards_from_a_trials_metrics(extra, epochs, final, reward):
    assert compute_reward(objective(**extra), epochs, final) == pytest.approx(reward, rel=1e-12)


def test_the_point_is_oriented_and_the_reference_doubles_the_target():
    o = objective()
    assert objective_point(o, [{"val_accuracy": 0.9}], {"latency_ms": 3.0}) == [0.9, -3.0]
    assert reference_point(o.objectives, None) == [0.0, -10.0]
    assert reference_point(o.objectives, {"val_accuracy": 0.5, "latency_ms": 7.0}) == [0.5, -7.0]
    assert objective_point(Objective(), [{"val_accuracy": 0.9}], {}) is None


@pytest.mark.parametrize(("epochs", "final", "words"), [
    ([{"val_accuracy": 0.9}], {}, "no metric 'latency_ms'"),
    ([{"val_accuracy": 0.9}], {"latency_ms": 0.0}, "measure must be a positive"),
    ([{"train_loss": 1.0}], {"latency_ms": 1.0}, "no metric 'val_accuracy'"),
])
def test_a_trial_without_usable_objective_values_has_no_reward(epochs, final, words):
    with pytest.raises(RewardError, match=words):
        compute_reward(objective(), epochs, final)


def test_the_dumped_objective_reads_back():
    """The trainer's document carries the objective with every default written out."""
    o = objective(scalarization={"type": "mnasnet-hard"})
    assert Objective.model_validate(o.model_dump()) == o
    assert Objective.model_validate_json(o.model_dump_json()) == o


def test_the_dumped_single_objective_reads_back():
    o = Objective()
    assert Objective.model_validate(o.model_dump()) == o
