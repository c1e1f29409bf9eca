"""The emulator's API-server behaviour, checked over HTTP as a client sees it.

Each test covers one gap that kmock alone leaves open and that the operator
(through kopf or its own client calls) relies on.
"""

import asyncio
import base64
from typing import Any

import kmock
import kubernetes
import pytest

from tests.support.kube_emulator import (
    CONFIGMAPS,
    CRDS,
    EVENTS,
    GROUP,
    JOBS,
    NAMESPACES,
    NASSEARCHES,
    NASTRIALS,
    PODS,
    SECRETS,
    VERSION,
    ApiError,
    ApiStatusError,
    KubeTestBed,
    crd_manifest,
    merge_patch,
    parse_api_path,
    parse_label_selector,
    start_test_bed,
)


def search(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NASSearch", "metadata": {"name": name},
            "spec": spec or {"maxTrials": 1}}


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


async def expect_error(code: int, reason: str, call: Any) -> dict[str, Any]:
    with pytest.raises(ApiStatusError) as info:
        await call
    assert info.value.code == code
    status = info.value.status
    assert status["kind"] == "Status" and status["code"] == code and status["reason"] == reason
    return status


# -- pure helpers ---------------------------------------------------------------------------------

def test_paths_are_parsed_including_namespaces_themselves() -> None:
    assert parse_api_path("/api/v1/namespaces").plural == "namespaces"
    ns = parse_api_path("/api/v1/namespaces/default")
    assert (ns.plural, ns.name, ns.namespace) == ("namespaces", "default", None)
    assert parse_api_path("/api/v1/namespaces/default/status").subresource == "status"
    pod = parse_api_path("/api/v1/namespaces/ns1/pods/p1/status")
    assert (pod.group, pod.version, pod.plural, pod.namespace, pod.name, pod.subresource) == (
        "", "v1", "pods", "ns1", "p1", "status")
    assert parse_api_path("/apis/batch/v1") == parse_api_path("/apis/batch/v1/")
    assert parse_api_path("/apis/batch/v1").plural is None
    assert parse_api_path("/version") is None


def test_label_selector_grammar() -> None:
    labels = {"app": "nas", "tier": "gpu"}
    assert all(r.matches(labels) for r in parse_label_selector("app=nas, tier in (gpu,cpu),!missing"))
    assert not all(r.matches(labels) for r in parse_label_selector("app!=nas"))
    assert all(r.matches(labels) for r in parse_label_selector("other!=x,tier notin (cpu)"))
    with pytest.raises(ApiError) as info:
        parse_label_selector("app===nas")
    assert info.value.code == 400


def test_merge_patch_follows_rfc7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": 1}}) == {
        "a": {"c": [3]}, "d": 1, "e": {"f": 1}}
    assert merge_patch(target, {"a": 5}) == {"a": 5, "d": 1}  # a scalar replaces an object
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # the input is not mutated


# -- discovery --------------------------------------------------------------------------------------

async def test_discovery_serves_what_kopf_and_the_operator_need(kube: KubeTestBed) -> None:
    def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in doc["resources"]}

    core = by_name(await kube.client.request("GET", "/api/v1"))
    for plural in ("namespaces", "pods", "configmaps", "secrets", "events", "services", "pods/status"):
        assert plural in core
    groups = {g["name"] for g in (await kube.client.request("GET", "/apis"))["groups"]}
    assert {"batch", "events.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io", GROUP} <= groups
    assert "jobs/status" in by_name(await kube.client.request("GET", "/apis/batch/v1"))
    assert "leases" in by_name(await kube.client.request("GET", "/apis/coordination.k8s.io/v1"))
    assert "events" in by_name(await kube.client.request("GET", "/apis/events.k8s.io/v1"))
    assert "customresourcedefinitions" in by_name(
        await kube.client.request("GET", "/apis/apiextensions.k8s.io/v1"))

    ours = by_name(await kube.client.request("GET", f"/apis/{GROUP}/{VERSION}"))
    assert set(ours) == {"nassearches", "nassearches/status", "nastrials", "nastrials/status"}
    assert ours["nassearches"]["kind"] == "NASSearch" and ours["nassearches"]["shortNames"] == ["nas"]
    assert ours["nastrials"]["kind"] == "NASTrial"
    for resource in ours.values():
        assert resource["namespaced"] is True
        assert {"list", "watch", "get", "create", "patch", "update", "delete"} <= set(resource["verbs"])

    # The CRDs and namespaces exist as objects too (kmock alone fails to even list namespaces).
    crds = await kube.client.list_objects(CRDS, None)
    assert {c["metadata"]["name"] for c in crds} == {f"nassearches.{GROUP}", f"nastrials.{GROUP}"}
    assert (await kube.client.get(NAMESPACES, "default", None))["status"]["phase"] == "Active"
    assert "default" in {n["metadata"]["name"] for n in await kube.client.list_objects(NAMESPACES, None)}


