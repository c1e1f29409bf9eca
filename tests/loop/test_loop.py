"""The search loop against simulated trials: budgets, parallelism, retries, stopping rules,
suspend/resume, live spec changes, and that each result reaches the strategy exactly once."""

from __future__ import annotations

import asyncio

import pytest

from nas_operator.ledger import TrialState
from nas_operator.testing import SimulatedOutcome, constant_behaviour
from tests.support.loop_harness import Harness, make_search, wait_until


async def run(h: Harness, timeout: float = 20.0):
    try:
        return await h.run(timeout)
    finally:
        await h.close()


async def test_runs_exactly_max_trials_and_tells_each_once():
    h = Harness(make_search(budget={"maxTrials": 10, "parallelism": 3}),
                constant_behaviour(0.6, latency=0.001))
    status = await run(h)
    assert status.phase == "Succeeded" and status.reason == "Completed"
    assert status.trials.total == 10 and status.trials.succeeded == 10
    assert len(h.launcher.launched) == 10
    assert sorted(h.strategy.told) == list(range(10))
    assert all(n == 1 for n in h.strategy.told.values())
    assert status.best.reward == pytest.approx(0.6**3)
    assert status.best.genotype["space"] == "enas-macro"
    assert len(status.topK) == 10
    assert status.startTime and status.completionTime
    assert {c.type: c.status for c in status.conditions}["Succeeded"] == "True"


async def test_parallelism_is_respected_and_used():
    search = make_search(budget={"maxTrials": 12, "parallelism": 4})
    h = Harness(search, constant_behaviour(0.5, latency=0.02))
    peak = 0

    def watch(event):
        nonlocal peak
        if event.reason == "TrialLaunched":
            peak = max(peak, len(h.loop.ledger.active))

    h.loop.subscribe(watch)
    status = await run(h)
    assert status.trials.succeeded == 12
    assert peak == 4


async def test_failed_attempts_are_retried_then_told_as_failure():
    def behave(req):
        if req.trial.endswith("t0002"):
            return SimulatedOutcome(fail="CUDA out of memory")
        return SimulatedOutcome(metrics=[{"val_accuracy": 0.5}])

    h = Harness(make_search(budget={"maxTrials": 5, "parallelism": 2}, trial={"retries": 2}), behave)
    status = await run(h)
    attempts = [r.attempt for r in h.launcher.launched if r.trial == "s-t0002"]
    assert attempts == [0, 1, 2]
    assert status.phase == "Succeeded"
    assert status.trials.failed == 1 and status.trials.retried == 2 and status.trials.succeeded == 4
    assert h.strategy.failures == [2]
    assert sum(h.strategy.told.values()) == 5
    [failed] = h.reasons("TrialFailed")
    assert "CUDA out of memory" in failed.message and failed.type == "Warning"


async def test_too_many_failed_trials_fail_the_search():
    h = Harness(make_search(budget={"maxTrials": 20, "parallelism": 2, "maxFailedTrials": 1},
                            trial={"retries": 0}),
                lambda req: SimulatedOutcome(fail="segfault"))
    status = await run(h)
    assert status.phase == "Failed" and status.reason == "TooManyFailedTrials"
    assert "maxFailedTrials" in status.message
    assert status.trials.failed == 2
    assert status.trials.total < 20


async def test_deadline_stops_the_search_and_cancels_running_trials():
    h = Harness(make_search(budget={"maxTrials": 5, "parallelism": 2, "deadline": 1}),
                lambda req: SimulatedOutcome(hang=True))
    status = await run(h, timeout=10)
    assert status.reason == "DeadlineExceeded"
    assert status.phase == "Failed"  # no trial finished
    assert status.trials.cancelled == 2 and status.trials.running == 0
    assert sorted(h.launcher.cancelled) == [("s-t0000", 0), ("s-t0001", 0)]


async def test_goal_stops_early():
    def behave(req):
        index = int(req.trial[-4:])
        if index < 3:
            return SimulatedOutcome(metrics=[{"val_accuracy": 0.5 + 0.1 * index}])
        return SimulatedOutcome(hang=True)

    h = Harness(make_search(budget={"maxTrials": 50, "parallelism": 4},
                            objective={"goal": 0.7**3 - 1e-9}), behave)
    status = await run(h)
    assert status.phase == "Succeeded" and status.reason == "GoalReached"
    assert status.best.trial == "s-t0002"
    assert status.trials.cancelled >= 1
    assert h.launcher.running == 0


