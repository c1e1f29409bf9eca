"""Hostile reports and strategies at loop level (issue 18): one trial's report or exit can
never leave that trial active, a non-finite controller fails the search loudly.

Each case injects an unexpected exception into one step of a report's or an exit's path
(a bug the validators did not foresee) and checks that the attempt ends with the error as its
reason, is retried, and that the search still runs to its end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import nas_operator.loop.build as build
import nas_operator.loop.core as core
from controller_policy.contract import Report
from controller_policy.strategies import make_strategy
from controller_policy.strategies.base import StrategyError
from nas_operator.api import space_class
from nas_operator.ledger import Ledger
from nas_operator.loop import BuildTimeout, SearchLoop
from nas_operator.testing import SimulatedLauncher, SimulatedOutcome, constant_behaviour
from tests.support import loop_harness
from tests.support.loop_harness import Harness, make_search, wait_until


class Once:
    """Wrap ``fn`` so that its first call raises ``exc`` and later calls pass through."""

    def __init__(self, fn: Any, exc: Exception):
        self.fn, self.exc, self.calls = fn, exc, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise self.exc
        return self.fn(*args, **kwargs)


def _inject(monkeypatch: pytest.MonkeyPatch, h: Harness, where: str) -> Once:
    """Make one step of the report/exit path raise once."""
    if where == "reward":
        once = Once(core.compute_reward, OverflowError("(34, 'Numerical result out of range')"))
        monkeypatch.setattr(core, "compute_reward", once)
    elif where == "ledger":
        once = Once(Ledger.succeed.__get__(h.loop.ledger), KeyError("boom"))
        monkeypatch.setattr(h.loop.ledger, "succeed", once)
    elif where == "termination-parse":
        once = Once(Report.model_validate_json, RecursionError("maximum recursion depth"))
        monkeypatch.setattr(core.Report, "model_validate_json", once)
    elif where == "failure-path":  # the error path's own first step breaks too
        once = Once(h.loop._attempt_failed, RuntimeError("failing the attempt broke"))
        monkeypatch.setattr(h.loop, "_attempt_failed", once)
        inner = Once(core.compute_reward, OverflowError("reward"))
        monkeypatch.setattr(core, "compute_reward", inner)
    else:
        raise AssertionError(where)
    return once


CASES = [
    # (step that raises, final report over HTTP too?, what the retried attempt's reason says)
    ("reward", True, "OverflowError"),
    ("reward", False, "OverflowError"),
    ("ledger", True, "KeyError"),
    ("ledger", False, "KeyError"),
    ("termination-parse", False, "exited without a final report"),
    ("failure-path", True, "OverflowError"),
]


@pytest.mark.parametrize(("where", "http", "reason"), CASES)
async def test_an_exception_in_a_report_or_exit_path_ends_the_attempt(
    monkeypatch: pytest.MonkeyPatch, where: str, http: bool, reason: str
) -> None:
    search = make_search(budget={"maxTrials": 3, "parallelism": 1}, trial={"retries": 1})
    h = Harness(search, lambda req: SimulatedOutcome(metrics=[{"val_accuracy": 0.7}],
                                                     report=http))
    once = _inject(monkeypatch, h, where)
    try:
        status = await h.run(timeout=10)
    finally:
        await h.close()
    assert status.phase == "Succeeded", status.message
    assert (status.trials.succeeded, status.trials.retried) == (3, 1)
    if where != "failure-path":  # there the last resort takes the attempt off, quietly
        assert once.calls >= 2, "the injected step was not reached again after the error"
        retried = h.reasons("TrialRetried")
        assert len(retried) == 1 and retried[0].trial == "s-t0000"
        assert reason in retried[0].message
    assert not h.loop.ledger.active
    # the retry is a fresh attempt; the broken one is never relaunched
    assert [(r.trial, r.attempt) for r in h.launcher.launched][:2] == [("s-t0000", 0),
                                                                       ("s-t0000", 1)]


async def test_the_report_that_raised_is_answered_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The status API gets an answer (400 with the reason), not an exception (HTTP 500)."""
    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1}),
                lambda req: SimulatedOutcome(hang=True))
    monkeypatch.setattr(core, "compute_reward", Once(core.compute_reward, ArithmeticError("x")))
    await h.loop.start()
    try:
        await wait_until(lambda: h.launcher.running == 1)
        result = h.loop.handle_report("s-t0000", Report(
            kind="final", trial="s-t0000", attempt=0, metrics={"val_accuracy": 0.5}))
        assert not result.ok and "ArithmeticError" in result.message
        assert h.loop.is_current("s-t0000", 0) is False
        await wait_until(lambda: ("s-t0000", 0) in h.launcher.cancelled)
    finally:
        await h.close()


# ---------------------------------------------------------------- non-finite rewards, controllers
BAD_REWARDS = [float("nan"), float("inf"), -float("inf"), 1e39, -1e20]