# -- object identity and versions -----------------------------------------------------------------

async def test_objects_get_uid_versions_generation_and_timestamp(kube: KubeTestBed) -> None:
    first = await kube.client.create(NASSEARCHES, search("s1"))
    second = await kube.client.create(NASSEARCHES, search("s2"))
    meta = first["metadata"]
    assert meta["uid"] and meta["uid"] != second["metadata"]["uid"]
    assert meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    labelled = await kube.client.patch(NASSEARCHES, "s1", {"metadata": {"labels": {"a": "b"}}})
    assert int(labelled["metadata"]["resourceVersion"]) > int(second["metadata"]["resourceVersion"])
    assert labelled["metadata"]["generation"] == 1  # metadata-only: no new generation

    status = await kube.client.patch(NASSEARCHES, "s1", {"status": {"phase": "Running"}},
                                     subresource="status")
    assert status["metadata"]["generation"] == 1  # status-only: no new generation

    spec = await kube.client.patch(NASSEARCHES, "s1", {"spec": {"maxTrials": 5}})
    assert spec["metadata"]["generation"] == 2
    assert spec["metadata"]["uid"] == meta["uid"]
    assert spec["metadata"]["creationTimestamp"] == meta["creationTimestamp"]

    # A write that changes nothing is not a change: same version, no watch event.
    same = await kube.client.patch(NASSEARCHES, "s1", {"spec": {"maxTrials": 5}})
    assert same["metadata"]["resourceVersion"] == spec["metadata"]["resourceVersion"]


async def test_generate_name(kube: KubeTestBed) -> None:
    body = {"metadata": {"generateName": "kopf-event-"}, "reason": "Test", "involvedObject": {}}
    one = await kube.client.create(EVENTS, body)
    two = await kube.client.create(EVENTS, body)
    names = {one["metadata"]["name"], two["metadata"]["name"]}
    assert len(names) == 2 and all(n.startswith("kopf-event-") and len(n) == 16 for n in names)
    await expect_error(422, "Invalid", kube.client.create(CONFIGMAPS, {"metadata": {}}))


# -- selectors --------------------------------------------------------------------------------------

async def test_label_selectors_on_list(kube: KubeTestBed) -> None:
    for name, labels in {"t1": {"search": "a", "arch": "cnn"}, "t2": {"search": "a", "arch": "rnn"},
                         "t3": {"search": "b"}}.items():
        await kube.client.create(NASTRIALS, {"metadata": {"name": name, "labels": labels}, "spec": {}})

    async def names(selector: str) -> list[str]:
        return [t["metadata"]["name"] for t in await kube.client.list_objects(NASTRIALS, label_selector=selector)]

    assert await names("search=a") == ["t1", "t2"]
    assert await names("search==a,arch!=cnn") == ["t2"]
    assert await names("arch in (cnn, rnn)") == ["t1", "t2"]
    assert await names("search notin (a)") == ["t3"]
    assert await names("arch") == ["t1", "t2"]
    assert await names("!arch") == ["t3"]
    await expect_error(400, "BadRequest", kube.client.list_objects(NASTRIALS, label_selector="arch in cnn"))


