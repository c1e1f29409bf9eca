"""The NASSearch CRD validates the multi-objective objective form: the schema refuses what
kubectl apply must refuse (no direction, a target <= 0, a malformed metric name, one
objective), naming the field; the metric names the built-in trainer reports are a CEL rule
(no CEL engine runs here: the rule is checked to name them, the operator refuses the same)."""

from __future__ import annotations

import copy

import pytest

from controller_policy.multi_objective import BUILTIN_METRICS
from nas_operator.api import SpecError, parse_search
from tests.support.crds import MINIMAL, errors_of, load_crd, schema_of

ACC = {"metric": "val_accuracy", "direction": "maximize"}
LAT = {"metric": "latency_ms", "direction": "minimize", "target": 5}


def with_objective(objective):
    doc = copy.deepcopy(MINIMAL)
    doc["spec"]["objective"] = objective
    doc["spec"]["strategy"] = {"type": "evolution"}
    return doc


def test_the_multi_objective_form_validates():
    doc = with_objective({"objectives": [ACC, LAT],
                          "scalarization": {"type": "mnasnet", "w": -0.07},
                          "referencePoint": {"latency_ms": 12}})
    assert errors_of("NASSearch", doc) == []
    parse_search(doc)


@pytest.mark.parametrize(("objective", "field"), [
    ({"objectives": [ACC, {"metric": "latency_ms", "target": 5}]}, "spec.objective.objectives[1]"),
    ({"objectives": [ACC, {**LAT, "target": 0}]}, "spec.objective.objectives[1].target"),
    ({"objectives": [ACC, {**LAT, "target": -1}]}, "spec.objective.objectives[1].target"),
    ({"objectives": [ACC, {**LAT, "direction": "lower"}]},
     "spec.objective.objectives[1].direction"),
    ({"objectives": [ACC, {**LAT, "metric": "latency ms"}]},
     "spec.objective.objectives[1].metric"),
    ({"objectives": [ACC]}, "spec.objective.objectives"),
    ({"objectives": [ACC, LAT], "scalarization": {"type": "pareto"}},
     "spec.objective.scalarization.type"),
    ({"objectives": [ACC, LAT], "scalarization": {"w": 0.3}}, "spec.objective.scalarization.w"),
    ({"objectives": [ACC, {**LAT, "goal": 3}]}, "spec.objective.objectives[1]"),
])
def test_bad_objective_forms_are_refused_by_the_crd_and_the_operator(objective, field):
    doc = with_objective(objective)
    errors = errors_of("NASSearch", doc)
    assert errors and any(e.startswith(field) for e in errors), errors
    with pytest.raises(SpecError) as err:
        parse_search(doc)
    assert any(e.startswith(field) for e in err.value.errors), err.value.errors


def test_unknown_metrics_of_the_built_in_trainer_are_a_cel_rule_naming_the_field():
    spec = schema_of(load_crd("kubenas.dev_nassearches.yaml"))["properties"]["spec"]
    [rule] = [r for r in spec["x-kubernetes-validations"]
              if r.get("fieldPath") == ".objective.objectives"]
    assert rule["message"].startswith("spec.objective.objectives[].metric")
    for name in BUILTIN_METRICS:
        assert f"'{name}'" in rule["rule"]
    assert "self.trial.image" in rule["rule"]  # a user's own trainer may report any name
    doc = with_objective({"objectives": [ACC, {**LAT, "metric": "energy"}]})
    with pytest.raises(SpecError, match=r"objectives\[1\]\.metric: 'energy' is not reported"):
        parse_search(doc)
    doc["spec"]["trial"]["image"] = "registry.example/me/trainer:1"
    parse_search(doc)
