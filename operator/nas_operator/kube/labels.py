"""Names, labels and owner references shared by every object the operator creates.

Everything here is deterministic, so a restarted operator finds what an
earlier one created (and a repeated create answers 409 instead of
duplicating).
"""

from __future__ import annotations

from typing import Any

from nas_operator.api import API_GROUP, API_VERSION
from nas_operator.launcher import trial_stage

GROUP = API_GROUP
VERSION = API_VERSION.split("/", 1)[1]
SEARCH_KIND = "NASSearch"
TRIAL_KIND = "NASTrial"
SEARCH_PLURAL = "nassearches"
TRIAL_PLURAL = "nastrials"
FINALIZER = f"{GROUP}/finalizer"

LABEL_SEARCH = f"{GROUP}/search"
LABEL_TRIAL = f"{GROUP}/trial"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ROLE = f"{GROUP}/role"
"""``trainer`` on trial pods: the chart's NetworkPolicy lets only them reach the status API."""
LABEL_CHECKPOINT = f"{GROUP}/checkpoint"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
ROLE_TRAINER = "trainer"
MANAGED_BY = "kubenas-operator"
TRAINER_CONTAINER = "trainer"


def common_labels(search: str, component: str) -> dict[str, str]:
    """Labels on every object of a search (``kubectl get all -l kubenas.dev/search=NAME``)."""
    return {
        "app.kubernetes.io/name": "kubenas",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_SEARCH: search,
    }


def token_secret_name(search: str) -> str:
    """The per-search Secret: the HMAC key and one token per live trial."""
    return f"{search}-tokens"


def checkpoint_name(search: str) -> str:
    """The ConfigMap that holds (or points to) the search's controller checkpoint."""
    return f"{search}-checkpoint"


def owner_reference(body: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to ``body`` (garbage collection deletes the dependents with it)."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def stage_of(trial: str) -> str:
    """``search`` or ``final`` from a ledger trial name (``<search>-t0007`` / ``-f0001``)."""
    return trial_stage(trial)