async def test_lists_come_in_pages_when_asked(kube: KubeTestBed) -> None:
    for index in range(5):
        await kube.client.create(CONFIGMAPS, {"metadata": {"name": f"c{index}"}})
    path = "/api/v1/namespaces/default/configmaps"
    first = await kube.client.request("GET", path, params={"limit": "2"})
    assert [c["metadata"]["name"] for c in first["items"]] == ["c0", "c1"]
    assert first["metadata"]["remainingItemCount"] == 3
    names = [c["metadata"]["name"] for c in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = await kube.client.request("GET", path, params={"limit": "2", "continue": token})
        names += [c["metadata"]["name"] for c in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"c{index}" for index in range(5)]


async def test_field_selectors_on_list(kube: KubeTestBed) -> None:
    await kube.client.create(CONFIGMAPS, {"metadata": {"name": "a"}})
    await kube.client.create(CONFIGMAPS, {"metadata": {"name": "b"}})
    await kube.client.create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": "kube-system"}},
                             "kube-system")
    everywhere = await kube.client.list_objects(CONFIGMAPS, None, field_selector="metadata.name=a")
    assert sorted(c["metadata"]["namespace"] for c in everywhere) == ["default", "kube-system"]
    assert [c["metadata"]["name"] for c in await kube.client.list_objects(
        CONFIGMAPS, None, field_selector="metadata.namespace=default,metadata.name!=a")] == ["b"]

    await kube.client.create(EVENTS, {"metadata": {"generateName": "e-"}, "reason": "R",
                                      "involvedObject": {"name": "s1", "kind": "NASSearch"}})
    await kube.client.create(EVENTS, {"metadata": {"generateName": "e-"}, "reason": "R",
                                      "involvedObject": {"name": "s2", "kind": "NASSearch"}})
    events = await kube.client.list_objects(EVENTS, field_selector="involvedObject.name=s1")
    assert [e["involvedObject"]["name"] for e in events] == ["s1"]
    await expect_error(400, "BadRequest", kube.client.list_objects(CONFIGMAPS, field_selector="data.x=1"))


async def test_selectors_on_watch_follow_objects_in_and_out(kube: KubeTestBed) -> None:
    async with kube.client.watch(NASTRIALS, labelSelector="search=a") as watch:
        await kube.client.create(NASTRIALS, {"metadata": {"name": "t1", "labels": {"search": "a"}}})
        await kube.client.create(NASTRIALS, {"metadata": {"name": "t2", "labels": {"search": "b"}}})
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "t1")
        await kube.client.patch(NASTRIALS, "t1", {"metadata": {"labels": {"search": "b"}}})
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "t1")
        await kube.client.patch(NASTRIALS, "t2", {"metadata": {"labels": {"search": "a"}}})
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "t2")
        assert await watch.quiet()
    async with kube.client.watch(NASTRIALS, fieldSelector="metadata.name=t2") as watch:
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "t2")
        assert await watch.quiet()


# -- status subresource -----------------------------------------------------------------------------

async def test_status_goes_only_through_the_status_subresource(kube: KubeTestBed) -> None:
    created = await kube.client.create(NASSEARCHES, {**search("s1"), "status": {"phase": "Forged"}})
    assert "status" not in created  # create cannot set the status

    main = await kube.client.patch(NASSEARCHES, "s1", {"spec": {"maxTrials": 3}, "status": {"phase": "X"}})
    assert main["spec"] == {"maxTrials": 3} and "status" not in main

    status = await kube.client.patch(NASSEARCHES, "s1", {"status": {"phase": "Running"}, "spec": {"maxTrials": 9}},
                                     subresource="status")
    assert status["status"] == {"phase": "Running"}
    assert status["spec"] == {"maxTrials": 3}  # the status endpoint ignores everything else
    assert status["metadata"]["generation"] == 2
    kept = await kube.client.patch(NASSEARCHES, "s1", {"metadata": {"labels": {"a": "b"}}, "status": None})
    assert kept["status"] == {"phase": "Running"}  # nor can the main endpoint remove it

    # The same through PUT, with the optimistic lock on resourceVersion.
    stale = {**kept, "status": {"phase": "Done"}, "metadata": {**kept["metadata"], "resourceVersion": "1"}}
    await expect_error(409, "Conflict", kube.client.replace(NASSEARCHES, "s1", stale, subresource="status"))
    done = await kube.client.replace(NASSEARCHES, "s1", {**kept, "status": {"phase": "Done"}},
                                     subresource="status")
    assert done["status"] == {"phase": "Done"}
    assert (await kube.client.get(NASSEARCHES, "s1"))["status"] == {"phase": "Done"}

    # Built-ins follow the same rule: a Job's status is the Job controller's, written to /status.
    job = await kube.client.create(JOBS, {"metadata": {"name": "j1"}, "spec": {"template": {}},
                                          "status": {"succeeded": 1}})
    assert job["status"] == {}
    job = await kube.client.patch(JOBS, "j1", {"status": {"succeeded": 1}}, subresource="status")
    assert job["status"] == {"succeeded": 1}


