"""Delete the NASTrials that ``spec.retention`` lets go (their Jobs follow by garbage collection).

Thin: the choice is ``loop.retention.to_delete``; this task knows which NASTrials exist
(those the launcher created or adopted, plus those listed once at start, so a restart
half-way through a deletion finishes it), wakes when trials end or a checkpoint is
saved, and deletes in batches. Write-ahead without writes of its own: a NASTrial goes
only once a checkpoint the loop saved holds its trial compacted (``loop.retention.covered``),
so no finished trial's reward exists only in an object being deleted; a crash anywhere
leaves either the object or the record (both, most often), and the next operator deletes
what is left. Forcing a checkpoint per batch (as this did before) cost one whole
checkpoint, O(trials so far), per ``batch`` deletions: quadratic over a long search.

Before the search's final status is written, the writer waits (``settled``) until what
is past the bounds is gone, so whoever sees the search finished sees its NASTrials
within ``spec.retention``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nas_operator.kube.api import NASTRIALS, ApiError, KubeApi
from nas_operator.kube.labels import LABEL_SEARCH
from nas_operator.kube.launcher import KubeLauncher
from nas_operator.kube.status import StatusWriter
from nas_operator.loop import TRIAL_ENDINGS, EventReason, LoopEvent, SearchLoop
from nas_operator.loop.retention import covered, to_delete

log = logging.getLogger(__name__)

RETRY = 5.0
"""Seconds to wait after a sweep some of whose deletions failed."""
SETTLE_LIMIT = 60.0
"""Seconds the search's final status waits at most for the last deletions."""
ENDS = TRIAL_ENDINGS | {EventReason.SEARCH_SUCCEEDED, EventReason.SEARCH_FAILED}


class TrialRetention:
    """Keeps one search's NASTrials within ``spec.retention``; ``start`` once the loop runs."""

    def __init__(self, api: KubeApi, loop: SearchLoop, launcher: KubeLauncher,
                 writer: StatusWriter, *, batch: int = 50, concurrency: int = 32,
                 settle: float = 0.5) -> None:
        self.api = api
        self.loop = loop
        self.launcher = launcher
        self.writer = writer
        self.namespace = launcher.namespace
        self.batch = batch
        """Surplus NASTrials that wait for one batch of deletions while the search runs;
        once it has ended, whatever is left goes at once."""
        self.concurrency = concurrency
        self.settle = settle
        """Seconds to wait after a wake-up, so the trials ending together go in one batch."""
        self.listed: set[str] = set()
        """NASTrials found at start that this operator did not create or adopt."""
        self.deleted = 0
        self.failing = False
        """Whether the last sweep had deletions refused (the final status stops waiting)."""
        self._stamps: dict[str, int] = {}
        """Per surplus NASTrial: the ledger's compaction count when it was first seen surplus."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._unsubscribe = lambda: None

    def start(self) -> None:
        unsubscribe = self.loop.subscribe(self._on_event)
        persistence = self.loop.persistence
        if persistence is not None:
            persistence.on_saved.append(self._wake.set)

        def stop() -> None:
            unsubscribe()
            if persistence is not None and self._wake.set in persistence.on_saved:
                persistence.on_saved.remove(self._wake.set)

        self._unsubscribe = stop
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name=f"retention-{self.loop.name}")

    async def close(self) -> None:
        """Stop (before the loop stops: nothing is deleted without its checkpoint)."""
        self._closed = True
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _on_event(self, event: LoopEvent) -> None:
        if event.reason in ENDS:
            self._wake.set()

    def present(self) -> set[str]:
        return set(self.launcher.trial_uids) | self.listed

    async def _run(self) -> None:
        try:
            self.listed = {o["metadata"]["name"] for o in await self.api.list(
                NASTRIALS, self.namespace, label_selector=f"{LABEL_SEARCH}={self.loop.name}")}
        except ApiError as exc:
            log.warning("retention of %s: cannot list its NASTrials (%s); only those this "
                        "operator creates are kept in bounds", self.loop.name, exc)
        self._wake.set()
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.settle)
            self._wake.clear()
            try:
                gone, failed = await self.sweep()
                self.failing = failed > 0
                if failed:  # the API refuses: back off instead of retrying per wake-up
                    await asyncio.sleep(RETRY)
                if self.loop.state.ended and (gone or failed) and self.left_over():
                    self._wake.set()  # the end: go on until none is left
            except asyncio.CancelledError:
                raise
            except Exception:  # the search goes on; the next trial's end tries again
                log.exception("retention of %s/%s failed", self.namespace, self.loop.name)

    def surplus(self) -> list[str]:
        """NASTrials past ``spec.retention`` now (checkpointed or not)."""
        retention = self.loop.spec.retention
        return to_delete(self.loop.ledger, self.present(), retention.keepBest,
                         retention.keepRecent)

    def left_over(self) -> bool:
        return bool(self.surplus())

    def ready(self) -> list[str]:
        """The surplus NASTrials whose trials a saved checkpoint holds."""
        persistence = self.loop.persistence
        saved = -1 if persistence is None else persistence.saved_compactions
        return covered(self.surplus(), self._stamps, self.loop.ledger.compactions, saved)

    async def settled(self, limit: float = SETTLE_LIMIT) -> None:
        """Wait until nothing past the bounds is left, the API refuses deletions, or
        ``limit`` seconds passed (the search's final status is written after this)."""
        deadline = time.monotonic() + limit
        self._wake.set()
        while (not self._closed and not self.failing and time.monotonic() < deadline
               and self.left_over()):
            await asyncio.sleep(0.05)

    async def sweep(self) -> tuple[int, int]:
        """Delete the checkpointed surplus, in batches while the search runs: (deleted, refused)."""
        names = self.ready()
        if not names or (len(names) < self.batch and not self.loop.state.ended):
            return 0, 0
        semaphore = asyncio.Semaphore(self.concurrency)

        async def delete(name: str) -> bool:
            async with semaphore:
                try:
                    await self.api.delete(NASTRIALS, self.namespace, name, propagation="Background")
                except ApiError as exc:
                    log.warning("retention: NASTrial %s not deleted (%s); retrying later", name, exc)
                    return False
            self.launcher.trial_uids.pop(name, None)
            self.listed.discard(name)
            self._stamps.pop(name, None)
            self.writer.forget(name)
            return True

        gone = sum(await asyncio.gather(*(delete(n) for n in names)))
        self.deleted += gone
        return gone, len(names) - gone