@pytest.mark.parametrize("kind", ["reinforce", "ppo", "random", "evolution"])
@pytest.mark.parametrize("reward", BAD_REWARDS)
def test_a_strategy_refuses_a_reward_it_cannot_learn_from(kind: str, reward: float) -> None:
    space = space_class("enas-macro")({"layers": 4})  # type: ignore[misc]
    strategy = make_strategy(kind, space, {"seed": 3})
    pid = strategy.ask().id
    before = strategy.to_bytes()
    with pytest.raises(StrategyError, match="reward"):
        strategy.tell(pid, reward)
    assert strategy.pending == [pid] and strategy.to_bytes() == before
    strategy.tell(pid, 0.5)  # still usable: the same proposal takes a sane reward
    assert strategy.pending == []


def _huge_reward_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """The ``call``-th reward the loop computes is 1e39 (a reward path that let it through)."""
    real, calls = core.compute_reward, [0]

    def reward(objective: Any, epochs: Any, final: Any = None) -> float:
        calls[0] += 1
        return 1e39 if calls[0] == call else real(objective, epochs, final)

    monkeypatch.setattr(core, "compute_reward", reward)


class Unguarded:
    """A strategy whose reward check is missing (a plugin, or a bug): a real REINFORCE
    controller that learns from whatever it is told."""

    @staticmethod
    def make(search: Any, space: Any) -> Any:
        strategy = make_strategy("reinforce", space, {"seed": 1, "batchSize": 1})
        strategy.check_reward = float  # type: ignore[method-assign]
        return strategy


