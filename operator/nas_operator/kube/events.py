"""Kubernetes Events (core/v1) about searches and trials, posted in the background.

Events are for people (``kubectl describe nas``): milestones and problems,
never one per epoch. Posting never blocks or fails the search: events queue up
(bounded; the oldest are dropped under a flood) and a single task posts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from nas_operator.kube.api import EVENTS, KubeApi

log = logging.getLogger(__name__)

COMPONENT = "kubenas-operator"
MAX_QUEUE = 1000
MAX_MESSAGE = 1024


def involved(kind: str, namespace: str, name: str, uid: str | None,
             api_version: str = "kubenas.dev/v1alpha1") -> dict[str, Any]:
    """The ``involvedObject`` of an event."""
    ref = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        ref["uid"] = uid
    return ref


class EventRecorder:
    """Posts events from one background task; create and use it in the operator's loop."""

    def __init__(self, api: KubeApi, instance: str | None = None) -> None:
        self.api = api
        self.instance = instance or COMPONENT
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._serial = 0
        self.posted = 0
        self.dropped = 0

    def post(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an event about ``obj`` (an involvedObject); never raises."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() >= MAX_QUEUE:
            self._queue.get_nowait()
            self.dropped += 1
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._serial += 1
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{obj['name']}.{time.time_ns():x}{self._serial % 1000:03d}",
                         "namespace": obj["namespace"]},
            "involvedObject": obj, "type": type_, "reason": reason,
            "message": message[:MAX_MESSAGE], "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": f"kubenas.dev/{COMPONENT}", "reportingInstance": self.instance,
        }
        self._queue.put_nowait(body)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="events")

    async def _drain(self) -> None:
        assert self._queue is not None
        while not self._queue.empty():
            body = self._queue.get_nowait()
            try:
                await self.api.create(EVENTS, body["metadata"]["namespace"], body)
                self.posted += 1
            except Exception as exc:  # an event is not worth failing anything for
                log.info("event %s not posted: %s", body["reason"], exc)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queued events are posted (tests, shutdown)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