# -- patches and errors -----------------------------------------------------------------------------

async def test_json_patch_test_failure_is_422_not_500(kube: KubeTestBed) -> None:
    obj = await kube.client.create(NASSEARCHES, search("s1"))
    version = obj["metadata"]["resourceVersion"]
    stale = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
             {"op": "add", "path": "/metadata/finalizers", "value": ["kubenas.dev/finalizer"]}]
    status = await expect_error(422, "Invalid", kube.client.patch(NASSEARCHES, "s1", stale, patch_type="json"))
    assert "test" in status["message"]
    fresh = [{**stale[0], "value": version}, stale[1]]
    patched = await kube.client.patch(NASSEARCHES, "s1", fresh, patch_type="json")
    assert patched["metadata"]["finalizers"] == ["kubenas.dev/finalizer"]
    await expect_error(422, "Invalid", kube.client.patch(
        NASSEARCHES, "s1", [{"op": "remove", "path": "/spec/absent"}], patch_type="json"))
    await expect_error(400, "BadRequest", kube.client.patch(NASSEARCHES, "s1", {"a": 1}, patch_type="json"))


async def test_strategic_merge_patch_only_for_builtins(kube: KubeTestBed) -> None:
    await kube.client.create(CONFIGMAPS, {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})
    patched = await kube.client.patch(CONFIGMAPS, "c", {"data": {"a": None, "c": "3"}}, patch_type="strategic")
    assert patched["data"] == {"b": "2", "c": "3"}
    await kube.client.create(NASSEARCHES, search("s1"))
    await expect_error(415, "UnsupportedMediaType",
                       kube.client.patch(NASSEARCHES, "s1", {"spec": {}}, patch_type="strategic"))


async def test_already_exists_is_409_with_a_status_body(kube: KubeTestBed) -> None:
    await kube.client.create(NASSEARCHES, search("s1"))
    status = await expect_error(409, "AlreadyExists", kube.client.create(NASSEARCHES, search("s1")))
    assert status["details"] == {"name": "s1", "group": GROUP, "kind": "nassearches"}
    assert status["message"] == f'nassearches.{GROUP} "s1" already exists'
    # The same name in another namespace is another object.
    await kube.client.create(NASSEARCHES, search("s1"), "kube-system")


async def test_missing_objects_are_404_with_a_status_body(kube: KubeTestBed) -> None:
    for call in (kube.client.get(JOBS, "nope"), kube.client.patch(JOBS, "nope", {"spec": {}}),
                 kube.client.delete(JOBS, "nope"),
                 kube.client.patch(NASSEARCHES, "nope", {"status": {}}, subresource="status")):
        status = await expect_error(404, "NotFound", call)
        assert status["details"]["name"] == "nope"
    await expect_error(404, "NotFound", kube.client.request("GET", "/apis/batch/v1/namespaces/default/jobz"))


