"""A NASSearch written by an adversarial (or careless) user: wrong types, numbers out of
range, non-finite floats, names and values no Kubernetes object can hold, absurd space
sizes, huge strings (issue 18). Each is refused by ``kubenas validate`` in a few lines
naming the field, never coerced, never a traceback, never the huge value echoed back;
the ones the CRD can express are refused by its schema too (what ``kubectl apply`` runs).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nas_operator import cli
from tests.support.crds import MINIMAL, errors_of

HUGE = "x" * 1_000_000
NAN, INF = float("nan"), float("inf")


def _set(path: str, value: Any):
    """An edit of the document: ``path`` dotted from the root (``spec.budget.maxTrials``)."""
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return edit


# (class, edit, field named, words in the message or None, the CRD refuses it too)
CASES = [
    # wrong types: refused, never coerced
    ("type", _set("spec.budget.maxTrials", "12"), "spec.budget.maxTrials", "integer", True),
    ("type", _set("spec.strategy.seed", True), "spec.strategy.seed", "integer", True),
    ("type", _set("spec.suspend", "yes"), "spec.suspend", "boolean", True),
    ("type", _set("spec.trial.retries", 2.5), "spec.trial.retries", "integer", True),
    ("type", _set("spec.trial.training.epochs", "20"), "spec.trial.training.epochs", "integer",
     True),
    ("type", _set("spec.searchSpace.options.layers", "6"), "spec.searchSpace.options.layers",
     "integer", False),
    ("type", _set("spec.strategy.config.learningRate", "0.1"),
     "spec.strategy.config.learningRate", "number", False),
    # numbers out of range: the limit is in the message
    ("range", _set("spec.budget.maxTrials", 2**70), "spec.budget.maxTrials", "1000000", True),
    ("range", _set("spec.budget.parallelism", 10**6), "spec.budget.parallelism", "10000", True),
    ("range", _set("spec.strategy.seed", 2**40), "spec.strategy.seed", "4294967295", True),
    ("range", _set("spec.trial.activeDeadlineSeconds", 10**12),
     "spec.trial.activeDeadlineSeconds", "2592000", True),
    ("range", _set("spec.budget.deadline", "100000d"), "spec.budget.deadline", "366 days", False),
    ("range", _set("spec.trial.training.epochs", 2**64), "spec.trial.training.epochs", "int64",
     False),
    # non-finite floats
    ("finite", _set("spec.objective", {"metric": "val_accuracy", "goal": NAN}),
     "spec.objective.goal", "finite", False),
    ("finite", _set("spec.objective", {"metric": "val_accuracy", "constant": INF}),
     "spec.objective.constant", "finite", False),
    ("finite", _set("spec.strategy.config.learningRate", NAN),
     "spec.strategy.config.learningRate", "finite", False),
    # names, labels, images, quantities Kubernetes cannot hold
    ("k8s", _set("metadata.name", "Bad_Name"), "metadata.name", None, False),
    ("k8s", _set("metadata.namespace", "Research!"), "metadata.namespace", None, False),
    ("k8s", _set("spec.trial.queueName", "GPUs!"), "spec.trial.queueName",
     "'GPUs!' is not a DNS name", True),
    ("k8s", _set("spec.trial.queueName", "q" * 64), "spec.trial.queueName", "63", True),
    ("k8s", _set("spec.trial.priorityClassName", "High Priority"),
     "spec.trial.priorityClassName", None, True),
    ("k8s", _set("spec.trial.nodeSelector", {"bad key": "gpu"}), "spec.trial.nodeSelector",
     None, False),
    ("k8s", _set("spec.trial.nodeSelector", {"gpu": "-a100-"}), "spec.trial.nodeSelector",
     None, True),
    ("k8s", _set("spec.trial.image", "not an image!"), "spec.trial.image",
     "is not an image reference", True),
    ("k8s", _set("spec.trial.image", "ghcr.io/kubenas/trainer:"), "spec.trial.image", None, True),
    ("k8s", _set("spec.trial.resources", {"limits": {"memory": "16 GB"}}),
     "spec.trial.resources.limits.memory", "quantity", False),
    ("k8s", _set("spec.trial.tolerations", [{"key": "bad key", "operator": "Exists"}]),
     "spec.trial.tolerations[0].key", None, True),
    ("k8s", _set("spec.trial.dataset", {"name": "cifar10", "path": "/data",
                                        "persistentVolumeClaim": {"claimName": "CIFAR_10"}}),
     "spec.trial.dataset.persistentVolumeClaim.claimName", None, True),
    # absurd search-space sizes: refused at validation, before any strategy is built
    ("size", _set("spec.searchSpace.options.layers", 1_000_000_000),
     "spec.searchSpace.options.layers", "100", False),
    ("size", _set("spec.searchSpace.options.filterChoices", [24, 10**9]),
     "spec.searchSpace.options.filterChoices", "4096", False),
    ("size", _set("spec.searchSpace", {"type": "nasnet", "options": {"blocks": 10**9}}),
     "spec.searchSpace.options.blocks", "32", False),
    ("size", _set("spec.searchSpace", {"type": "enas-rnn", "options": {"nodes": 10**9}}),
     "spec.searchSpace.options.nodes", "64", False),
    # huge strings: refused, and never echoed back whole
    ("huge", _set("metadata.name", HUGE), "metadata.name", "characters", False),
    ("huge", _set("spec.trial.nodeSelector", {HUGE: "gpu"}), "spec.trial.nodeSelector",
     "characters", False),
    ("huge", _set("spec.trial.queueName", HUGE), "spec.trial.queueName", "63", True),
    ("huge", _set("spec.trial.image", HUGE), "spec.trial.image", "512", True),
    ("huge", _set("spec.budget.deadline", HUGE), "spec.budget.deadline", "64", True),
    ("huge", _set("spec.trial.dataset", {"name": "cifar10", "path": "/data",
                                         "persistentVolumeClaim": {"claimName": HUGE}}),
     "spec.trial.dataset.persistentVolumeClaim.claimName", "characters", True),
]
IDS = [f"{kind}-{field}-{i}" for i, (kind, _, field, _, _) in enumerate(CASES)]


def hostile(edit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    edit(doc)
    return doc


def test_every_class_has_more_than_one_case() -> None:
    kinds = [case[0] for case in CASES]
    assert set(kinds) == {"type", "range", "finite", "k8s", "size", "huge"}
    assert all(kinds.count(kind) > 1 for kind in kinds)
    assert all(sum(1 for case in CASES if case[0] == kind and case[4]) > 1
               for kind in ("type", "range", "k8s", "huge"))


def test_the_unedited_document_validates(tmp_path: Path, capsys) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().out
    assert errors_of("NASSearch", MINIMAL) == []


@pytest.mark.parametrize(("kind", "edit", "field", "words", "crd"), CASES, ids=IDS)
def test_kubenas_validate_refuses_naming_the_field(tmp_path: Path, capsys, kind: str, edit: Any,
                                                   field: str, words: str | None,
                                                   crd: bool) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(hostile(edit)))
    started = time.monotonic()
    assert cli.main(["validate", str(path)]) != 0
    assert time.monotonic() - started < 10
    out = capsys.readouterr()
    printed = out.out + out.err
    lines = [line.strip() for line in printed.splitlines()]
    named = [line for line in lines if line.startswith(field)]
    assert named, printed[:2000]
    if words is not None:
        assert any(words in line for line in named), named
    assert "Traceback" not in printed and len(printed) < 3000, printed[:2000]


@pytest.mark.parametrize(("kind", "edit", "field", "words", "crd"),
                         [case for case in CASES if case[4]],
                         ids=[i for i, case in zip(IDS, CASES, strict=True) if case[4]])
def test_the_crd_refuses_what_it_can_express(kind: str, edit: Any, field: str,
                                             words: str | None, crd: bool) -> None:
    errors = errors_of("NASSearch", hostile(edit))
    assert any(e.startswith(field) for e in errors), errors


def test_the_crd_carries_the_label_key_rule_of_node_selectors() -> None:
    """No CEL engine runs here: the key rule's regular expression is checked as Python's."""
    import re

    from tests.support.crds import FILES, load_crd, schema_of
    spec = schema_of(load_crd(FILES[0]))["properties"]["spec"]
    selector = spec["properties"]["trial"]["properties"]["nodeSelector"]
    [rule] = selector["x-kubernetes-validations"]
    pattern = re.search(r"k\.matches\('(.*)'\)", rule["rule"]).group(1).replace("\\\\", "\\")
    assert re.match(pattern, "nvidia.com/gpu.product") and re.match(pattern, "zone")
    assert not re.match(pattern, "bad key") and not re.match(pattern, "-x")