async def test_a_controller_gone_non_finite_fails_the_search_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reward 1e39 (float32 overflows) reaches an unguarded controller: its loss becomes
    non-finite; the search ends Failed (ControllerDiverged), never Succeeded."""
    monkeypatch.setattr(loop_harness, "counting_strategy", Unguarded.make)
    _huge_reward_at(monkeypatch, 1)
    search = make_search(strategy={"type": "reinforce", "seed": 1},
                         budget={"maxTrials": 8, "parallelism": 1})
    h = Harness(search, lambda req: SimulatedOutcome(metrics=[{"val_accuracy": 0.6}]))
    try:
        status = await h.run(timeout=15)
    finally:
        await h.close()
    assert status.phase == "Failed" and status.reason == "ControllerDiverged", status.message
    assert "non-finite" in status.message and "last_loss" in status.message
    failed = status.conditions and [c for c in status.conditions if c.type == "Failed"]
    assert failed and failed[0].status == "True" and failed[0].reason == "ControllerDiverged"
    assert status.trials.total < 8  # it stopped proposing from the broken policy
    assert any("non-finite" in e.message for e in h.reasons("StrategyError"))


async def test_a_reward_a_strategy_refuses_is_learned_as_a_failure_and_the_search_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.setattr(loop_harness, "counting_strategy", lambda search, space: (
        make_strategy("reinforce", space, search.spec.strategy_config())))
    _huge_reward_at(monkeypatch, 2)
    h = Harness(make_search(strategy={"type": "reinforce", "seed": 1, "batchSize": 1},
                            budget={"maxTrials": 5, "parallelism": 1}),
                lambda req: SimulatedOutcome(metrics=[{"val_accuracy": 0.6}]))
    try:
        status = await h.run(timeout=15)
    finally:
        await h.close()
    assert status.phase == "Succeeded", status.message
    refused = h.reasons("StrategyError")
    assert len(refused) == 1 and "1e+39" in refused[0].message
    assert h.strategy is not None and h.strategy.pending == []
    assert status.controller.entropy is not None and status.controller.updates >= 4


# ---------------------------------------------------------------- construction off the event loop
def _slow_builds(monkeypatch: pytest.MonkeyPatch, layers: int) -> Any:
    """Strategy construction blocks its thread (a huge controller) for spaces of ``layers``
    layers until the returned event is set; the build limit drops to 0.3 s."""
    release = threading.Event()
    real = build.make_strategy

    def make_strategy(kind: str, space: Any, config: Any) -> Any:
        if len(space.slots) >= 2 * layers:  # an enas-macro layer is 1 op + its skips
            release.wait(10)
        return real(kind, space, config)

    monkeypatch.setattr(build, "make_strategy", make_strategy)
    monkeypatch.setattr(build, "BUILD_TIMEOUT", 0.3)
    return release


async def test_a_search_that_builds_too_slowly_is_refused_and_others_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = _slow_builds(monkeypatch, layers=12)
    try:
        slow = asyncio.ensure_future(SearchLoop.create(
            make_search("huge", searchSpace={"type": "enas-macro", "options": {"layers": 12}}),
            SimulatedLauncher()))
        await asyncio.sleep(0)  # the slow build is under way on its thread
        started = time.perf_counter()
        h = Harness(make_search("fine", budget={"maxTrials": 6, "parallelism": 2}))
        try:
            status = await h.run(timeout=10)
        finally:
            await h.close()
        took = time.perf_counter() - started
        with pytest.raises(BuildTimeout) as refused:
            await slow
    finally:
        release.set()
    assert status.phase == "Succeeded" and status.trials.succeeded == 6
    assert took < 5.0
    assert refused.value.reason == "BuildTimedOut"
    [message] = refused.value.errors
    assert "spec.searchSpace" in message and "0.3 s" in message and "limit" in message


async def test_a_search_that_builds_in_time_runs_as_before() -> None:
    launcher = SimulatedLauncher(constant_behaviour(0.5))
    loop = await SearchLoop.create(make_search(budget={"maxTrials": 3, "parallelism": 3}),
                                   launcher)
    try:
        await loop.start()
        status = await asyncio.wait_for(asyncio.shield(loop.done), 10)
    finally:
        await loop.stop()
        await launcher.close()
    assert status.phase == "Succeeded" and status.trials.succeeded == 3
    assert loop.strategy is not None and loop.strategy.pending == []


# ---------------------------------------------------------------- a crash before the Job create
class CrashingLauncher(SimulatedLauncher):
    """The process dies after the write-ahead checkpoint, before the launch creates anything:
    ``launch`` never returns and leaves no trace (the loop is stopped meanwhile)."""

    def __init__(self) -> None:
        super().__init__(lambda req: SimulatedOutcome(hang=True))
        self.reached: list[tuple[str, int]] = []

    async def launch(self, request: Any) -> None:
        self.reached.append((request.trial, request.attempt))
        await asyncio.Event().wait()


@pytest.mark.parametrize("crashes", [1, 3])
async def test_an_attempt_whose_job_was_never_created_is_not_counted(crashes: int) -> None:
    """retries 0: were a never-launched attempt counted (or renumbered), the trial would be
    on attempt ``crashes`` or have failed; it trains as attempt 0 and the search succeeds."""
    from nas_operator.checkpoint import MemoryCheckpointStore

    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 2, "parallelism": 2, "maxFailedTrials": 0},
                         trial={"retries": 0})
    key = None
    for _ in range(crashes):
        crashing = Harness(search, store=store, launcher=CrashingLauncher(), key=key)
        key = crashing.loop.key
        await crashing.loop.start()
        await wait_until(lambda h=crashing: len(h.launcher.reached) == 2)
        await crashing.close()  # SIGKILL: the checkpoint says launched, no Job exists
        assert sorted(crashing.launcher.reached) == [("s-t0000", 0), ("s-t0001", 0)]
    last = Harness(search, constant_behaviour(0.6), store=store, key=key)
    try:
        status = await last.run(timeout=10)
    finally:
        await last.close()
    assert status.phase == "Succeeded", status.message
    assert (status.trials.succeeded, status.trials.retried, status.trials.failed) == (2, 0, 0)
    assert sorted((r.trial, r.attempt) for r in last.launcher.launched) == [
        ("s-t0000", 0), ("s-t0001", 0)]
    requeued = last.reasons("TrialRequeued")
    assert len(requeued) == 2 and all("never started" in e.message for e in requeued)


async def test_an_attempt_seen_running_whose_job_vanished_is_retried_as_the_next() -> None:
    from nas_operator.checkpoint import MemoryCheckpointStore

    store = MemoryCheckpointStore()
    search = make_search(budget={"maxTrials": 1, "parallelism": 1})
    first = Harness(search, lambda req: SimulatedOutcome(hang=True), store=store)
    await first.loop.start()
    await wait_until(lambda: first.loop.status().trials.running == 1)
    await first.close()  # its pod started, then the Job was deleted while no loop ran
    second = Harness(search, constant_behaviour(0.6), store=store, key=first.loop.key)
    try:
        status = await second.run(timeout=10)
    finally:
        await second.close()
    assert status.phase == "Succeeded" and status.trials.retried == 0
    assert [(r.trial, r.attempt) for r in second.launcher.launched] == [("s-t0000", 1)]


@pytest.mark.parametrize("path", ["watchdog", "lost"])
async def test_the_watchdog_and_loss_paths_end_the_attempt_even_if_failing_it_breaks(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    def behave(req: Any) -> SimulatedOutcome:
        return SimulatedOutcome(hang=req.attempt == 0, metrics=[{"val_accuracy": 0.4}])

    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1},
                            trial={"activeDeadlineSeconds": 1}), behave)
    once = Once(h.loop._attempt_failed, RuntimeError("failing the attempt broke"))
    monkeypatch.setattr(h.loop, "_attempt_failed", once)
    await h.loop.start()
    try:
        await wait_until(lambda: h.loop.status().trials.running == 1)
        if path == "lost":
            assert h.loop.on_trial_lost("s-t0000", 0, "pod deleted") is True
        status = await asyncio.wait_for(asyncio.shield(h.loop.done), 10)
    finally:
        await h.close()
    assert once.calls >= 1
    assert status.phase == "Succeeded" and (status.trials.succeeded, status.trials.retried) == (1, 1)
    assert [(r.trial, r.attempt) for r in h.launcher.launched] == [("s-t0000", 0), ("s-t0000", 1)]
