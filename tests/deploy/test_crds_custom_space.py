"""What the NASSearch CRD itself says about a custom space: the decisions are a non-empty
list of named decisions (unique names: a list-map keyed on the name), so ``kubectl apply``
refuses the plainest mistakes before the operator reads the spec."""

from __future__ import annotations

import copy

import pytest

from nas_operator.api import SpecError, parse_search
from tests.support.crds import errors_of, load_crd, schema_of

DOC = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch", "metadata": {"name": "mine"},
       "spec": {"searchSpace": {"type": "custom", "options": {"decisions": [
           {"name": "stem", "choices": [16, 32]},
           {"name": "stage", "repeat": 2, "decisions": [
               {"name": "kernel", "choices": [3, 5]},
               {"name": "inputs", "inputs": {"maxInputs": 1}},
               {"name": "dilation", "choices": [1, 2], "when": {"kernel": [3]}}]}]}}}}


def test_a_custom_search_validates_against_the_crd_and_the_models() -> None:
    assert errors_of("NASSearch", DOC) == []
    parse_search(DOC)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda o: o.update(decisions=[]), "spec.searchSpace.options.decisions"),
    (lambda o: o["decisions"][0].pop("name"), "spec.searchSpace.options.decisions[0]"),
    (lambda o: o["decisions"][0].update(name="2x"), "spec.searchSpace.options.decisions[0].name"),
    (lambda o: o["decisions"][1].update(repeat=0), "spec.searchSpace.options.decisions[1].repeat"),
    (lambda o: o["decisions"][1]["decisions"][0].update(name="a b"),
     "spec.searchSpace.options.decisions[1].decisions[0].name"),
])
def test_the_crd_names_the_field_of_a_bad_custom_space(edit, field: str) -> None:
    doc = copy.deepcopy(DOC)
    edit(doc["spec"]["searchSpace"]["options"])
    errors = errors_of("NASSearch", doc)
    assert errors and any(e.startswith(field) for e in errors), errors
    with pytest.raises(SpecError):
        parse_search(doc)


def test_names_are_unique_by_the_api_server_and_a_custom_space_needs_decisions() -> None:
    space = schema_of(load_crd("kubenas.dev_nassearches.yaml"))["properties"]["spec"][
        "properties"]["searchSpace"]
    decisions = space["properties"]["options"]["properties"]["decisions"]
    assert decisions["x-kubernetes-list-type"] == "map"
    assert decisions["x-kubernetes-list-map-keys"] == ["name"]
    assert decisions["items"]["properties"]["decisions"]["x-kubernetes-list-map-keys"] == ["name"]
    rules = [r["rule"] for r in space["x-kubernetes-validations"]]
    assert "self.type != 'custom' || (has(self.options) && has(self.options.decisions))" in rules
    assert "custom" in space["properties"]["type"]["enum"]
