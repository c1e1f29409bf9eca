"""One NASSearch, from its kopf daemon's start to its stop.

The supervisor validates the spec, gets the search's key from its Secret,
builds a ``SearchLoop`` with the Kubernetes launcher and the ConfigMap
checkpoint store, wires the status writer, registers the loop with the status
API, and waits. An invalid spec never raises out of here: it becomes a
``SpecValid=False`` condition and a Warning Event that name the field, and the
supervisor waits for the next spec change. Spec edits are applied live
(``apply_spec``). When the daemon stops because the operator exits, the loop
checkpoints and trials keep running for the next operator to adopt; when the
search is deleted, garbage collection removes its NASTrials, Jobs, ConfigMaps
and Secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import kopf

from nas_operator.api import SpecError, parse_search, parse_spec, require_trainer
from nas_operator.checkpoint import CheckpointError
from nas_operator.kube.api import NASTRIALS, ApiError
from nas_operator.kube.checkpoint_store import ConfigMapCheckpointStore
from nas_operator.kube.labels import LABEL_SEARCH
from nas_operator.kube.launcher import KubeLauncher
from nas_operator.kube.operator_state import OperatorRuntime
from nas_operator.kube.retention import TrialRetention
from nas_operator.kube.status import StatusWriter, condition, search_ref, write_search_status
from nas_operator.kube.token_secret import TokenSecret
from nas_operator.ledger import FinishedTrial
from nas_operator.loop import TRIAL_ENDINGS, EventReason, LoopEvent, SearchLoop

log = logging.getLogger(__name__)

FINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled", "EarlyStopped"})
START_RETRY = 5.0
"""Seconds between tries to start a search whose start failed on the API (not on its spec)."""


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` completes; cancel the rest."""
    mine = [asyncio.ensure_future(a) for a in aws if not isinstance(a, asyncio.Future)]
    theirs = [a for a in aws if isinstance(a, asyncio.Future)]  # never cancel others' futures
    try:
        await asyncio.wait([*mine, *theirs], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in mine:
            t.cancel()


async def _stopped(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


class SearchSupervisor:
    """Runs one NASSearch; ``run`` is the body of its kopf daemon."""

    def __init__(self, runtime: OperatorRuntime, body: dict[str, Any]) -> None:
        self.runtime = runtime
        self.body = body
        meta = body["metadata"]
        self.namespace: str = meta.get("namespace") or "default"
        self.name: str = meta["name"]
        self.loop: SearchLoop | None = None
        self.writer: StatusWriter | None = None
        self.launcher: KubeLauncher | None = None
        self.store: ConfigMapCheckpointStore | None = None
        self.tokens: TokenSecret | None = None
        self.retention: TrialRetention | None = None
        self.starting = True
        self._changed = asyncio.Event()

    # -- the daemon --------------------------------------------------------------------
    async def run(self, stopped: kopf.DaemonStopped) -> None:
        key = (self.namespace, self.name)
        self.runtime.controllers[key] = self
        try:
            while not stopped.is_set():
                try:
                    if await self._start():
                        break
                except Exception as exc:  # API trouble: say so, retry; other searches go on
                    log.exception("search %s/%s could not start", self.namespace, self.name)
                    await self._abort_start()
                    self.runtime.events.post(search_ref(self.body), "Warning", EventReason.START_FAILED,
                                             f"the search could not start ({exc}); retrying "
                                             f"in {START_RETRY:.0f} s")
                    await _first(asyncio.sleep(START_RETRY), _stopped(stopped))
                    continue
                self.starting = False
                await _first(self._changed.wait(), _stopped(stopped))
                self._changed.clear()
            self.starting = False
            if self.loop is not None and not stopped.is_set():
                # Finished or not, the loop stays registered until the daemon stops: late and
                # repeated reports get their proper answers; the writer mirrors the end.
                await _stopped(stopped)
        finally:
            self.starting = False
            reason = stopped.reason or kopf.DaemonStoppingReason(0)
            if reason & kopf.DaemonStoppingReason.OPERATOR_EXITING:
                self.runtime.exiting = True  # trainers' reports: retry with the next operator
            await self._shutdown(deleted=bool(reason & kopf.DaemonStoppingReason.RESOURCE_DELETED))
            if self.runtime.controllers.get(key) is self:
                del self.runtime.controllers[key]

    async def apply_spec(self, body: dict[str, Any]) -> None:
        """A changed spec (kopf's update handler): applied live, or revalidated if not running."""
        self.body = body
        if self.loop is None:
            self._changed.set()
            return
        generation = body["metadata"].get("generation")
        try:
            spec = parse_spec(body.get("spec"))
            await self.loop.update_spec(spec, generation)
        except SpecError as exc:
            self._invalid("SpecRejected", exc.errors, running=True)
            return
        assert self.writer is not None
        self.writer.set_condition("SpecValid", True, "Accepted",
                                  f"spec generation {generation} applied")

    # -- start ---------------------------------------------------------------------------
    async def _start(self) -> bool:
        """Build and start the loop; False (after reporting why) when the spec is unusable."""
        rt = self.runtime
        try:
            search = require_trainer(parse_search(self._as_document()))
        except SpecError as exc:
            await self._report_invalid("InvalidSpec", exc.errors)
            return False
        self.tokens = TokenSecret(rt.api, self.namespace, self.name)
        key = await self.tokens.ensure(self.body)
        self.store = ConfigMapCheckpointStore(rt.api, self.namespace, self.body)
        self.launcher = KubeLauncher(rt.api, rt.config, rt.tracker, self.tokens, self.body)
        try:  # built off the event loop, in bounded time: other searches never wait on it
            loop = await SearchLoop.create(
                search, self.launcher, key=key, store=self.store,
                metrics=rt.metrics.for_search(self.namespace, self.name),
                status_url=rt.report_url_base, checkpoint_key=self.name)
        except SpecError as exc:
            await self._report_invalid(getattr(exc, "reason", "InvalidSpec"), exc.errors)
            return False
        writer = StatusWriter(rt.api, rt.events, loop, self.body,
                              interval=rt.config.status_interval,
                              concurrency=rt.config.write_concurrency)
        launcher = self.launcher
        writer.trial_exists = lambda t: t in launcher.trial_uids
        writer.trial_uid = lambda t: launcher.trial_uids.get(t)
        launcher.on_trial_object = writer.poke
        launcher.on_problem = writer.trial_problem
        loop.subscribe(self._on_event)
        writer.start()
        self.loop, self.writer = loop, writer
        try:
            restored = await self.store.load(self.name) is not None
            if not restored:
                await self._refuse_orphans()
            await loop.start()
        except (SpecError, CheckpointError) as exc:
            errors = exc.errors if isinstance(exc, SpecError) else [str(exc)]
            await writer.close(flush=False)
            self.loop = self.writer = None
            await self._report_invalid("CannotResume", errors)
            return False
        rt.searches.add(loop)
        writer.set_condition("SpecValid", True, "Accepted", "the spec is valid")
        await launcher.resync()
        if restored:
            await self._repair_trials()
        self.retention = TrialRetention(rt.api, loop, launcher, writer,
                                        batch=rt.config.retention_batch,
                                        concurrency=rt.config.write_concurrency)
        self.retention.start()
        writer.before_final = self.retention.settled
        return True

    async def _repair_trials(self) -> None:
        """After a restart, NASTrials whose last status write was lost (the operator stopped
        between accepting a result and mirroring it) are brought up to the ledger."""
        assert self.loop is not None and self.writer is not None
        try:
            trials = await self.runtime.api.list(NASTRIALS, self.namespace,
                                                 label_selector=f"{LABEL_SEARCH}={self.name}")
        except ApiError as exc:
            log.warning("cannot list the NASTrials of %s/%s: %s", self.namespace, self.name, exc)
            return
        for obj in trials:
            name = obj["metadata"]["name"]
            shown = (obj.get("status") or {}).get("phase")
            rec = self.loop.ledger.get(name)
            if rec is None or shown in FINAL_PHASES:
                continue
            self.launcher.trial_uids.setdefault(name, obj["metadata"].get("uid"))  # type: ignore[union-attr]
            if isinstance(rec, FinishedTrial):
                self.writer.finished(name, rec.state.value, rec.attempt, rec.reward)
            else:
                self.writer.capture(name)

    async def _abort_start(self) -> None:
        """Undo a start that failed half-way (the next try builds everything afresh)."""
        await self._stop_retention()
        if self.launcher is not None:
            self.runtime.tracker.forget(self.launcher)
        if self.writer is not None:
            await self.writer.close(flush=False)
        if self.tokens is not None:
            self.tokens.abandon()
        if self.loop is not None:
            self.runtime.searches.remove(self.namespace, self.name)
            with contextlib.suppress(Exception):
                await self.loop.stop()
        self.loop = self.writer = None

    async def _refuse_orphans(self) -> None:
        """No checkpoint but NASTrials exist: resuming would clash with them by name."""
        try:
            found = await self.runtime.api.request(
                "GET", NASTRIALS.path(self.namespace),
                params={"labelSelector": f"{LABEL_SEARCH}={self.name}", "limit": "1"})
        except ApiError:
            return
        if found.get("items"):
            raise CheckpointError(
                f"the checkpoint ConfigMap {self.name}-checkpoint is missing but NASTrials of "
                f"this search exist; restore it, or delete the NASTrials "
                f"(kubectl delete nastrials -l {LABEL_SEARCH}={self.name}) to start over")

    def _as_document(self) -> dict[str, Any]:
        meta = self.body["metadata"]
        return {"apiVersion": self.body.get("apiVersion"), "kind": self.body.get("kind"),
                "metadata": {"name": meta["name"], "namespace": self.namespace,
                             "uid": meta.get("uid"), "generation": meta.get("generation")},
                "spec": self.body.get("spec")}

    # -- events and invalid specs ----------------------------------------------------------------
    def _on_event(self, event: LoopEvent) -> None:
        if event.trial is not None and event.reason in TRIAL_ENDINGS and self.tokens is not None:
            self.tokens.remove(event.trial)

    async def _report_invalid(self, reason: str, errors: list[str]) -> None:
        """Condition + Event naming the fields; the status says Failed until the spec is fixed."""
        message = "; ".join(errors)
        generation = self.body["metadata"].get("generation")
        cond = condition("SpecValid", False, reason, message, generation)
        status = {"phase": "Failed", "reason": reason, "message": message,
                  "observedGeneration": generation,
                  "conditions": [cond.model_dump(mode="json", exclude_none=True)]}
        self.runtime.events.post(search_ref(self.body), "Warning", reason,
                                 f"{self.namespace}/{self.name}: {message}")
        try:
            await write_search_status(self.runtime.api, self.namespace, self.name, status)
        except ApiError as exc:
            log.warning("cannot write the status of %s/%s: %s", self.namespace, self.name, exc)

    def _invalid(self, reason: str, errors: list[str], *, running: bool) -> None:
        message = "; ".join(errors)
        if self.writer is not None:
            self.writer.set_condition("SpecValid", False, reason, message)
        self.runtime.events.post(search_ref(self.body), "Warning", reason,
                                 f"{self.namespace}/{self.name}: {message}"
                                 + ("; the search goes on with the previous spec" if running
                                    else ""))

    # -- stop --------------------------------------------------------------------------
    async def _stop_retention(self) -> None:
        """First of all: no NASTrial is deleted once the loop may no longer checkpoint."""
        if self.retention is not None:
            await self.retention.close()
            self.retention = None

    async def _shutdown(self, *, deleted: bool) -> None:
        """Operator exit: checkpoint and flush (trials go on). Deletion: drop everything at
        once, so kopf can release the finalizer in the same pass (children go by GC)."""
        loop, writer = self.loop, self.writer
        await self._stop_retention()
        if loop is not None:
            self.runtime.searches.remove(self.namespace, self.name)
        if self.launcher is not None:
            self.runtime.tracker.forget(self.launcher)
        if deleted:
            if self.store is not None:
                self.store.closed = True  # the owner is going: nothing to checkpoint
            if self.tokens is not None:
                self.tokens.abandon()
            if writer is not None:
                await writer.close(flush=False)
            if loop is not None:
                with contextlib.suppress(Exception):
                    await loop.stop()
            self.runtime.metrics.forget(self.namespace, self.name)
            return
        if loop is not None:
            with contextlib.suppress(Exception):
                await loop.stop()
        if writer is not None:
            await writer.close(flush=True)
        if self.tokens is not None:
            await self.tokens.close()
