"""The kopf handlers: thin adapters from kopf's callbacks to the controllers and the tracker.

* a daemon per NASSearch runs its ``SearchSupervisor`` (the search loop lives
  inside it and dies with it);
* a spec change goes to that controller (live budget, suspend, trial template);
* Job and trainer-Pod events go to the ``JobTracker`` (started / exited / lost);
* deletion needs no work here: the daemon stops and garbage collection removes
  the search's children; the handler only exists so kopf holds our finalizer
  until the daemon has stopped.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from nas_operator.kube.labels import (
    GROUP,
    LABEL_ROLE,
    LABEL_SEARCH,
    ROLE_TRAINER,
    SEARCH_PLURAL,
    VERSION,
)
from nas_operator.kube.operator_state import OperatorRuntime
from nas_operator.kube.supervisor import SearchSupervisor

DAEMON_STOP_GRACE = 20.0
"""Seconds a stopping search may take to write its last checkpoint and statuses."""
DAEMON_CANCEL_TIMEOUT = 10.0
"""Seconds given to a daemon cancelled after its grace period."""


def build_registry(runtime: OperatorRuntime) -> kopf.OperatorRegistry:
    """A fresh kopf registry with the kubenas handlers bound to ``runtime``."""
    registry = kopf.OperatorRegistry()

    @kopf.daemon(GROUP, VERSION, SEARCH_PLURAL, id="search", registry=registry,
                 cancellation_backoff=DAEMON_STOP_GRACE,
                 cancellation_timeout=DAEMON_CANCEL_TIMEOUT)
    async def search_daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await SearchSupervisor(runtime, _plain(body)).run(stopped)

    @kopf.on.update(GROUP, VERSION, SEARCH_PLURAL, id="spec", field="spec", registry=registry)
    async def spec_changed(body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
        controller = runtime.controllers.get((namespace, name))
        if controller is not None:
            await controller.apply_spec(_plain(body))

    @kopf.on.delete(GROUP, VERSION, SEARCH_PLURAL, id="delete", registry=registry)
    async def search_deleted(**_: Any) -> None:
        return None

    @kopf.on.event("batch", "v1", "jobs", id="jobs", registry=registry,
                   labels={LABEL_SEARCH: kopf.PRESENT})
    async def job_event(event: kopf.RawEvent, **_: Any) -> None:
        await runtime.tracker.on_job(event.get("type"), dict(event["object"]))

    @kopf.on.event("v1", "pods", id="pods", registry=registry,
                   labels={LABEL_ROLE: ROLE_TRAINER})
    async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
        await runtime.tracker.on_pod(event.get("type"), dict(event["object"]))

    return registry


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A detached plain copy of a kopf body (kopf's views change under us)."""
    return copy.deepcopy(dict(body))
