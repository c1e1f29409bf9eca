"""The CRD test recipe (docs/testing.md): the committed CRD schemas as strict Draft 4 validators.

Shared by the CRD tests, the spec tests and the operator bed, which validates every object
the operator writes against the schema the API server would enforce.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from tests.support import REPO

CRDS = REPO / "crds"
CHART_CRDS = REPO / "helm" / "kubenas" / "crds"
FILES = ("kubenas.dev_nassearches.yaml", "kubenas.dev_nastrials.yaml")

def to_draft4(node: Any) -> Any:
    """A structural schema node as plain JSON Schema (Draft 4) with pruning made strict."""
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")
           and k not in ("nullable", "properties", "items", "additionalProperties",
                         "exclusiveMinimum", "exclusiveMaximum")}
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        out["type"] = [node["type"], "null"] if "type" in node else None
        if out["type"] is None:
            del out["type"]
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if node.get(key) is True:
            out[key] = True
    if "properties" in node:
        out["properties"] = {k: to_draft4(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False  # what the server would prune
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_draft4(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_draft4(node["items"])
    return out


def load_crd(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((CRDS / name).read_text()) if d]
    [crd] = docs
    return crd


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    [version] = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def validator(kind: str, part: str | None = None) -> jsonschema.Draft4Validator:
    """Validator of a whole NASSearch/NASTrial object, or of one part (``status``)."""
    name = {"NASSearch": FILES[0], "NASTrial": FILES[1]}[kind]
    schema = schema_of(load_crd(name))
    if part is not None:
        schema = schema["properties"][part]
    return jsonschema.Draft4Validator(to_draft4(schema))


def errors_of(kind: str, obj: Any, part: str | None = None) -> list[str]:
    """``path: message`` of every schema violation, the field path dotted as in kubectl."""
    found = []
    for err in sorted(validator(kind, part).iter_errors(obj), key=lambda e: list(e.path)):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        found.append(f"{(part or '') + path or '<root>'}: {err.message}".lstrip("."))
    return found


# A minimal valid NASSearch (the README's first example, trimmed).
MINIMAL = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
           "metadata": {"name": "cifar-reinforce", "namespace": "research"},
           "spec": {"searchSpace": {"type": "zoph-le-cnn", "options": {"layers": 6}},
                    "strategy": {"type": "reinforce", "batchSize": 8, "seed": 1,
                                 "config": {"learningRate": 0.0006}},
                    "budget": {"maxTrials": 200, "parallelism": 16, "deadline": "2d"},
                    "trial": {"resources": {"limits": {"nvidia.com/gpu": 1, "memory": "16Gi"}},
                              "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                              "queueName": "gpus", "training": {"epochs": 20, "amp": "bf16"}},
                    "finalTraining": {"topK": 3, "training": {"epochs": 300}}}}
