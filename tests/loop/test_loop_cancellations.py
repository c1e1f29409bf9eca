"""Attempts the loop stops itself (suspend, end of search, watchdog) are not failures.

A stopped trainer answers SIGTERM with an ``interrupted`` report and exit 143 — while its
launcher waits for it to exit (local processes: ``sigterm="during"``) or after the launcher
returned (a deleted Job: ``"late"``). Those answers concern an attempt the loop already
gave up, so they must not burn a retry, fail a trial or reach the strategy. An
``interrupted`` report the loop did not cause (preemption, eviction) is a failed attempt.
"""

from __future__ import annotations

import asyncio

import pytest

from nas_operator.loop import ReportOutcome
from nas_operator.testing import SimulatedLauncher, SimulatedOutcome
from tests.support.loop_harness import Harness, make_search, wait_until

MODES = ["during", "late"]


def _answers_ignored(launcher: SimulatedLauncher) -> None:
    """Every SIGTERM answer was refused (409) or ignored (an exit of a stale attempt)."""
    assert launcher.sigterm_results, "the simulated trainers sent no SIGTERM answer"
    for result in launcher.sigterm_results:
        assert result is None or result.outcome is ReportOutcome.CONFLICT, result


@pytest.mark.parametrize("mode", MODES)
async def test_suspend_and_resume_burn_no_retry(mode: str) -> None:
    release = asyncio.Event()

    def behave(req):
        return SimulatedOutcome(hang=not release.is_set(), metrics=[{"val_accuracy": 0.4}])

    # retries 0 and maxFailedTrials 0: one miscounted interruption would fail the search
    search = make_search(budget={"maxTrials": 5, "parallelism": 3, "maxFailedTrials": 0},
                         trial={"retries": 0})
    h = Harness(search, launcher=SimulatedLauncher(behave, sigterm=mode))
    await h.loop.start()
    try:
        await wait_until(lambda: h.launcher.running == 3)
        suspended = search.spec.model_copy(deep=True)
        suspended.suspend = True
        await h.loop.update_spec(suspended, generation=2)
        await h.launcher.settle()
        status = h.loop.status()
        assert status.phase == "Suspended"
        assert (status.trials.pending, status.trials.running) == (3, 0)
        assert (status.trials.failed, status.trials.retried, status.trials.cancelled) == (0, 0, 0)
        assert not h.reasons("TrialRetried") and not h.reasons("TrialFailed")
        assert len(h.reasons("TrialRequeued")) == 3
        _answers_ignored(h.launcher)
        release.set()
        await h.loop.update_spec(search.spec, generation=3)
        status = await asyncio.wait_for(asyncio.shield(h.loop.done), 10)
    finally:
        await h.close()
    assert status.phase == "Succeeded", status.message
    t = status.trials
    assert (t.total, t.succeeded, t.failed, t.retried, t.cancelled) == (5, 5, 0, 0, 0)
    assert sorted((r.trial, r.attempt) for r in h.launcher.launched) == [
        ("s-t0000", 0), ("s-t0000", 1), ("s-t0001", 0), ("s-t0001", 1),
        ("s-t0002", 0), ("s-t0002", 1), ("s-t0003", 0), ("s-t0004", 0)]
    assert h.strategy.failures == [] and sorted(h.strategy.told) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("mode", MODES)
async def test_end_of_search_cancels_count_nothing_but_cancellations(mode: str) -> None:
    def behave(req):
        if req.trial == "s-t0000":
            return SimulatedOutcome(metrics=[{"val_accuracy": 0.9}], latency=0.05)
        return SimulatedOutcome(hang=True)

    search = make_search(budget={"maxTrials": 20, "parallelism": 4, "maxFailedTrials": 0},
                         trial={"retries": 0}, objective={"goal": 0.5})
    h = Harness(search, launcher=SimulatedLauncher(behave, sigterm=mode))
    try:
        status = await h.run(timeout=10)
        await h.launcher.settle()
    finally:
        await h.close()
    assert (status.phase, status.reason) == ("Succeeded", "GoalReached")
    t = status.trials
    assert (t.total, t.succeeded, t.cancelled, t.failed, t.retried, t.running) == (4, 1, 3, 0, 0, 0)
    assert sorted(h.launcher.cancelled) == [("s-t0001", 0), ("s-t0002", 0), ("s-t0003", 0)]
    _answers_ignored(h.launcher)
    assert h.loop.status().trials == t  # the late answers changed nothing either
    assert h.strategy.failures == [] and not h.reasons("TrialFailed")
    assert len(h.reasons("TrialCancelled")) == 3


async def test_watchdog_counts_one_failure_with_its_own_reason() -> None:
    def behave(req):
        return SimulatedOutcome(hang=req.attempt == 0, metrics=[{"val_accuracy": 0.3}])

    search = make_search(budget={"maxTrials": 1, "parallelism": 1},
                         trial={"activeDeadlineSeconds": 1, "retries": 1})
    h = Harness(search, launcher=SimulatedLauncher(behave, sigterm="during"))
    try:
        status = await h.run(timeout=10)
    finally:
        await h.close()
    assert status.trials.succeeded == 1 and status.trials.retried == 1
    [retried] = h.reasons("TrialRetried")
    assert "activeDeadlineSeconds" in retried.message and "SIGTERM" not in retried.message
    _answers_ignored(h.launcher)


async def test_unsolicited_interruption_is_a_retried_attempt() -> None:
    """Preemption or eviction: the trainer was SIGTERM'd by someone else."""

    def behave(req):
        if req.attempt == 0:
            return SimulatedOutcome(hang=True)
        return SimulatedOutcome(metrics=[{"val_accuracy": 0.7}])

    search = make_search(budget={"maxTrials": 1, "parallelism": 1}, trial={"retries": 1})
    launcher = SimulatedLauncher(behave, sigterm="during")
    h = Harness(search, launcher=launcher)
    await h.loop.start()
    try:
        await wait_until(lambda: launcher.running == 1)
        [request] = launcher.launched
        await launcher.interrupt(request)  # the kubelet's SIGTERM, not the loop's
        status = await asyncio.wait_for(asyncio.shield(h.loop.done), 10)
    finally:
        await h.close()
    report, exit_result = launcher.sigterm_results
    assert report.outcome is ReportOutcome.ACCEPTED
    assert exit_result is None  # the report already ended the attempt; the exit is stale
    [retried] = h.reasons("TrialRetried")
    assert "interrupted" in retried.message and "SIGTERM" in retried.message
    assert [(r.trial, r.attempt) for r in launcher.launched] == [("s-t0000", 0), ("s-t0000", 1)]
    t = status.trials
    assert (t.succeeded, t.retried, t.failed, t.cancelled) == (1, 1, 0, 0)
    assert launcher.cancelled == []