async def test_server_side_validation_that_tests_can_trip_over(kube: KubeTestBed) -> None:
    await expect_error(422, "Invalid", kube.client.create(JOBS, {"metadata": {"name": "Trial_1"}}))
    await expect_error(422, "Invalid", kube.client.create(JOBS, {"metadata": {"name": "t" * 64}}))
    await expect_error(400, "BadRequest", kube.client.create(
        CONFIGMAPS, {"metadata": {"name": "c", "annotations": {"step": 1}}}))
    await expect_error(422, "Invalid", kube.client.create(
        CONFIGMAPS, {"metadata": {"name": "c", "labels": {"genotype": "conv3x3|maxpool"}}}))
    blob = base64.b64encode(b"\0" * (1024 * 1024)).decode()
    await expect_error(422, "Invalid", kube.client.create(
        CONFIGMAPS, {"metadata": {"name": "big"}, "binaryData": {"chunk": blob}}))
    huge = base64.b64encode(b"\0" * (3 * 1024 * 1024)).decode()
    await expect_error(413, "RequestEntityTooLarge", kube.client.create(
        CONFIGMAPS, {"metadata": {"name": "huge"}, "binaryData": {"chunk": huge}}))
    small = base64.b64encode(b"\0" * 1000).decode()
    await kube.client.create(CONFIGMAPS, {"metadata": {"name": "ok"}, "binaryData": {"chunk": small}})
    secret = await kube.client.create(SECRETS, {"metadata": {"name": "s"}, "stringData": {"key": "k1"}})
    assert secret["data"] == {"key": base64.b64encode(b"k1").decode()} and "stringData" not in secret


