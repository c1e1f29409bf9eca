"""The CRDs: generated from the pydantic models, structural, and strict enough to catch a
broken manifest by the field's name; examples validate against them (docs/testing.md recipe:
jsonschema Draft 4 after translating the Kubernetes extensions, with pruning emulated by
``additionalProperties: false``)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from nas_operator.api import SpecError, parse_search
from nas_operator.kube import crdgen
from tests.support import REPO
from tests.support.crds import (
    CHART_CRDS,
    CRDS,
    FILES,
    MINIMAL,
    errors_of,
    load_crd,
    schema_of,
    to_draft4,
)

# --- generated, committed, copied ----------------------------------------------------------

def test_committed_crds_equal_a_fresh_generation() -> None:
    generated = crdgen.generate()
    assert sorted(generated) == sorted(FILES)
    for name, text in generated.items():
        assert (CRDS / name).read_text() == text, f"crds/{name} is stale: run make crds"
        assert (CHART_CRDS / name).read_bytes() == (CRDS / name).read_bytes(), (
            f"helm/kubenas/crds/{name} differs from crds/{name}: run make crds")


def test_the_generator_writes_both_folders(tmp_path: Path) -> None:
    out, chart = tmp_path / "crds", tmp_path / "chart" / "crds"
    chart.parent.mkdir()
    assert crdgen.main(["--out", str(out), "--chart", str(chart)]) == 0
    for name in FILES:
        assert (out / name).read_bytes() == (chart / name).read_bytes() == (CRDS / name).read_bytes()


# --- structural schema rules (apiextensions v1) ---------------------------------------------

def walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, sub in (node.get("properties") or {}).items():
            yield from walk(sub, f"{path}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{path}.*")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")


@pytest.mark.parametrize("name", FILES)
def test_schemas_are_structural(name: str) -> None:
    crd = load_crd(name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    schema = schema_of(crd)
    for path, node in walk(schema):
        where = path or "<root>"
        typed = "type" in node or node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields")
        assert typed, f"{where}: no type"
        assert not ({"anyOf", "oneOf", "allOf", "$ref", "title", "nullable"} & set(node)), where
        assert not ("properties" in node and "additionalProperties" in node), where
        if "default" in node:
            assert not path.startswith(".status") and not path.startswith(".metadata"), where
            jsonschema.Draft4Validator(to_draft4(node)).validate(node["default"])
        if path not in ("", ".metadata"):
            assert node.get("description") or path.endswith(("]", "*")) or path.split(".")[
                -1] in ("apiVersion", "kind") or _bare_model_field(path), f"{where}: no description"
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["status"]["properties"]["kopf"][
        "x-kubernetes-preserve-unknown-fields"] is True


def _bare_model_field(path: str) -> bool:
    """The trainer contract's models (training, model, dataset) describe only some fields."""
    return any(f".{part}." in f"{path}." for part in ("training", "model", "dataset",
                                                     "architecture"))


@pytest.mark.parametrize("name", FILES)
def test_cel_rules_name_fields_that_exist(name: str) -> None:
    """No CEL engine runs here; at least every ``self.a.b`` a rule reads must be in the schema."""
    for path, node in walk(schema_of(load_crd(name))):
        for rule in node.get("x-kubernetes-validations") or []:
            assert rule["message"] and rule["rule"]
            if rule["rule"] == crdgen.IMMUTABLE_RULE:
                continue
            for dotted in re.findall(r"self((?:\.[A-Za-z]+)+)", rule["rule"]):
                target: Any = node
                for part in dotted.strip(".").split("."):
                    if part in ("startsWith", "size", "all") or target == {"type": "object"}:
                        break  # a CEL function, or metadata (always there)
                    assert part in (target.get("properties") or {}), (
                        f"{path}: rule {rule['rule']!r} reads {dotted}")
                    target = target["properties"][part]
            if "fieldPath" in rule:
                target = node
                for part in rule["fieldPath"].strip(".").split("."):
                    target = target["properties"][part]