async def test_suspend_requeues_running_trials_and_resume_continues():
    release = asyncio.Event()

    def behave(req):
        return SimulatedOutcome(hang=not release.is_set(), metrics=[{"val_accuracy": 0.4}])

    search = make_search(budget={"maxTrials": 6, "parallelism": 3})
    h = Harness(search, behave)
    await h.loop.start()
    try:
        await wait_until(lambda: h.launcher.running == 3)
        suspended = search.spec.model_copy(deep=True)
        suspended.suspend = True
        await h.loop.update_spec(suspended, generation=2)
        assert h.loop.status().phase == "Suspended"
        assert h.launcher.running == 0 and len(h.launcher.cancelled) == 3
        await asyncio.sleep(0.05)
        assert len(h.launcher.launched) == 3  # nothing new while suspended
        release.set()
        await h.loop.update_spec(search.spec, generation=3)
        status = await asyncio.wait_for(asyncio.shield(h.loop.done), 10)
    finally:
        await h.close()
    assert status.phase == "Succeeded" and status.trials.succeeded == 6
    assert status.trials.retried == 0  # suspend is not a failure
    relaunched = sorted((r.trial, r.attempt) for r in h.launcher.launched if r.attempt == 1)
    assert relaunched == [("s-t0000", 1), ("s-t0001", 1), ("s-t0002", 1)]
    assert status.observedGeneration == 3
    assert sum(h.strategy.told.values()) == 6


async def test_live_budget_change():
    search = make_search(budget={"maxTrials": 4, "parallelism": 2})
    h = Harness(search, constant_behaviour(0.4, latency=0.3))
    peak = 0

    def watch(event):
        nonlocal peak
        if event.reason == "TrialLaunched":
            peak = max(peak, len(h.loop.ledger.active))

    h.loop.subscribe(watch)
    await h.loop.start()
    try:
        await wait_until(lambda: h.launcher.running == 2)
        bigger = search.spec.model_copy(deep=True)
        bigger.budget.maxTrials, bigger.budget.parallelism = 7, 5
        await h.loop.update_spec(bigger, generation=2)
        status = await asyncio.wait_for(asyncio.shield(h.loop.done), 10)
    finally:
        await h.close()
    assert status.trials.total == 7 and status.trials.succeeded == 7
    assert peak == 5
    assert h.reasons("SpecUpdated")


async def test_immutable_fields_cannot_change():
    search = make_search()
    h = Harness(search, lambda req: SimulatedOutcome(hang=True))
    await h.loop.start()
    try:
        changed = search.spec.model_copy(deep=True)
        changed.searchSpace.options = {"layers": 5}
        from nas_operator.api import SpecError

        with pytest.raises(SpecError, match="spec.searchSpace: cannot change"):
            await h.loop.update_spec(changed, generation=2)
        assert h.loop.spec is search.spec
    finally:
        await h.close()


async def test_termination_message_stands_in_for_a_lost_http_report():
    h = Harness(make_search(budget={"maxTrials": 4, "parallelism": 2}),
                lambda req: SimulatedOutcome(metrics=[{"val_accuracy": 0.8}], report=False))
    status = await run(h)
    assert status.trials.succeeded == 4
    assert status.best.reward == pytest.approx(0.8**3)


async def test_exit_without_any_report_is_a_failed_attempt():
    def behave(req):
        if req.attempt == 0:
            return SimulatedOutcome(report=False, exit_code=137, termination_message=False)
        return SimulatedOutcome(metrics=[{"val_accuracy": 0.3}])

    h = Harness(make_search(budget={"maxTrials": 2, "parallelism": 2}), behave)
    status = await run(h)
    assert status.trials.succeeded == 2 and status.trials.retried == 2
    assert any("exited with code 137" in e.message for e in h.reasons("TrialRetried"))


async def test_hung_attempt_times_out_through_the_watchdog():
    def behave(req):
        return SimulatedOutcome(hang=req.attempt == 0, metrics=[{"val_accuracy": 0.3}])

    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1},
                            trial={"activeDeadlineSeconds": 1}), behave)
    status = await run(h, timeout=10)
    assert status.trials.succeeded == 1 and status.trials.retried == 1
    assert ("s-t0000", 0) in h.launcher.cancelled
    assert "activeDeadlineSeconds" in h.reasons("TrialRetried")[0].message