async def test_pruning_by_crd_schema() -> None:
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"maxTrials": {"type": "integer"}}},
        "status": {"type": "object", "properties": {
            "phase": {"type": "string"},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}
    crd = crd_manifest("nassearches", "NASSearch", short_names=["nas"], schema=schema)
    async with start_test_bed(crds=[crd]) as bed:
        created = await bed.client.create(NASSEARCHES, {**search("s1"), "spec": {"maxTrials": 2, "typo": 1}})
        assert created["spec"] == {"maxTrials": 2}
        status = await bed.client.patch(NASSEARCHES, "s1", {"status": {
            "phase": "Running", "bestReward": 0.9, "extra": {"anything": 1}}}, subresource="status")
        assert status["status"] == {"phase": "Running", "extra": {"anything": 1}}


# -- deletion: finalizers and garbage collection ---------------------------------------------------

async def test_finalizers_hold_deletion_until_removed(kube: KubeTestBed) -> None:
    await kube.client.create(NASSEARCHES, {**search("s1"), "metadata": {
        "name": "s1", "finalizers": ["kubenas.dev/finalizer"]}})
    listed = await kube.client.request("GET", f"/apis/{GROUP}/{VERSION}/nassearches")
    async with kube.client.watch(NASSEARCHES, resourceVersion=listed["metadata"]["resourceVersion"]) as watch:
        marked = await kube.client.delete(NASSEARCHES, "s1")
        assert marked["metadata"]["deletionTimestamp"]
        assert marked["metadata"]["generation"] == 2  # as the server does on graceful deletion
        event = await watch.next()
        assert event["type"] == "MODIFIED" and event["object"]["metadata"]["deletionTimestamp"]

        still = await kube.client.get(NASSEARCHES, "s1")
        assert still["metadata"]["finalizers"] == ["kubenas.dev/finalizer"]
        again = await kube.client.delete(NASSEARCHES, "s1")  # a repeated delete changes nothing
        assert again["metadata"]["resourceVersion"] == still["metadata"]["resourceVersion"]
        await expect_error(422, "Invalid", kube.client.patch(
            NASSEARCHES, "s1", {"metadata": {"finalizers": ["kubenas.dev/finalizer", "other"]}}))

        await kube.client.patch(NASSEARCHES, "s1", {"metadata": {"finalizers": None}})
        event = await watch.next()
        assert event["type"] == "DELETED" and event["object"]["metadata"]["name"] == "s1"
        assert await kube.client.find(NASSEARCHES, "s1") is None
        await kube.client.create(NASSEARCHES, search("s1"))  # the name is free again


async def test_owner_deletion_cascades_transitively(kube: KubeTestBed) -> None:
    owner = await kube.client.create(NASSEARCHES, search("s1"))
    trial = await kube.client.create(NASTRIALS, {"metadata": {"name": "s1-t0", "ownerReferences": [owner_ref(owner)]}})
    job = await kube.client.create(JOBS, {"metadata": {"name": "s1-t0", "ownerReferences": [owner_ref(trial)]}})
    await kube.client.create(PODS, {"metadata": {"name": "s1-t0-abcde", "ownerReferences": [owner_ref(job)]}})
    checkpoint = await kube.client.create(CONFIGMAPS, {"metadata": {"name": "s1-ckpt", "ownerReferences": [owner_ref(owner)]}})
    other = await kube.client.create(NASSEARCHES, search("s2"))
    shared = await kube.client.create(CONFIGMAPS, {"metadata": {
        "name": "shared", "ownerReferences": [owner_ref(owner), owner_ref(other)]}})
    assert shared["metadata"]["uid"] != checkpoint["metadata"]["uid"]
    held = await kube.client.create(NASTRIALS, {"metadata": {
        "name": "held", "finalizers": ["kubenas.dev/finalizer"], "ownerReferences": [owner_ref(owner)]}})

    await kube.client.delete(NASSEARCHES, "s1")
    for resource, name in ((NASTRIALS, "s1-t0"), (JOBS, "s1-t0"), (PODS, "s1-t0-abcde"), (CONFIGMAPS, "s1-ckpt")):
        assert await kube.client.find(resource, name) is None, (resource, name)
    # A dependent with another live owner stays, without the dead owner's reference.
    survivor = await kube.client.get(CONFIGMAPS, "shared")
    assert [r["uid"] for r in survivor["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]
    # A dependent with finalizers is being deleted, and waits for them like any object.
    pending = await kube.client.get(NASTRIALS, "held")
    assert pending["metadata"]["deletionTimestamp"] and pending["metadata"]["uid"] == held["metadata"]["uid"]


async def test_orphaning_and_the_job_default(kube: KubeTestBed) -> None:
    owner = await kube.client.create(NASSEARCHES, search("s1"))
    await kube.client.create(CONFIGMAPS, {"metadata": {"name": "c", "ownerReferences": [owner_ref(owner)]}})
    await kube.client.delete(NASSEARCHES, "s1", propagation="Orphan")
    kept = await kube.client.get(CONFIGMAPS, "c")
    assert "ownerReferences" not in kept["metadata"]

    # batch/v1 Jobs deleted without a policy orphan their Pods, as on a real server.
    job = await kube.client.create(JOBS, {"metadata": {"name": "j1"}})
    await kube.client.create(PODS, {"metadata": {"name": "j1-pod", "ownerReferences": [owner_ref(job)]}})
    await kube.client.delete(JOBS, "j1")
    assert await kube.client.find(PODS, "j1-pod") is not None
    job = await kube.client.create(JOBS, {"metadata": {"name": "j2"}})
    await kube.client.create(PODS, {"metadata": {"name": "j2-pod", "ownerReferences": [owner_ref(job)]}})
    await kube.client.delete(JOBS, "j2", propagation="Background")
    assert await kube.client.find(PODS, "j2-pod") is None


# -- watches ----------------------------------------------------------------------------------------

async def test_watch_from_a_resource_version_does_not_replay_everything(kube: KubeTestBed) -> None:
    await kube.client.create(NASSEARCHES, search("old"))
    listed = await kube.client.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/default/nassearches")
    version = listed["metadata"]["resourceVersion"]
    await kube.client.create(NASSEARCHES, search("new"))
    await kube.client.patch(NASSEARCHES, "old", {"spec": {"maxTrials": 7}})

    async with kube.client.watch(NASSEARCHES, resourceVersion=version) as watch:
        first, second = await watch.next(), await watch.next()
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "new")
        assert (second["type"], second["object"]["spec"]) == ("MODIFIED", {"maxTrials": 7})
        assert await watch.quiet()
        await kube.client.delete(NASSEARCHES, "new")
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "new")
        assert int(event["object"]["metadata"]["resourceVersion"]) > int(second["object"]["metadata"]["resourceVersion"])

    # Without a version, a watch starts with the current objects as ADDED.
    async with kube.client.watch(NASSEARCHES) as watch:
        event = await watch.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "old")
        assert await watch.quiet()

    # The initial-events protocol that kopf can opt into ends with a bookmark.
    async with kube.client.watch(NASSEARCHES, sendInitialEvents="true", allowWatchBookmarks="true",
                                 resourceVersionMatch="NotOlderThan") as watch:
        assert (await watch.next())["type"] == "ADDED"
        bookmark = await watch.next()
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}

    async with kube.client.watch(NASSEARCHES, timeoutSeconds="0.2") as watch:
        await watch.next()
        assert await watch.next() is None  # the server ends the stream after timeoutSeconds


