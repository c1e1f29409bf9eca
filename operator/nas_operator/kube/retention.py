"""Delete the NASTrials that ``spec.retention`` lets go (their Jobs follow by garbage collection).

Thin: the choice is ``loop.retention.to_delete``; this task knows which NASTrials exist
(those the launcher created or adopted, plus those listed once at start, so a restart
half-way through a deletion finishes it), wakes when trials end, and deletes in
batches. Write-ahead: a batch goes only after ``SearchLoop.checkpoint_now`` saved a
checkpoint holding every trial in it, so no finished trial's reward exists only in an
object being deleted; a crash anywhere leaves either the object or the record (both,
most often), and the next operator deletes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nas_operator.kube.api import NASTRIALS, ApiError, KubeApi
from nas_operator.kube.labels import LABEL_SEARCH
from nas_operator.kube.launcher import KubeLauncher
from nas_operator.kube.status import StatusWriter
from nas_operator.loop import TRIAL_ENDINGS, EventReason, LoopEvent, SearchLoop
from nas_operator.loop.retention import to_delete

log = logging.getLogger(__name__)

RETRY = 5.0
"""Seconds to wait after a sweep some of whose deletions (or its checkpoint) failed."""
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
        """Surplus NASTrials that wait for one batch (one checkpoint) while the search runs;
        once it has ended, whatever is left goes at once."""
        self.concurrency = concurrency
        self.settle = settle
        """Seconds to wait after a wake-up, so the trials ending together go in one batch."""
        self.listed: set[str] = set()
        """NASTrials found at start that this operator did not create or adopt."""
        self.deleted = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = lambda: None

    def start(self) -> None:
        self._unsubscribe = self.loop.subscribe(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name=f"retention-{self.loop.name}")

    async def close(self) -> None:
        """Stop (before the loop stops: nothing is deleted without its checkpoint)."""
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
                if failed:  # the API refuses: back off instead of a checkpoint per wake-up
                    await asyncio.sleep(RETRY)
                if self.loop.state.ended and (gone or failed) and self.left_over():
                    self._wake.set()  # the end: go on until none is left
            except asyncio.CancelledError:
                raise
            except Exception:  # the search goes on; the next trial's end tries again
                log.exception("retention of %s/%s failed", self.namespace, self.loop.name)

    def left_over(self) -> bool:
        retention = self.loop.spec.retention
        return bool(to_delete(self.loop.ledger, self.present(), retention.keepBest,
                              retention.keepRecent))

    async def sweep(self) -> tuple[int, int]:
        """Delete one batch past the bounds (after a checkpoint): (deleted, refused)."""
        retention = self.loop.spec.retention
        names = to_delete(self.loop.ledger, self.present(), retention.keepBest,
                          retention.keepRecent)
        if not names or (len(names) < self.batch and not self.loop.state.ended):
            return 0, 0
        if not await self.loop.checkpoint_now():
            return 0, len(names)  # not recorded: every object stays until one is written
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
            self.writer.forget(name)
            return True

        gone = sum(await asyncio.gather(*(delete(n) for n in names)))
        self.deleted += gone
        return gone, len(names) - gone
