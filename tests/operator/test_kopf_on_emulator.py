"""A real kopf operator against the emulator: the properties the kubenas operator relies on.

The handlers here are a stand-in for the operator's: on creation of a NASSearch
they create an owned ConfigMap (with the sync ``kubernetes`` client, in kopf's
thread pool, as operator code may), write the status, and post an event; a
daemon runs while the search exists; a deletion handler makes kopf keep its
finalizer on the object.
"""

import asyncio
import dataclasses
import threading
from typing import Any

import kopf
import kubernetes

from tests.support.kube_emulator import CONFIGMAPS, EVENTS, GROUP, NASSEARCHES, VERSION, KubeTestBed

FINALIZER = f"{GROUP}/finalizer"


@dataclasses.dataclass
class Record:
    """What the handlers saw; handlers run in kopf's threads, the test reads after waiting."""

    creates: int = 0
    deletes: int = 0
    daemon_started: threading.Event = dataclasses.field(default_factory=threading.Event)
    daemon_stopped: threading.Event = dataclasses.field(default_factory=threading.Event)


def build_registry(record: Record, bed: KubeTestBed) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.create(GROUP, VERSION, "nassearches", registry=registry, id="start_search")
    def start_search(body: kopf.Body, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> str:
        record.creates += 1
        configmap = {"metadata": {"name": f"{name}-checkpoint"}, "data": {"step": "0"}}
        kopf.adopt(configmap, owner=body)
        with kubernetes.client.ApiClient(bed.kubernetes_configuration()) as api:
            kubernetes.client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap)
        patch.status["phase"] = "Running"
        kopf.info(body, reason="SearchStarted", message="the search has started")
        return configmap["metadata"]["name"]

    @kopf.on.delete(GROUP, VERSION, "nassearches", registry=registry)
    def stop_search(**_: Any) -> None:
        record.deletes += 1

    @kopf.daemon(GROUP, VERSION, "nassearches", registry=registry)
    async def search_loop(stopped: kopf.DaemonStopped, **_: Any) -> None:
        record.daemon_started.set()
        await stopped.wait()
        record.daemon_stopped.set()

    return registry


async def test_operator_handles_a_search_once_and_cleans_up(kube: KubeTestBed) -> None:
    record = Record()
    async with kube.operator(build_registry(record, kube)) as operator:
        await kube.client.create(NASSEARCHES, {"metadata": {"name": "s1"}, "spec": {"maxTrials": 2}})

        async def running() -> Any:
            obj = await kube.read(NASSEARCHES, "s1")
            return obj if obj and obj.get("status", {}).get("phase") == "Running" else None

        search = await kube.wait_for(running, message="status.phase=Running")
        assert FINALIZER in search["metadata"]["finalizers"]
        assert f"{GROUP}/last-handled-configuration" in search["metadata"]["annotations"]
        assert search["status"]["start_search"] == "s1-checkpoint"  # the handler's result

        checkpoint = await kube.read(CONFIGMAPS, "s1-checkpoint")
        assert checkpoint is not None
        assert checkpoint["metadata"]["ownerReferences"][0]["uid"] == search["metadata"]["uid"]
        assert await asyncio.to_thread(record.daemon_started.wait, 5)

        # The status reached the object through the status subresource, never the main object.
        assert await kube.calls("patch", "nassearches.kubenas.dev/status") >= 1

        # Settled: no handler loop, no further writes.
        async def quiet() -> bool:
            before = await kube.calls()
            await asyncio.sleep(0.5)
            return before == await kube.calls()

        await kube.wait_for(quiet, timeout=5, message="the operator to go quiet")
        assert record.creates == 1

        events = await kube.client.list_objects(EVENTS, field_selector="involvedObject.name=s1")
        assert "SearchStarted" in {e["reason"] for e in events}

        await kube.client.delete(NASSEARCHES, "s1")

        async def gone() -> bool:
            return await kube.read(NASSEARCHES, "s1") is None

        await kube.wait_for(gone, message="the search to be deleted")
        assert record.deletes == 1
        assert record.daemon_stopped.is_set()
        assert await kube.read(CONFIGMAPS, "s1-checkpoint") is None  # cascaded
    assert operator.task.done() and operator.task.exception() is None


async def test_a_restarted_operator_resumes_without_handling_again(kube: KubeTestBed) -> None:
    """Handled state lives in the object (our annotations), so a new operator does not redo it."""
    record = Record()
    registry = build_registry(record, kube)
    resumed: list[str] = []

    @kopf.on.resume(GROUP, VERSION, "nassearches", registry=registry)
    def resume_search(name: str, **_: Any) -> None:
        resumed.append(name)

    async def handled() -> Any:
        obj = await kube.read(NASSEARCHES, "s1")
        return obj if obj and obj.get("status", {}).get("phase") == "Running" else None

    async with kube.operator(registry):
        await kube.client.create(NASSEARCHES, {"metadata": {"name": "s1"}, "spec": {"maxTrials": 2}})
        await kube.wait_for(handled, message="the first operator to handle the search")
    # Stopping with the search alive stops its daemon too.
    assert record.daemon_stopped.is_set()
    record.daemon_started.clear()
    record.daemon_stopped.clear()

    async with kube.operator(registry):
        assert await asyncio.to_thread(record.daemon_started.wait, 5)
        assert resumed == ["s1"]
        assert record.creates == 1
    assert (await kube.read(NASSEARCHES, "s1"))["metadata"]["finalizers"] == [FINALIZER]