async def test_watch_from_a_version_the_server_no_longer_has_is_410() -> None:
    async with start_test_bed(history_limit=3) as bed:
        for index in range(5):
            await bed.client.create(CONFIGMAPS, {"metadata": {"name": f"c{index}"}})
        async with bed.client.watch(CONFIGMAPS, resourceVersion="1") as watch:
            event = await watch.next()
            assert event["type"] == "ERROR" and event["object"]["code"] == 410
            assert await watch.next() is None


# -- request accounting and the kmock DSL ---------------------------------------------------------

async def test_requests_are_counted_per_verb_and_resource(kube: KubeTestBed) -> None:
    before = await kube.call_counts()
    assert not before  # the emulator's own set-up made no requests
    await kube.client.create(NASSEARCHES, search("s1"))
    await kube.client.patch(NASSEARCHES, "s1", {"status": {"phase": "Running"}}, subresource="status")
    await kube.client.patch(NASSEARCHES, "s1", {"status": {"phase": "Done"}}, subresource="status")
    await kube.client.list_objects(JOBS, label_selector="kubenas.dev/search=s1")
    await kube.client.find(JOBS, "none")
    counts = await kube.call_counts()
    assert counts == {
        ("create", f"nassearches.{GROUP}", "kubenas-tests"): 1,
        ("patch", f"nassearches.{GROUP}/status", "kubenas-tests"): 2,
        ("list", "jobs.batch", "kubenas-tests"): 1,
        ("get", "jobs.batch", "kubenas-tests"): 1,
    }
    assert await kube.calls() == 0  # by default, the tests' own requests are left out
    assert await kube.calls("patch", user_agent="kubenas-tests", exclude_user_agent=None) == 2
    # Direct store access is not API traffic.
    await kube.set_status(NASSEARCHES, "s1", {"phase": "Failed"})
    assert await kube.call_counts() == counts
    assert (await kube.read(NASSEARCHES, "s1"))["status"]["phase"] == "Failed"


async def test_faults_injected_through_kmock_reactions_prevent_the_write(kube: KubeTestBed) -> None:
    def inject() -> None:
        kube.emulator["post", kmock.resource("batch", "v1", "jobs")][:1] << 500

    await kube.server.call(inject)
    with pytest.raises(ApiStatusError) as info:
        await kube.client.create(JOBS, {"metadata": {"name": "j1"}})
    assert info.value.code == 500
    assert await kube.read(JOBS, "j1") is None  # a failed request stored nothing
    await kube.client.create(JOBS, {"metadata": {"name": "j1"}})  # the next one goes through
    assert await kube.read(JOBS, "j1") is not None


async def test_sync_kubernetes_client_in_a_thread(kube: KubeTestBed) -> None:
    """The synchronous client works against the emulator when it runs off the event loop."""

    def play_job_controller() -> tuple[int, str]:
        with kubernetes.client.ApiClient(kube.kubernetes_configuration()) as client:
            batch = kubernetes.client.BatchV1Api(client)
            batch.create_namespaced_job("default", {"metadata": {"name": "j1"}, "spec": {"template": {}}})
            job = batch.patch_namespaced_job_status("j1", "default", {"status": {"succeeded": 1}})
            try:
                batch.create_namespaced_job("default", {"metadata": {"name": "j1"}})
            except kubernetes.client.ApiException as e:
                return job.status.succeeded, f"{e.status} {e.reason}"
            return job.status.succeeded, "no conflict"

    succeeded, conflict = await asyncio.to_thread(play_job_controller)
    assert succeeded == 1 and conflict.startswith("409")


async def test_the_bed_reports_crashes_of_the_emulator_itself() -> None:
    """A 500 from a bug in the emulator must fail the test, not pass as an API answer."""
    with pytest.raises(AssertionError, match="the emulator failed on 1 request"):
        async with start_test_bed() as bed:
            def corrupt_the_store() -> None:  # as a test writing into kmock's store by hand might
                bed.emulator.objects[JOBS, "default", "x"] = {"metadata": "not an object"}

            await bed.server.call(corrupt_the_store)
            with pytest.raises(ApiStatusError) as info:
                await bed.client.list_objects(JOBS, label_selector="a=b")
            assert info.value.code == 500
