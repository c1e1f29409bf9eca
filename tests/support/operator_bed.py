"""Shared pieces of the operator tests (no tests here).

``OperatorBed`` runs the real kubenas operator (the handlers of
``nas_operator.kube.handlers`` with the real kopf settings) against the API
emulator, and the real status API on 127.0.0.1. ``FakeCluster`` plays what no
test machine has: the Job controller and the kubelet (it creates the Pod of each
Job and moves Pod and Job statuses) and the trainer (it POSTs reports to the
report URL found in the Job's env, with the token read from the Secret that the
Job's ``secretKeyRef`` names, and writes the termination message). Each Job is
handed to a per-test *script* that decides what its trainer does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import string
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest_asyncio

from nas_operator.kube.api import KubeApi
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.handlers import build_registry
from nas_operator.kube.operator_state import OperatorRuntime, operator_settings
from nas_operator.status_api import StatusServer, create_app
from tests.support.crds import CRDS, errors_of
from tests.support.kube_emulator import (
    JOBS,
    NASSEARCHES,
    NASTRIALS,
    PODS,
    SECRETS,
    TEST_USER_AGENT,
    ApiError,
    KubeTestBed,
    RunningOperator,
    load_crd_manifests,
    start_test_bed,
)

T = TypeVar("T")
ACTIVE_CLUSTERS: list[FakeCluster] = []
OPERATOR_REQUESTS: set[tuple[str, str, str]] = set()
"""(verb, resource, user agent) of every API request an operator made in these tests; the
RBAC test checks them against the chart's rules."""


def crd_test_bed() -> Any:
    """A ``kube`` fixture whose emulator serves the generated CRDs (so it prunes what their
    schemas lack). Operator test modules bind it with ``kube = crd_test_bed()``."""

    @pytest_asyncio.fixture
    async def kube() -> AsyncIterator[KubeTestBed]:
        async with start_test_bed(crds=load_crd_manifests(CRDS)) as bed:
            yield bed

    return kube