async def test_launch_failure_is_a_failed_attempt():
    h = Harness(make_search(budget={"maxTrials": 3, "parallelism": 3}),
                constant_behaviour(0.5))
    h.launcher.fail_launch = lambda req: req.trial == "s-t0001" and req.attempt == 0
    status = await run(h)
    assert status.trials.succeeded == 3 and status.trials.retried == 1
    assert h.reasons("LaunchFailed")


async def test_final_training_retrains_the_top_k():
    h = Harness(
        make_search(budget={"maxTrials": 5, "parallelism": 2},
                    finalTraining={"topK": 2, "training": {"epochs": 3}}),
        lambda req: SimulatedOutcome(metrics=[{"val_accuracy": 0.5 + int(req.trial[-4:]) / 100}]),
    )
    status = await run(h)
    finals = [r for r in h.launcher.launched if r.document.trial.startswith("s-f")]
    assert [r.trial for r in finals] == ["s-f0000", "s-f0001"]
    assert all(r.document.training.epochs == 3 for r in finals)
    assert finals[0].document.architecture.tokens == status.topK[0].tokens
    assert len(status.finalTraining) == 2 and status.trials.total == 5
    assert status.phase == "Succeeded"
    assert h.reasons("FinalTrainingStarted")


async def test_enas_runs_one_trial_and_takes_the_derived_architecture():
    search = make_search(searchSpace={"type": "enas-macro", "options": {"layers": 4}},
                         strategy={"type": "enas"}, budget={"maxTrials": 1, "parallelism": 1})
    from controller_policy.spaces import make_space

    arch = make_space("enas-macro", {"layers": 4}).architecture([0] * 10)
    h = Harness(search, lambda req: SimulatedOutcome(metrics=[{"val_accuracy": 0.9}],
                                                     architecture=arch))
    status = await run(h)
    [req] = h.launcher.launched
    assert req.document.mode == "enas" and req.document.architecture is None
    assert req.document.enas.controllerBatch == 20
    assert status.best.tokens == [0] * 10 and status.best.genotype["space"] == "enas-macro"


async def test_trial_documents_carry_spec_seed_and_identity():
    h = Harness(make_search(budget={"maxTrials": 2, "parallelism": 2},
                            trial={"training": {"epochs": 2}}), constant_behaviour())
    await run(h)
    docs = [r.document for r in h.launcher.launched]
    assert [d.trial for d in docs] == ["s-t0000", "s-t0001"]
    assert docs[0].seed != docs[1].seed
    assert all(d.namespace == "ns" and d.search == "s" and d.training.epochs == 2 for d in docs)
    assert all(d.architecture.space == "enas-macro" for d in docs)
    assert h.launcher.launched[0].job_name == "s-t0000-a0"
    assert h.launcher.launched[0].token == h.loop.token("s-t0000")


async def test_state_transitions_visible_in_trial_view():
    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1}),
                lambda req: SimulatedOutcome(hang=True))
    await h.loop.start()
    try:
        await wait_until(lambda: h.launcher.running == 1)
        await wait_until(lambda: h.loop.ledger.live_trial("s-t0000").state is TrialState.RUNNING)
        spec, status = h.loop.trial_view("s-t0000")
        assert spec.index == 0 and spec.architecture.space == "enas-macro"
        assert status.phase == "Running" and status.jobName == "s-t0000-a0"
        assert h.loop.status().trials.running == 1
    finally:
        await h.close()


async def test_goal_with_final_training_still_retrains():
    def behave(req):
        if req.trial.startswith("s-f"):
            return SimulatedOutcome(metrics=[{"val_accuracy": 0.95}])
        index = int(req.trial[-4:])
        return SimulatedOutcome(metrics=[{"val_accuracy": 0.9}]) if index == 1 else \
            SimulatedOutcome(hang=True)

    h = Harness(make_search(budget={"maxTrials": 30, "parallelism": 3},
                            objective={"goal": 0.5}, finalTraining={"topK": 1}), behave)
    status = await run(h)
    assert status.phase == "Succeeded" and status.reason == "Completed"
    assert [r.trial for r in status.finalTraining] == ["s-f0000"]
    assert status.finalTraining[0].reward == pytest.approx(0.95**3)
    assert status.trials.cancelled == 2


