"""The operator's API requests against the chart's RBAC rules (helm/kubenas/files/operator-rbac.yaml).

The emulator counts every request by verb, resource and user agent (kopf's own and the
operator's client). A scenario here drives the operator through what it does on a real
cluster (trials, a retry, a restart with adoption, suspend, resume, deletion); the
requests of every other operator test in the same session are added. Each request must be
granted by a rule (cluster-scoped ones by ``clusterWide``), and each granted verb must be
used or have a written reason here (some are used only on timing-dependent paths).
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.support import REPO
from tests.support.kube_emulator import JOBS, NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    OPERATOR_REQUESTS,
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()

RULES = REPO / "helm" / "kubenas" / "files" / "operator-rbac.yaml"
CLUSTER_SCOPED = {("", "namespaces"), ("apiextensions.k8s.io", "customresourcedefinitions")}

JUSTIFIED_UNUSED: dict[tuple[str, str, str], str] = {
    ("kubenas.dev", "nassearches/finalizers", "update"):
        "blockOwnerDeletion on children needs it where OwnerReferencesPermissionEnforcement is on",
    ("kubenas.dev", "nastrials/finalizers", "update"):
        "blockOwnerDeletion on Jobs needs it where OwnerReferencesPermissionEnforcement is on",
    ("kubenas.dev", "nassearches/status", "get"): "kopf may read the status subresource",
    ("kubenas.dev", "nastrials/status", "get"): "kopf may read the status subresource",
    ("kubenas.dev", "nassearches/status", "update"):
        "kopf writes status with PUT when configured for status progress storage",
    ("kubenas.dev", "nastrials/status", "update"):
        "kopf writes status with PUT when configured for status progress storage",
    ("kubenas.dev", "nassearches", "get"): "kopf re-reads an object after a failed patch",
    ("kubenas.dev", "nastrials", "get"):
        "read when a create answers 409 (an earlier operator made it), so timing-dependent",
    ("", "pods", "list"):
        "by the operator only when a Job ends before its pod's last state was seen",
    ("batch", "jobs", "get"): "adoption after a restart and a create that answers 409",
    ("", "services", "create"): "several-worker weight-sharing trials only (tests/operator/test_darts_cluster.py)",
    ("kubenas.dev", "nassearches", "create"):
        "UNUSED: the operator never creates a NASSearch (reported for removal)",
    ("kubenas.dev", "nassearches", "delete"):
        "UNUSED: the operator never deletes a NASSearch (reported for removal)",
    ("kubenas.dev", "nastrials", "watch"):
        "UNUSED: NASTrials are written, not watched (reported for removal)",
    ("kubenas.dev", "nastrials", "delete"):
        "retention (spec.retention) deletes the NASTrials of finished trials past keepBest and "
        "keepRecent; the scenario here stays within the defaults (tests/operator/test_operator_retention.py)",
    ("batch", "jobs", "patch"): "UNUSED: Jobs are never changed (reported for removal)",
    ("", "pods", "get"): "UNUSED: pods are listed by label, never read by name",
    ("", "configmaps", "watch"): "UNUSED: checkpoints are read on demand",
    ("", "configmaps", "update"): "UNUSED: checkpoint writes are merge patches",
    ("", "configmaps", "list"): "ConfigMapCheckpointStore.delete finds a search's chunks by label",
    ("", "configmaps", "delete"): "ConfigMapCheckpointStore.delete removes a search's chunks",
    ("", "events", "patch"): "kopf's event poster may patch a repeated event",
    ("events.k8s.io", "events", "create"): "kopf posts events.k8s.io events on newer releases",
    ("events.k8s.io", "events", "patch"): "kopf posts events.k8s.io events on newer releases",
    ("", "namespaces", "list"): "kopf's namespace observer (namespace patterns in the chart)",
    ("", "namespaces", "watch"): "kopf's namespace observer (namespace patterns in the chart)",
}


def granted() -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(namespaced, cluster-wide) grants as (group, resource, verb)."""
    rules = yaml.safe_load(RULES.read_text())

    def expand(items: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(g, r, v) for rule in items for g in rule["apiGroups"]
                for r in rule["resources"] for v in rule["verbs"]}

    return expand(rules["namespaced"]), expand(rules["clusterWide"])


def as_rbac(verb: str, resource: str) -> tuple[str, str, str]:
    """The emulator's ``jobs.batch`` / ``nassearches.kubenas.dev/status`` as RBAC's triple."""
    name, _, sub = resource.partition("/")
    plural, _, group = name.partition(".")
    return group, f"{plural}/{sub}" if sub else plural, verb


async def test_every_operator_request_is_granted_and_every_grant_is_used(
        kube: KubeTestBed) -> None:
    held: list[str] = []

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        doc = document_of(job)
        if doc["trial"].endswith("t0000") and doc["attempt"] == 0:
            await cluster.run(job)
            await cluster.terminate(job, 1, "Traceback: RuntimeError: boom")
            return
        if doc["trial"].endswith("t0003") and not held:
            held.append(job["metadata"]["name"])
            await cluster.run(job)  # held until suspend stops it
            return
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    async with FakeCluster(kube, trainer):
        async with bed.running():
            await kube.client.create(NASSEARCHES, search_manifest(
                "rbac", budget={"maxTrials": 5, "parallelism": 2}))

            async def two_done() -> bool:
                status = ((await bed.search("rbac")) or {}).get("status") or {}
                return (status.get("trials") or {}).get("succeeded", 0) >= 2

            await wait_for(two_done, message="2 trials done")
        async with bed.running():
            async def trial_3_held() -> bool:
                return bool(held) and await kube.read(JOBS, held[0]) is not None

            await wait_for(trial_3_held, message="trial 3 running")
            await kube.client.patch(NASSEARCHES, "rbac", {"spec": {"suspend": True}})
            await bed.wait_phase("rbac", "Suspended")
            await kube.client.patch(NASSEARCHES, "rbac", {"spec": {"suspend": False}})
            await bed.wait_phase("rbac", "Succeeded")
            await kube.client.delete(NASSEARCHES, "rbac")

            async def gone() -> bool:
                return await bed.search("rbac") is None

            await wait_for(gone, message="the search deleted")

    namespaced, cluster = granted()
    used = {as_rbac(verb, resource) for verb, resource, _ in OPERATOR_REQUESTS}
    agents = {agent for _, _, agent in OPERATOR_REQUESTS}
    assert {"kopf", "kubenas-operator"} <= agents
    denied = sorted(t for t in used if t not in (cluster if t[:2] in CLUSTER_SCOPED
                                                 else namespaced))
    assert not denied, f"the operator makes requests its RBAC does not grant: {denied}"
    unused = sorted((namespaced | cluster) - used - set(JUSTIFIED_UNUSED))
    assert not unused, f"granted but neither used nor justified (drop them): {unused}"
    # The calls the operator's design relies on were really made.
    for needed in [("batch", "jobs", "create"), ("batch", "jobs", "delete"),
                   ("kubenas.dev", "nastrials", "create"), ("kubenas.dev", "nastrials", "patch"),
                   ("kubenas.dev", "nastrials/status", "patch"),
                   ("kubenas.dev", "nassearches/status", "patch"), ("", "secrets", "create"),
                   ("", "secrets", "patch"), ("", "configmaps", "create"), ("", "events", "create"),
                   ("", "pods", "watch"), ("batch", "jobs", "watch")]:
        assert needed in used, needed
