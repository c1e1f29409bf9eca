"""Early-stopping rules on hand-made learning curves: what each rule decides, and why."""

import pytest
from pydantic import ValidationError

from controller_policy.early_stopping import (
    Curve,
    EarlyStopping,
    HalvingRule,
    MedianRule,
    oriented,
    rungs,
    shown,
)


def done(index, *scores):
    return Curve(index, tuple(scores), completed=True)


def running(index, *scores):
    return Curve(index, tuple(scores))


PEERS = [done(0, 0.5, 0.6, 0.7, 0.8), done(1, 0.3, 0.4, 0.5, 0.6), done(2, 0.1, 0.2, 0.3, 0.4)]
"""Running averages at epoch 2: 0.55, 0.35, 0.15 (median 0.35)."""


@pytest.mark.parametrize(("trial", "others", "budget", "expected"), [
    # below the median of running averages at epoch 2 (0.35): stopped
    (running(9, 0.30, 0.34), PEERS, 4, (True, 2)),
    # a tie with the median continues (strictly below stops)
    (running(9, 0.30, 0.35), PEERS, 4, (False, 2)),
    # best so far counts, not the last value: 0.4 at epoch 1 beats 0.35
    (running(9, 0.40, 0.10), PEERS, 4, (False, 2)),
    # too few completed peers (minTrials 3): continues, and says why
    (running(9, 0.0, 0.0), PEERS[:2], 4, (False, 2)),
    # running peers are no peers, however many
    (running(9, 0.0, 0.0), PEERS[:2] + [running(5, 0.9, 0.9), running(6, 0.9, 0.9)], 4, (False, 2)),
    # peers that never reached epoch 2 are not counted
    (running(9, 0.0, 0.0), PEERS[:2] + [done(3, 0.9)], 4, (False, 2)),
    # before minEpochs (2): no decision point
    (running(9, 0.0), PEERS, 4, None),
    # at the trial's last epoch: it ends anyway, nothing to decide
    (running(9, 0.0, 0.0, 0.0, 0.0), PEERS, 4, None),
    # an even number of peers: the median is the mean of the middle two (0.45 at epoch 2)
    (running(9, 0.40, 0.44), PEERS + [done(3, 0.9, 0.9)], 4, (True, 2)),
    (running(9, 0.40, 0.45), PEERS + [done(3, 0.9, 0.9)], 4, (False, 2)),
])  # fmt: skip
def test_median_rule(trial, others, budget, expected):
    decision = MedianRule(min_epochs=2, min_trials=3).decide(trial, others, budget)
    if expected is None:
        assert decision is None
        return
    assert (decision.stop, decision.epoch, decision.rule) == (*expected, "median")
    assert decision.reason


def test_median_reason_names_too_few_trials():
    decision = MedianRule(min_epochs=1, min_trials=3).decide(running(9, 0.1), PEERS[:1], 4)
    assert not decision.stop and "fewer than minTrials 3" in decision.reason


def test_median_ignores_the_trial_itself_among_peers():
    me = done(0, 0.1, 0.1, 0.1)
    rule = MedianRule(min_epochs=1, min_trials=1)
    assert rule.decide(running(0, 0.1), [me], 3).reason.startswith("0 completed")


@pytest.mark.parametrize(("min_epochs", "eta", "budget", "bracket", "expected"), [
    (1, 3, 27, 0, [1, 3, 9]),
    (1, 3, 28, 0, [1, 3, 9, 27]),
    (1, 2, 4, 0, [1, 2]),
    (2, 2, 16, 0, [2, 4, 8]),
    (1, 3, 27, 1, [3, 9]),
    (1, 3, 27, 2, [9]),
    (1, 3, 3, 1, []),
    (1, 3, 1, 0, []),
])  # fmt: skip
def test_rungs(min_epochs, eta, budget, bracket, expected):
    assert rungs(min_epochs, eta, budget, bracket) == expected