def test_printer_columns_and_names() -> None:
    search, trial = load_crd(FILES[0]), load_crd(FILES[1])
    assert search["spec"]["names"]["shortNames"] == ["nas"]
    assert trial["spec"]["names"]["shortNames"] == ["nastrial"]
    assert search["spec"]["names"]["categories"] == trial["spec"]["names"]["categories"] == [
        "kubenas"]
    columns = {c["name"]: c["jsonPath"] for c in search["spec"]["versions"][0][
        "additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase" and columns["Best"] == ".status.best.reward"
    assert columns["Max"] == ".spec.budget.maxTrials" and columns["Done"] == ".status.trials.succeeded"
    assert {"Strategy", "Space", "Running", "Age"} <= set(columns)
    columns = {c["name"]: c["jsonPath"] for c in trial["spec"]["versions"][0][
        "additionalPrinterColumns"]}
    assert columns["Search"] == ".spec.search" and columns["Reward"] == ".status.reward"
    for crd in (search, trial):
        [version] = crd["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
        schema = schema_of(crd)
        for column in version["additionalPrinterColumns"]:
            node: Any = schema
            for part in column["jsonPath"].strip(".").split("."):
                node = node["properties"][part] if part != "metadata" else {"type": "object"}
                if part == "metadata":
                    break


# --- manifests: examples and broken ones ---------------------------------------------------

def example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((REPO / "examples").glob("*.y*ml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and doc.get("kind") == "NASSearch":
                docs.append((f"{path.name}#{i}", doc))
    return docs


@pytest.mark.parametrize("label,doc", [("inline-minimal", MINIMAL), *example_documents()])
def test_searches_validate_against_the_crd_and_the_models(label: str, doc: dict[str, Any]) -> None:
    assert errors_of("NASSearch", doc) == [], label
    parse_search(doc)  # and the operator accepts it


@pytest.mark.parametrize("edit,field", [
    (lambda s: s["budget"].update(maxTrails=10), "spec.budget"),
    (lambda s: s["searchSpace"].update(type="zoph-le-transformer"), "spec.searchSpace.type"),
    (lambda s: s["budget"].update(parallelism=0), "spec.budget.parallelism"),
    (lambda s: s["trial"].update(retries=-1), "spec.trial.retries"),
    (lambda s: s["trial"]["resources"]["limits"].update({"nvidia.com/gpu": [1]}),
     "spec.trial.resources.limits.nvidia.com/gpu"),
    (lambda s: s["trial"].update(tolerations=[{"key": "gpu", "operator": "Maybe"}]),
     "spec.trial.tolerations[0].operator"),
    (lambda s: s["trial"]["training"].update(amp="fp8"), "spec.trial.training.amp"),
    (lambda s: s["strategy"].update(seed="one"), "spec.strategy.seed"),
    (lambda s: s.update(suspend="maybe"), "spec.suspend"),
    (lambda s: s["finalTraining"].update(topK=11), "spec.finalTraining.topK"),
    (lambda s: s["trial"].update(dataset={"name": "cifar10", "path": "/data", "persistentVolumeClaim": {
        "claimName": "CIFAR_10"}}), "spec.trial.dataset.persistentVolumeClaim.claimName"),
    (lambda s: s["trial"].update(dataset={"name": "cifar10", "path": "/data", "persistentVolumeClaim": {
        "name": "cifar10"}}), "spec.trial.dataset.persistentVolumeClaim"),
])
def test_a_broken_search_is_rejected_naming_the_field(edit: Any, field: str) -> None:
    doc = copy.deepcopy(MINIMAL)
    edit(doc["spec"])
    errors = errors_of("NASSearch", doc)
    assert errors and any(e.startswith(field) for e in errors), errors
    with pytest.raises(SpecError):
        parse_search(doc)


def test_an_unknown_field_is_named_not_pruned_silently() -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["spec"]["budget"]["maxTrails"] = 10
    [error] = errors_of("NASSearch", doc)
    assert error.startswith("spec.budget") and "'maxTrails'" in error


# --- statuses --------------------------------------------------------------------------------

def test_status_schemas_accept_the_models_and_kopf_fields() -> None:
    from nas_operator.api import NASSearchStatus, NASTrialStatus

    search = NASSearchStatus().model_dump(mode="json", exclude_none=True)
    search["kopf"] = {"progress": {"search": {"retries": 1}}}
    assert errors_of("NASSearch", search, "status") == []
    assert errors_of("NASTrial", NASTrialStatus().model_dump(mode="json", exclude_none=True),
                     "status") == []
    assert errors_of("NASSearch", {"phase": "Exploding"}, "status") == [
        "status.phase: 'Exploding' is not one of ['Pending', 'Running', 'Suspended', "
        "'Succeeded', 'Failed']"]