async def test_trial_events_carry_the_nastrial_view():
    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1}), constant_behaviour(0.5))
    await run(h)
    [launched] = h.reasons("TrialLaunched")
    assert launched.data["spec"].architecture.space == "enas-macro"
    assert launched.data["status"].phase == "Pending"
    [done] = h.reasons("TrialSucceeded")
    assert done.data["status"].phase == "Succeeded"
    assert done.data["status"].reward == pytest.approx(0.125)
    assert done.data["status"].epochs[0]["val_accuracy"] == 0.5


async def test_reports_to_a_stopped_loop_are_refused():
    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1}),
                lambda req: SimulatedOutcome(hang=True))
    await h.loop.start()
    await wait_until(lambda: h.launcher.running == 1)
    await h.loop.stop()
    from controller_policy.contract import Report

    result = h.loop.handle_report("s-t0000", Report(kind="final", trial="s-t0000",
                                                    epochs=[{"val_accuracy": 0.5}]))
    await h.close()
    assert result.outcome == "not_found"
    assert h.loop.status().trials.succeeded == 0


async def test_interrupted_and_out_of_order_reports():
    h = Harness(make_search(budget={"maxTrials": 1, "parallelism": 1}, trial={"retries": 1}),
                lambda req: SimulatedOutcome(hang=True))
    await h.loop.start()
    from controller_policy.contract import Report

    try:
        await wait_until(lambda: h.launcher.running == 1)
        loop = h.loop
        for n in (2, 0, 1):
            assert loop.handle_report("s-t0000", Report(kind="epoch", trial="s-t0000", epoch=n,
                                      metrics={"val_accuracy": n / 10})).outcome == "accepted"
        rec = loop.ledger.live_trial("s-t0000")
        assert [e["epoch"] for e in rec.epochs] == [0, 1, 2]
        # corrected value for an epoch replaces the old one
        assert loop.handle_report("s-t0000", Report(kind="epoch", trial="s-t0000", epoch=1,
                                  metrics={"val_accuracy": 0.15})).outcome == "accepted"
        assert rec.epochs[1]["val_accuracy"] == 0.15
        result = loop.handle_report("s-t0000", Report(kind="interrupted", trial="s-t0000",
                                                      reason="SIGTERM"))
        assert result.outcome == "accepted"
        await wait_until(lambda: any(r.attempt == 1 for r in h.launcher.launched))
        old = loop.handle_report("s-t0000", Report(kind="epoch", trial="s-t0000", epoch=3,
                                                   metrics={"val_accuracy": 0.3}))
        assert old.outcome == "conflict" and "attempt 0" in old.message
        # a final report without per-epoch list uses the epochs reported so far
        for n, acc in enumerate((0.2, 0.4)):
            loop.handle_report("s-t0000", Report(kind="epoch", trial="s-t0000", attempt=1,
                                                 epoch=n, metrics={"val_accuracy": acc}))
        final = loop.handle_report("s-t0000", Report(kind="final", trial="s-t0000", attempt=1))
        assert final.outcome == "accepted"
        status = await asyncio.wait_for(asyncio.shield(loop.done), 5)
    finally:
        await h.close()
    assert status.best.reward == pytest.approx(0.4**3)
    assert status.trials.retried == 1


async def test_final_report_without_the_objective_metric_fails_the_trial():
    h = Harness(make_search(budget={"maxTrials": 2, "parallelism": 2}),
                lambda req: SimulatedOutcome(metrics=[{"train_loss": 0.3}]))
    status = await run(h)
    assert status.trials.failed == 2 and status.trials.retried == 0
    assert status.phase == "Failed" and status.reason == "NoSuccessfulTrial"
    assert "val_accuracy" in h.reasons("TrialFailed")[0].message
    assert sorted(h.strategy.failures) == [0, 1]


async def test_goal_can_change_live():
    search = make_search(budget={"maxTrials": 20, "parallelism": 2})

    def behave(req):
        if req.trial in ("s-t0000", "s-t0001"):
            return SimulatedOutcome(metrics=[{"val_accuracy": 0.8}])
        return SimulatedOutcome(hang=True)

    h = Harness(search, behave)
    await h.loop.start()
    try:
        await wait_until(lambda: h.loop.status().trials.succeeded == 2)
        assert h.loop.phase == "Running"
        lower = search.spec.model_copy(deep=True)
        lower.objective.goal = 0.5
        await h.loop.update_spec(lower, generation=2)
        status = await asyncio.wait_for(asyncio.shield(h.loop.done), 5)
    finally:
        await h.close()
    assert status.reason == "GoalReached" and status.trials.total < 20