@pytest.mark.parametrize(("trial", "others", "expected"), [
    # the first trial to reach a rung always continues (ASHA does not wait)
    (running(0, 0.1), [], False),
    # second at rung 1 with eta 2: 1 better of 2 -> 1*2 < 2 fails: stopped
    (running(1, 0.1), [running(0, 0.5)], True),
    # better than the one there: continues
    (running(1, 0.6), [running(0, 0.5)], False),
    # a tie is not "better": continues
    (running(1, 0.5), [running(0, 0.5)], False),
    # 4 at the rung, eta 2: top 2 continue (1 better of 4 -> 2 < 4)
    (running(3, 0.4), [running(0, 0.5), running(1, 0.3), running(2, 0.2)], False),
    # 2 better of 4: 4 < 4 fails: stopped
    (running(3, 0.25), [running(0, 0.5), running(1, 0.3), running(2, 0.2)], True),
    # the score at the rung epoch counts, not a later one of a peer further on
    (running(1, 0.4), [done(0, 0.3, 0.9, 0.9, 0.9)], False),
    # not a rung epoch (3 with rungs 1, 2 and budget 4): no decision
    (running(1, 0.1, 0.1, 0.1), [done(0, 0.9, 0.9, 0.9, 0.9)], None),
    # stopped trials still count at the rungs they reached
    (running(2, 0.2), [running(0, 0.5), Curve(1, (0.3,))], True),
])  # fmt: skip
def test_successive_halving_rule(trial, others, expected):
    decision = HalvingRule(min_epochs=1, eta=2).decide(trial, others, budget=4)
    if expected is None:
        assert decision is None
        return
    assert (decision.stop, decision.epoch, decision.rule) == (expected, trial.epochs,
                                                              "successive-halving")


def test_successive_halving_second_rung():
    rule = HalvingRule(min_epochs=1, eta=2)
    peers = [done(0, 0.1, 0.8, 0.9, 0.9), done(1, 0.9, 0.7, 0.9, 0.9)]
    assert rule.decide(running(2, 0.95, 0.5), peers, 4).stop  # 2 of 3 better at epoch 2
    assert not rule.decide(running(2, 0.0, 0.75), peers, 4).stop  # 1 of 3: 2 < 3


def test_hyperband_brackets_compare_within_a_bracket():
    rule = HalvingRule(min_epochs=1, eta=2, brackets=2)
    # trial 2 is in bracket 0 (rungs 1, 2); trial 1 (bracket 1) is not its peer
    assert not rule.decide(running(2, 0.1), [running(1, 0.9)], 4).stop
    assert rule.decide(running(2, 0.1), [running(0, 0.9)], 4).stop
    # bracket 1 starts at epoch 2: epoch 1 is no rung there
    assert rule.decide(running(3, 0.0), [running(1, 0.9)], 4) is None
    assert rule.decide(running(3, 0.0, 0.0), [running(1, 0.9, 0.9)], 4).stop
    assert "bracket 1" in rule.decide(running(3, 0.0, 0.0), [running(1, 0.9, 0.9)], 4).reason


def test_same_curves_same_decisions_in_any_order():
    """What makes a restart exact: a decision depends on the curves, not on their order."""
    rule = HalvingRule(min_epochs=1, eta=3)
    peers = [running(i, s) for i, s in enumerate((0.5, 0.2, 0.9, 0.4, 0.4))]
    trial = running(7, 0.4)
    first = rule.decide(trial, peers, 9)
    assert first == rule.decide(trial, list(reversed(peers)), 9)
    assert first.stop  # 2 better of 6: 2*3 < 6 fails


def test_lower_is_better_metrics_are_negated():
    assert oriented("val_perplexity", [100.0, 80.0]) == (-100.0, -80.0)
    assert oriented("val_accuracy", [0.5]) == (0.5,)
    assert shown("val_perplexity", -80.0) == 80.0
    rule = HalvingRule(min_epochs=1, eta=2)
    good, bad = oriented("val_perplexity", [90.0]), oriented("val_perplexity", [200.0])
    assert rule.decide(Curve(1, bad), [Curve(0, good)], 4).stop
    assert not rule.decide(Curve(1, good), [Curve(0, bad)], 4).stop


def test_settings_build_the_rule():
    assert EarlyStopping(type="median", minEpochs=2, minTrials=5).rule() == MedianRule(2, 5)
    settings = EarlyStopping.model_validate(
        {"type": "successive-halving", "reductionFactor": 2, "brackets": 3})
    assert settings.rule() == HalvingRule(min_epochs=1, eta=2, brackets=3)
    assert settings.stoppedReward == "partial"


@pytest.mark.parametrize(("doc", "words"), [
    ({}, "type"),
    ({"type": "hyperband"}, "type"),
    ({"type": "median", "minEpochs": 0}, "minEpochs"),
    ({"type": "successive-halving", "reductionFactor": 1}, "reductionFactor"),
    ({"type": "successive-halving", "brackets": 11}, "brackets"),
    ({"type": "median", "stoppedReward": "zero"}, "stoppedReward"),
    ({"type": "median", "minEpoch": 2}, "minEpoch"),
    ({"type": "median", "minTrials": "3"}, "minTrials"),
])  # fmt: skip
def test_bad_settings_name_the_field(doc, words):
    with pytest.raises(ValidationError, match=words):
        EarlyStopping.model_validate(doc)
