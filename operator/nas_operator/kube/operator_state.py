"""What every handler shares: config, API client, status-API registry, metrics, tracker.

One ``OperatorRuntime`` per operator process. ``operator_settings`` fixes the
kopf settings from day one: our own finalizer and annotation prefix, no
peering (the chart runs one replica with the Recreate strategy, so two
operators never drive one search), warnings-only kopf events.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Protocol

import kopf

from nas_operator.kube.api import KubeApi
from nas_operator.kube.config import OperatorConfig
from nas_operator.kube.events import EventRecorder
from nas_operator.kube.labels import FINALIZER, GROUP
from nas_operator.kube.observe import JobTracker
from nas_operator.metrics import OperatorMetrics
from nas_operator.status_api import SearchRegistry

STARTUP_GRACE = 30.0
"""Seconds after start during which reports for a search not loaded yet get 503 (retry)."""


class RunningSearch(Protocol):
    """What the runtime asks of a search's controller (``kube/supervisor.py``)."""

    @property
    def starting(self) -> bool:
        """Whether the search has no loop yet but will get one."""
        ...

    async def apply_spec(self, body: dict[str, Any]) -> None:
        """The NASSearch's spec changed."""
        ...


def operator_settings(config: OperatorConfig | None = None) -> kopf.OperatorSettings:
    """kopf settings of the kubenas operator (tests run the operator with exactly these)."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.watching.reconnect_backoff = 0.5
    # A deleted search's daemon drops everything at once; wait that long for it to go, so the
    # finalizer is released in the same pass instead of after a polling round.
    settings.background.instant_exit_timeout = 0.5
    return settings


@dataclasses.dataclass
class OperatorRuntime:
    """Shared state of one operator process (built before kopf starts)."""

    config: OperatorConfig
    api: KubeApi
    metrics: OperatorMetrics = dataclasses.field(default_factory=OperatorMetrics)
    searches: SearchRegistry = dataclasses.field(default_factory=SearchRegistry)
    report_url_base: str | None = None
    """Where trial pods send reports (the chart's Service URL, or the bound address)."""
    tracker: JobTracker = dataclasses.field(init=False)
    events: EventRecorder = dataclasses.field(init=False)
    controllers: dict[tuple[str, str], RunningSearch] = dataclasses.field(default_factory=dict)
    """Live ``SearchSupervisor`` s (``kube/supervisor.py``) by (namespace, name)."""
    started_at: float = dataclasses.field(default_factory=time.monotonic)
    exiting: bool = False
    """Set when the operator is shutting down: reports are retried against the next one."""

    def __post_init__(self) -> None:
        self.tracker = JobTracker(self.api)
        self.events = EventRecorder(self.api, self.config.pod_name)
        if self.report_url_base is None:
            self.report_url_base = self.config.report_url_base

    def search_starting(self, namespace: str, name: str) -> bool:
        """Whether a search without a loop may still get one (its reports should be retried)."""
        if self.exiting:
            return True
        controller = self.controllers.get((namespace, name))
        if controller is not None:
            return controller.starting
        return time.monotonic() - self.started_at < STARTUP_GRACE

    def ready(self) -> bool:
        """Readiness: no search is still starting (reports for it would be refused)."""
        return not any(c.starting for c in self.controllers.values())
