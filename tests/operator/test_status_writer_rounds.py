"""The status writer under a backlog: NASTrial statuses go in bounded rounds, so the NASSearch
status (the search's progress) is written between them instead of after the whole backlog,
and every trial's status is still written before the search's final one."""

from __future__ import annotations

import asyncio
from typing import Any

from nas_operator.api import NASSearchStatus, TrialCounts
from nas_operator.kube.api import NASTRIALS
from nas_operator.kube.status import StatusWriter

OWNER = {"metadata": {"namespace": "default", "name": "s", "uid": "u1"}}


class SlowApi:
    """Records status patches in order; each takes a little while, like a loaded server."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, dict[str, Any]]] = []

    async def patch(self, resource: str, namespace: str, name: str, body: dict[str, Any],
                    subresource: str | None = None) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        self.writes.append((resource, name, body))
        return body


class FakeLoop:
    """What the writer reads of a search loop."""

    generation = 1
    weight_sharing = False

    def __init__(self) -> None:
        self.phase = "Running"
        self.succeeded = 0

    def subscribe(self, callback: Any) -> Any:
        return lambda: None

    def status(self) -> NASSearchStatus:
        return NASSearchStatus(phase=self.phase,  # type: ignore[arg-type]
                               trials=TrialCounts(succeeded=self.succeeded))


async def test_the_search_status_is_written_between_rounds_of_trial_writes() -> None:
    api, loop = SlowApi(), FakeLoop()
    writer = StatusWriter(api, None, loop, OWNER, interval=0.05, concurrency=4)  # type: ignore[arg-type]
    writer.trial_window = 0
    assert writer.trial_round == 32
    writer.start()
    for i in range(400):
        writer.finished(f"s-t{i:04d}", "Succeeded", 0, 0.5)
    loop.succeeded = 400
    for _ in range(400):
        await asyncio.sleep(0.02)
        if sum(1 for r, _, _ in api.writes if r != NASTRIALS) and len(api.writes) > 400:
            break
    searches = [i for i, (r, _, _) in enumerate(api.writes) if r != NASTRIALS]
    assert searches, "no NASSearch status written"
    assert searches[0] < 200, searches[0]  # not after the whole backlog of 400
    # the search ends: every pending trial status is written before its final status
    for i in range(400, 700):
        writer.finished(f"s-t{i:04d}", "Succeeded", 0, 0.5)
    loop.phase, loop.succeeded = "Succeeded", 700
    writer._search_dirty = True
    writer._wake.set()
    for _ in range(500):
        await asyncio.sleep(0.02)
        if any(b["status"]["phase"] == "Succeeded" for r, _, b in api.writes
               if r != NASTRIALS):
            break
    final = next(i for i, (r, _, b) in enumerate(api.writes)
                 if r != NASTRIALS and b["status"]["phase"] == "Succeeded")
    trials = {n for r, n, _ in api.writes[:final] if r == NASTRIALS}
    assert len(trials) == 700
    writer._closed = True
    assert writer._task is not None
    writer._task.cancel()
