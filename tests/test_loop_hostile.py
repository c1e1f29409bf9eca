"""Hostile reports and strategies at loop level (issue 18): one trial's report or exit can
never leave that trial active, a non-finite controller fails the search loudly.

Each case injects an unexpected exception into one step of a report's or an exit's path
(a bug the validators did not foresee) and checks that the attempt ends with the error as its
reason, is retried, and that the search still runs to its end.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_loop_support import Harness, make_search

import nas_operator.loop.core as core
from controller_policy.contract import Report
from nas_operator.launcher import SimulatedOutcome
from nas_operator.ledger import Ledger


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
        from test_loop_support import wait_until

        await wait_until(lambda: h.launcher.running == 1)
        result = h.loop.handle_report("s-t0000", Report(
            kind="final", trial="s-t0000", attempt=0, metrics={"val_accuracy": 0.5}))
        assert not result.ok and "ArithmeticError" in result.message
        assert h.loop.is_current("s-t0000", 0) is False
        await wait_until(lambda: ("s-t0000", 0) in h.launcher.cancelled)
    finally:
        await h.close()
