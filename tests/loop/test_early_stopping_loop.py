"""Early stopping in the search loop: a rung decision ends the trial EarlyStopped, stops its
attempt through the cancellation path, refuses its late reports, tells the strategy per
stoppedReward, and a loop restarted between the decision and the cancellation decides
nothing again and still stops the attempt."""

from __future__ import annotations

import asyncio

from controller_policy.contract import Report
from nas_operator.checkpoint import MemoryCheckpointStore
from nas_operator.ledger import TrialState
from nas_operator.loop.intake import ReportOutcome
from nas_operator.testing import SimulatedLauncher, SimulatedOutcome
from tests.support.loop_harness import CountingStrategy, Harness, make_search, wait_until

EPOCHS = 4


def halving(stopped_reward: str = "partial", **extra):
    """Three trials at once, four epochs each, successive halving at rungs 1 and 2 (eta 2)."""
    return make_search(
        budget={"maxTrials": 3, "parallelism": 3},
        trial={"training": {"epochs": EPOCHS}},
        objective={"metric": "val_accuracy", "reward": "identity", "lastEpochs": 1},
        earlyStopping={"type": "successive-halving", "minEpochs": 1, "reductionFactor": 2,
                       "stoppedReward": stopped_reward, **extra},
    )  # fmt: skip


def hanging(_req):
    """The trainer starts and waits: the test sends its reports by hand, in a chosen order."""
    return SimulatedOutcome(hang=True)