def _without_nulls(value: Any) -> Any:
    """A merge patch's result as stored: null means 'remove'."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
Script = Callable[["FakeCluster", dict[str, Any]], Awaitable[None]]


def search_manifest(name: str, **sections: Any) -> dict[str, Any]:
    """A small REINFORCE search on the ENAS macro space (cheap to sample), sections overridden."""
    spec: dict[str, Any] = {
        "searchSpace": {"type": "enas-macro", "options": {"layers": 4}},
        "strategy": {"type": "reinforce", "batchSize": 4, "seed": 3},
        "budget": {"maxTrials": 8, "parallelism": 4},
        "trial": {"training": {"epochs": 2}, "retries": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def accuracy_of(tokens: list[int]) -> float:
    """A deterministic 'validation accuracy' the controller can learn: more zeros is better."""
    return round(0.2 + 0.7 * sum(1 for t in tokens if t == 0) / max(1, len(tokens)), 6)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def document_of(job: dict[str, Any]) -> dict[str, Any]:
    return json.loads(env_of(job)["KUBENAS_TRIAL_JSON"])


def final_report(job: dict[str, Any], accuracy: float | None = None,
                 epochs: int = 2) -> dict[str, Any]:
    """The final Report a trainer of this Job would send (accuracy from its tokens)."""
    doc = document_of(job)
    if accuracy is None:
        accuracy = accuracy_of(doc["architecture"]["tokens"])
    if doc["spaceType"].endswith("-rnn"):  # language spaces are scored by perplexity
        per_epoch = [{"val_perplexity": round(100.0 / accuracy / (i + 1), 4)}
                     for i in range(epochs)]
    else:
        per_epoch = [{"val_accuracy": round(accuracy * (i + 1) / epochs, 6),
                      "loss": 1.0 / (i + 1)} for i in range(epochs)]
    return {"kind": "final", "trial": doc["trial"], "attempt": doc["attempt"],
            "metrics": per_epoch[-1], "epochs": per_epoch}


class Gate:
    """A gate scripts wait at (in the cluster's thread) and tests open (from the test loop)."""

    def __init__(self) -> None:
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        while not self._open.is_set():
            await asyncio.sleep(0.02)


class FakeCluster:
    """Job controller + kubelet + trainer for the operator tests (see module doc).

    It runs in its own thread and event loop: kopf cancels, when it exits, every task
    of its loop created after it started, and a restart test needs the cluster to go on
    while no operator runs. Tests call into it with ``await cluster.do(coro)``.
    """

    def __init__(self, kube: KubeTestBed, script: Script, namespace: str = "default"):
        self.kube = kube
        self.script = script
        self.namespace = namespace
        self.seen: set[str] = set()
        self.pods: dict[str, str] = {}
        """Job name -> its pod's name."""
        self.responses: list[tuple[str, int, dict[str, Any]]] = []
        """(trial, HTTP status, body) of every report POSTed."""
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fake cluster", daemon=True)

    async def __aenter__(self) -> FakeCluster:
        ACTIVE_CLUSTERS.append(self)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, 10)
        ACTIVE_CLUSTERS.remove(self)
        if self.errors and exc == (None, None, None):
            raise AssertionError(f"fake cluster scripts failed: {self.errors!r}")

    async def do(self, coro: Awaitable[T]) -> T:
        """Run a coroutine of this cluster (post, terminate, ...) in its thread."""
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))  # type: ignore[arg-type]

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession()
        poller = asyncio.create_task(self._poll())
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for task in [poller, *self._tasks]:
                task.cancel()
            for task in [poller, *self._tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._session.close()

    async def _poll(self) -> None:
        while True:
            for job in await self.kube.read_all(JOBS, self.namespace):
                name = job["metadata"]["name"]
                if name in self.seen or job["metadata"].get("deletionTimestamp"):
                    continue
                self.seen.add(name)
                task = asyncio.create_task(self._play(job), name=f"play {name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.03)

    async def _play(self, job: dict[str, Any]) -> None:
        try:
            await self.script(self, job)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            if exc.code != 404:  # 404: the operator deleted the Job (suspend, cancel, deletion)
                self.errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - surfaced at the end of the test
            self.errors.append(exc)

    # -- the Job controller and the kubelet -------------------------------------------------
    async def create_pod(self, job: dict[str, Any]) -> str:
        """The Job's pod, as the Job controller makes it (labels, owner), phase Pending."""
        name = f"{job['metadata']['name']}-{''.join(random.choices(string.ascii_lowercase, k=5))}"
        template = job["spec"]["template"]
        labels = {**template["metadata"]["labels"], "job-name": job["metadata"]["name"],
                  "batch.kubernetes.io/job-name": job["metadata"]["name"],
                  "controller-uid": job["metadata"]["uid"]}
        await self.kube.put(PODS, {
            "metadata": {"name": name, "labels": labels, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": template["spec"]}, self.namespace)
        self.pods[job["metadata"]["name"]] = name
        return name

    async def pod_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        await self.kube.set_status(PODS, self.pods[job["metadata"]["name"]], status,
                                   self.namespace)

    async def job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        await self.kube.set_status(JOBS, job["metadata"]["name"], status, self.namespace)

    async def run(self, job: dict[str, Any]) -> None:
        """Pod scheduled and running; Job active and ready."""
        if job["metadata"]["name"] not in self.pods:
            await self.create_pod(job)
        await self.pod_status(job, {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}], "containerStatuses": [
            {"name": "trainer", "ready": True, "state": {"running": {}}}]})
        await self.job_status(job, {"active": 1, "ready": 1})

    async def terminate(self, job: dict[str, Any], exit_code: int, message: str | None = None,
                        *, finish_job: bool = True) -> None:
        """The trainer container exits; then the Job controller finishes the Job."""
        terminated: dict[str, Any] = {"exitCode": exit_code,
                                      "reason": "Completed" if exit_code == 0 else "Error"}
        if message is not None:
            terminated["message"] = message
        await self.pod_status(job, {"phase": "Succeeded" if exit_code == 0 else "Failed",
                                    "containerStatuses": [{"name": "trainer", "ready": False,
                                                           "state": {"terminated": terminated}}]})
        if finish_job:
            await self.finish_job(job, exit_code == 0)

    async def finish_job(self, job: dict[str, Any], success: bool, reason: str | None = None,
                         message: str = "") -> None:
        ctype = "Complete" if success else "Failed"
        await self.job_status(job, {"active": 0, "ready": 0, "succeeded" if success else "failed": 1,
                                    "conditions": [{"type": ctype, "status": "True",
                                                    "reason": reason or ctype,
                                                    "message": message}]})

    # -- the trainer --------------------------------------------------------------------
    async def token(self, job: dict[str, Any]) -> str:
        """What the kubelet injects for KUBENAS_REPORT_TOKEN: the Secret key the Job names."""
        ref = env_of(job)["KUBENAS_REPORT_TOKEN"]["secretKeyRef"]
        for _ in range(100):
            secret = await self.kube.read(SECRETS, ref["name"], self.namespace)
            if secret is not None and ref["key"] in (secret.get("data") or {}):
                return base64.b64decode(secret["data"][ref["key"]]).decode()
            await asyncio.sleep(0.02)
        raise AssertionError(f"secret {ref['name']} has no key {ref['key']}")

    async def post(self, job: dict[str, Any], report: dict[str, Any],
                   token: str | None = None) -> tuple[int, dict[str, Any]]:
        """POST a report where the Job's env says, as the trainer does."""
        assert self._session is not None
        url = env_of(job)["KUBENAS_REPORT_URL"]
        token = token if token is not None else await self.token(job)
        for _ in range(200):  # like the trainer's reporter: 503 and no server are retried
            try:
                async with self._session.post(url, json=report, headers={
                        "Authorization": f"Bearer {token}"}) as response:
                    body = await response.json(content_type=None)
                    if response.status != 503:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no operator took the report of {report['trial']}")
        self.responses.append((report["trial"], response.status, body))
        return response.status, body

    async def succeed(self, job: dict[str, Any], accuracy: float | None = None, *,
                      http: bool = True) -> dict[str, Any]:
        """A whole successful attempt: run, report (unless ``http`` is False), exit 0."""
        await self.run(job)
        report = final_report(job, accuracy)
        if http:
            status, body = await self.post(job, report)
            if status == 409 and await self.kube.read(JOBS, job["metadata"]["name"],
                                                      self.namespace) is None:
                return report  # the operator stopped this attempt meanwhile (suspend)
            assert status == 200, body
        await self.terminate(job, 0, json.dumps(report))
        return report


async def run_container(cluster: FakeCluster, job: dict[str, Any], pod: Path, *, cwd: Path,
                        files: Mapping[str, Path] | None = None,
                        timeout: float = 240) -> tuple[int, str]:
    """Start the Job's own container command as a local process, as a kubelet would: the
    Job's env with the token from the Secret, its emptyDir ``/checkpoints`` and termination
    file as folders of ``pod``; ``files`` maps paths of the image to local files, ``python``
    is this interpreter. Returns (exit code, termination message, else the stderr tail)."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    (pod / "checkpoints").mkdir(parents=True, exist_ok=True)
    termination = pod / "termination-log"
    env = {k: v for k, v in env_of(job).items() if isinstance(v, str)}
    document = json.loads(env["KUBENAS_TRIAL_JSON"])
    document["checkpointDir"] = str(pod / "checkpoints")  # where the volume is mounted
    env.update(KUBENAS_TRIAL_JSON=json.dumps(document),
               KUBENAS_REPORT_TOKEN=await cluster.token(job),
               KUBENAS_TERMINATION_FILE=str(termination),
               PYTHONPATH=os.pathsep.join(sys.path), HOME=str(pod), TMPDIR=str(pod))
    words = [*container["command"], *container.get("args", [])]
    words = [str((files or {}).get(w, w)) for w in words]
    words[0] = sys.executable if words[0] in ("python", "python3") else words[0]
    proc = await asyncio.create_subprocess_exec(
        *words, env=env, cwd=cwd, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    message = termination.read_text() if termination.exists() else stderr.decode()[-4096:]
    return proc.returncode, message


async def wait_for(condition: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                   message: str = "") -> Any:
    """Poll ``condition`` until truthy (a failed wait names what it waited for)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        failed = [e for cluster in ACTIVE_CLUSTERS for e in cluster.errors]
        if failed:  # a fake trainer broke: say so now rather than time out later
            raise AssertionError(f"fake cluster scripts failed: {failed!r}")
        result = await condition()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        await asyncio.sleep(0.05)


class OperatorBed:
    """The real operator (handlers + runtime + status API) against a ``KubeTestBed``."""

    def __init__(self, kube: KubeTestBed, config: OperatorConfig | None = None):
        self.kube = kube
        self.config = config or OperatorConfig(status_interval=0.2)
        self.runtime: OperatorRuntime | None = None
        self.server: StatusServer | None = None
        self.port = 0
        """The status API's port, kept across restarts (running pods keep their report URL)."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OperatorRuntime]:
        """One operator process's lifetime: status API + kopf; restartable (a new runtime)."""
        api = KubeApi.from_connection_info(self.kube.connection_info())
        self._record(api)
        runtime = OperatorRuntime(self.config, api)
        server = StatusServer(create_app(runtime.searches, runtime.metrics,
                                         starting=runtime.search_starting), port=self.port)
        runtime.report_url_base = await server.start()
        self.port = server.port
        self.runtime, self.server = runtime, server
        try:
            async with self.kube.operator(build_registry(runtime), settings=operator_settings(),
                                          stop_timeout=30) as op:
                self.op: RunningOperator = op
                yield runtime
                await runtime.events.flush()
        finally:
            OPERATOR_REQUESTS.update(k for k, n in (await self.kube.call_counts()).items()
                                     if n and k[2] != TEST_USER_AGENT)
            await server.stop()
            await api.close()
        self.check_writes()

    def _record(self, api: KubeApi) -> None:
        """Keep every NASSearch/NASTrial write the operator makes, to check it against the CRD."""
        self.writes: list[tuple[str, str | None, Any]] = getattr(self, "writes", [])
        patch, create = api.patch, api.create

        async def recording_patch(resource: Any, namespace: Any, name: str, body: Any,
                                  **kw: Any) -> Any:
            if resource.group == "kubenas.dev":
                self.writes.append((resource.plural, kw.get("subresource"), body))
            return await patch(resource, namespace, name, body, **kw)

        async def recording_create(resource: Any, namespace: Any, body: Any) -> Any:
            if resource.group == "kubenas.dev":
                self.writes.append((resource.plural, "create", body))
            return await create(resource, namespace, body)

        api.patch, api.create = recording_patch, recording_create  # type: ignore[method-assign]

    def check_writes(self) -> None:
        """Every status (and NASTrial) the operator wrote validates against the CRD schema."""
        problems = []
        for plural, sub, body in self.writes:
            kind = "NASSearch" if plural == "nassearches" else "NASTrial"
            if sub == "status":
                problems += errors_of(kind, _without_nulls(body["status"]), "status")
            elif sub == "create":
                problems += errors_of(kind, body)
        assert not problems, f"the operator wrote what its CRDs reject: {problems[:10]}"

    async def search(self, name: str) -> dict[str, Any] | None:
        return await self.kube.read(NASSEARCHES, name)

    async def phase(self, name: str) -> str | None:
        obj = await self.search(name)
        return ((obj or {}).get("status") or {}).get("phase")

    async def wait_phase(self, name: str, *phases: str, timeout: float = 60.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            obj = await self.search(name)
            return obj if ((obj or {}).get("status") or {}).get("phase") in phases else None

        return await wait_for(reached, timeout, f"{name} phase in {phases}")

    async def trials(self, search: str) -> list[dict[str, Any]]:
        return await self.kube.read_all(NASTRIALS, label_selector=f"kubenas.dev/search={search}")

    async def jobs(self, search: str) -> list[dict[str, Any]]:
        return await self.kube.read_all(JOBS, label_selector=f"kubenas.dev/search={search}")