class Withdrawing(CountingStrategy):
    """Counts withdrawals too (stoppedReward exclude)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.withdrawn: list[int] = []

    def withdraw(self, proposal_id: int) -> None:
        self.withdrawn.append(proposal_id)
        self.inner.withdraw(proposal_id)


def epoch(h: Harness, index: int, number: int, accuracy: float):
    name = f"s-t{index:04d}"
    return h.loop.handle_report(name, Report(kind="epoch", trial=name, attempt=0, epoch=number,
                                             metrics={"val_accuracy": accuracy}))


def final(h: Harness, index: int, accuracies: list[float]):
    name = f"s-t{index:04d}"
    return h.loop.handle_report(name, Report(
        kind="final", trial=name, attempt=0, metrics={"val_accuracy": accuracies[-1]},
        epochs=[{"val_accuracy": a} for a in accuracies]))


async def ended(h: Harness):
    return await asyncio.wait_for(asyncio.shield(h.loop.done), 20)


async def launched(h: Harness, n: int = 3) -> None:
    await h.loop.start()
    await wait_until(lambda: len(h.launcher.launched) == n)


async def test_a_trial_below_the_rung_is_stopped_cancelled_and_told_its_partial_reward():
    h = Harness(halving(), hanging)
    try:
        await launched(h)
        assert epoch(h, 0, 0, 0.5).outcome is ReportOutcome.ACCEPTED  # first at rung 1
        assert epoch(h, 1, 0, 0.3).outcome is ReportOutcome.ACCEPTED  # 1 of 2 better: stop
        status = h.loop.trial_view("s-t0001")[1]
        assert status.phase == "EarlyStopped" and status.earlyStopped.rule == "successive-halving"
        assert status.earlyStopped.epoch == 1 and "top 1/2" in status.earlyStopped.reason
        await wait_until(lambda: ("s-t0001", 0) in h.launcher.cancelled)
        late = epoch(h, 1, 1, 0.9)
        assert late.outcome is ReportOutcome.CONFLICT and "stopped early" in late.message
        stopped = h.reasons("TrialEarlyStopped")
        assert [e.trial for e in stopped] == ["s-t0001"] and stopped[0].data["saved"] == 3
        assert not h.reasons("TrialFailed") and not h.reasons("TrialCancelled")

        assert epoch(h, 2, 0, 0.6).outcome is ReportOutcome.ACCEPTED  # best at rung 1
        for i, a in enumerate((0.5, 0.6, 0.7, 0.8)):
            epoch(h, 0, i, a)
        epoch(h, 2, 1, 0.65)  # rung 2: 0.65 vs 0.6 of trial 0: promoted
        final(h, 0, [0.5, 0.6, 0.7, 0.8])
        final(h, 2, [0.6, 0.65, 0.7, 0.9])
        status = await ended(h)
        assert (status.trials.total, status.trials.succeeded, status.trials.earlyStopped,
                status.trials.failed) == (3, 2, 1, 0)
        assert status.earlyStopping.stopped == {"successive-halving": 1}
        assert status.earlyStopping.epochsSaved == 3
        assert h.strategy.rewards[1] == 0.3  # partial: the identity reward of epoch 1
        assert len(h.launcher.launched) == 3  # a stopped trial takes its place in maxTrials
    finally:
        await h.close()


async def test_exclude_withdraws_the_stopped_proposal_from_the_strategy():
    h = Harness(halving("exclude"), hanging)
    strategy = Withdrawing(h.strategy.inner)
    h.strategy = h.loop.source.strategy = strategy
    try:
        await launched(h)
        epoch(h, 0, 0, 0.5)
        epoch(h, 1, 0, 0.3)
        epoch(h, 2, 0, 0.1)  # 2 of 3 better: stopped too
        final(h, 0, [0.5, 0.6, 0.7, 0.8])
        status = await ended(h)
        assert status.trials.earlyStopped == 2 and status.trials.succeeded == 1
        assert sorted(strategy.withdrawn) == [1, 2]
        assert 1 not in strategy.rewards and 1 not in strategy.failures
        assert strategy.inner.pending == []
    finally:
        await h.close()


async def test_a_restart_between_the_rung_decision_and_the_cancellation():
    """The decision is in the checkpoint before any cancellation; the restarted loop stops the
    attempt itself, keeps the decision as it was, and goes on deciding from the curves
    it restored."""
    store = MemoryCheckpointStore()
    launcher = SimulatedLauncher(hanging)  # the trainers outlive the loop, as Jobs do
    first = Harness(halving(), launcher=launcher, store=store)
    await launched(first)
    epoch(first, 0, 0, 0.5)
    epoch(first, 1, 0, 0.3)  # stopped now; its cancellation waits for the worker
    decided = dict(first.loop.stopper.stopped)
    await first.loop.stop()  # the operator dies before its worker ran
    assert launcher.cancelled == []

    second = Harness(halving(), launcher=launcher, store=store)
    try:
        await second.loop.start()
        await wait_until(lambda: ("s-t0001", 0) in launcher.cancelled)
        assert second.loop.stopper.stopped == decided
        assert second.loop.ledger.get("s-t0001").state is TrialState.EARLY_STOPPED
        again = epoch(second, 1, 0, 0.3)
        assert again.outcome is ReportOutcome.CONFLICT
        assert epoch(second, 2, 0, 0.4).outcome is ReportOutcome.ACCEPTED  # 1 of 3 better: on
        assert second.loop.trial_view("s-t0002")[1].phase == "Running"
        epoch(second, 2, 1, 0.45)
        for i, a in enumerate((0.5, 0.6, 0.7, 0.8)):
            epoch(second, 0, i, a)
        final(second, 0, [0.5, 0.6, 0.7, 0.8])
        final(second, 2, [0.4, 0.45, 0.5, 0.55])
        status = await ended(second)
        assert (status.trials.succeeded, status.trials.earlyStopped) == (2, 1)
        assert launcher.cancelled.count(("s-t0001", 0)) == 1
    finally:
        await second.close()
        await first.launcher.close()


async def test_without_early_stopping_nothing_is_stopped():
    h = Harness(make_search(budget={"maxTrials": 3, "parallelism": 3},
                            trial={"training": {"epochs": EPOCHS}}), hanging)
    try:
        await launched(h)
        epoch(h, 0, 0, 0.5)
        epoch(h, 1, 0, 0.1)
        assert h.loop.trial_view("s-t0001")[1].phase == "Running"
        assert h.loop.status().earlyStopping is None
    finally:
        await h.close()


def test_the_checkpoint_text_is_the_state_with_each_curve_encoded_once():
    """to_json joins kept curve texts: the same document as to_state, and a curve's text is
    made again only when its curve changed."""
    import json

    from controller_policy.early_stopping import EarlyStopping
    from nas_operator.ledger import Trial
    from nas_operator.loop.early_stopping import EarlyStopper

    stopper = EarlyStopper(EarlyStopping(type="median", minEpochs=1, minTrials=1), "val_accuracy")
    trials = [Trial(index=i, stage="search", name=f"s-t{i:04d}", seed=0, proposal_id=i,
                    space=None, tokens=None) for i in range(3)]
    for i, rec in enumerate(trials):
        rec.epochs = [{"epoch": 0.0, "val_accuracy": 0.1 * (i + 1)}]
        stopper.on_epoch(rec, 4)
    stopper.on_success(trials[0], [{"epoch": 0.0, "val_accuracy": 0.1},
                                   {"epoch": 1.0, "val_accuracy": 1 / 3}])
    assert json.loads(stopper.to_json()) == stopper.to_state()
    kept = dict(stopper._texts)
    trials[2].epochs.append({"epoch": 1.0, "val_accuracy": 0.05})
    stopper.on_epoch(trials[2], 4)
    assert stopper._texts[0] is kept[0] and stopper._texts[1] is kept[1]  # unchanged curves
    assert stopper._texts[2] != kept[2]
    again = EarlyStopper(stopper.settings, "val_accuracy")
    again.load(json.loads(stopper.to_json()))
    assert again.to_state() == stopper.to_state() and again.to_json() == stopper.to_json()


async def test_the_median_rule_stops_a_trial_below_the_completed_trials_median():
    """median, minEpochs 2, minTrials 2: nothing is stopped before two trials completed; then
    a trial whose best by epoch 2 is below the median of their running averages is stopped,
    cancelled and told its partial reward, and one above it trains to the end."""
    search = make_search(
        budget={"maxTrials": 4, "parallelism": 4}, trial={"training": {"epochs": EPOCHS}},
        objective={"metric": "val_accuracy", "reward": "identity", "lastEpochs": 1},
        earlyStopping={"type": "median", "minEpochs": 2, "minTrials": 2},
    )
    h = Harness(search, hanging)
    try:
        await launched(h, 4)
        for e, a in enumerate((0.1, 0.1)):  # weak, but nothing has completed yet
            assert epoch(h, 3, e, a).outcome is ReportOutcome.ACCEPTED
        assert h.loop.trial_view("s-t0003")[1].phase == "Running"
        for e, a in enumerate((0.5, 0.6, 0.7, 0.8)):
            epoch(h, 0, e, a)
        final(h, 0, [0.5, 0.6, 0.7, 0.8])
        final(h, 1, [0.4, 0.5, 0.6, 0.7])
        # running averages at epoch 2: 0.55 and 0.45, median 0.5
        epoch(h, 2, 0, 0.3)
        assert epoch(h, 2, 1, 0.49).outcome is ReportOutcome.ACCEPTED  # best 0.49 < 0.5
        status = h.loop.trial_view("s-t0002")[1]
        assert status.phase == "EarlyStopped" and status.earlyStopped.rule == "median"
        assert status.earlyStopped.epoch == 2 and "below the median 0.5" in status.earlyStopped.reason
        await wait_until(lambda: ("s-t0002", 0) in h.launcher.cancelled)
        assert epoch(h, 2, 2, 0.9).outcome is ReportOutcome.CONFLICT
        # trial 3 went on at epochs 1-2 (too few peers then); at epoch 3 the median of the
        # running averages is 0.55, and its best, 0.56, is not below it
        assert epoch(h, 3, 2, 0.56).outcome is ReportOutcome.ACCEPTED
        assert h.loop.trial_view("s-t0003")[1].phase == "Running"
        final(h, 3, [0.1, 0.1, 0.56, 0.6])
        status = await ended(h)
        assert (status.trials.total, status.trials.succeeded, status.trials.earlyStopped,
                status.trials.failed) == (4, 3, 1, 0)
        assert status.earlyStopping.stopped == {"median": 1} and status.earlyStopping.epochsSaved == 2
        assert h.strategy.rewards[2] == 0.49  # partial: the identity reward of its last epoch
        assert [e.trial for e in h.reasons("TrialEarlyStopped")] == ["s-t0002"]
        assert not h.reasons("TrialFailed") and not h.reasons("TrialCancelled")
    finally:
        await h.close()
