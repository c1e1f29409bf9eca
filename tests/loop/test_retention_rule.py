"""Retention's choice of NASTrials to delete (pure: a ledger and the names that exist), and the
``spec.retention`` bounds a user can set."""

from __future__ import annotations

import random

import pytest

from nas_operator.api import SpecError, parse_spec
from nas_operator.ledger import Ledger
from nas_operator.loop.retention import covered, to_delete


def finished_ledger(rewards: list[float | None], live: int = 0) -> Ledger:
    """A ledger whose first trials finished with ``rewards`` (None: failed) and were compacted;
    ``live`` more are still running."""
    ledger = Ledger("s")
    for i, reward in enumerate(rewards):
        trial = ledger.add("search", seed=i, proposal_id=i, space="x", tokens=[i])
        ledger.queue.popleft()
        ledger.mark_launched(trial, 0.0)
        if reward is None:
            ledger.fail_attempt(trial, "boom", retries=0)
            ledger.fail(trial, "boom", 1.0)
        else:
            ledger.succeed(trial, reward, {"val_accuracy": reward}, [], f"d{i}", 1.0)
        ledger.untold.clear()
        ledger.compact(trial)
    for i in range(live):
        trial = ledger.add("search", seed=100 + i, proposal_id=None, space="x", tokens=[0])
        ledger.mark_launched(trial, 0.0)
    return ledger


def names(ledger: Ledger) -> list[str]:
    return [f"s-t{i:04d}" for i in range(ledger.created())]


def test_the_best_and_the_latest_stay_and_the_rest_goes():
    rewards = [0.1, 0.9, 0.2, 0.8, 0.3, None, 0.4, 0.05, 0.5, 0.6]
    ledger = finished_ledger(rewards, live=2)
    gone = to_delete(ledger, names(ledger), keep_best=2, keep_recent=3)
    # best two: t0001 (0.9), t0003 (0.8); latest three finished: t0007..t0009; live t0010, t0011
    assert gone == ["s-t0000", "s-t0002", "s-t0004", "s-t0005", "s-t0006"]


@pytest.mark.parametrize(("keep_best", "keep_recent", "left"), [
    (0, 0, 2),            # only the live ones stay
    (10, 0, 11),          # all nine rewards kept; the failed trial (no reward) goes
    (0, 100, 12),
    (1, 1, 4),            # best (t0001) + latest finished (t0009) + 2 live
])
def test_bounds_at_the_edges(keep_best: int, keep_recent: int, left: int):
    ledger = finished_ledger([0.1, 0.9, 0.2, 0.8, 0.3, None, 0.4, 0.05, 0.5, 0.6], live=2)
    present = names(ledger)
    gone = to_delete(ledger, present, keep_best, keep_recent)
    assert len(present) - len(gone) == left
    assert not {"s-t0010", "s-t0011"} & set(gone)  # never a trial still running


def test_final_training_trials_and_foreign_names_are_never_chosen():
    ledger = finished_ledger([0.1, 0.2, 0.3])
    trial = ledger.add("final", seed=0, proposal_id=None, space="x", tokens=[1])
    ledger.queue.popleft()
    ledger.mark_launched(trial, 0.0)
    ledger.succeed(trial, 0.5, {}, [], "f", 1.0)
    ledger.compact(trial)
    gone = to_delete(ledger, [*names(ledger), "s-f0000", "other-t0000", "s-t9999"], 0, 0)
    assert gone == ["s-t0000", "s-t0001", "s-t0002"]


def test_deleting_batch_after_batch_never_deletes_the_best():
    """As the operator does it: trials end in waves, each wave's surplus is deleted; the best
    NASTrial left is always the search's best, whatever the order rewards came in."""
    rng = random.Random(7)
    rewards = [rng.random() for _ in range(500)]
    ledger = finished_ledger(rewards)
    present: set[str] = set()
    for end in range(0, 500, 37):
        present.update(f"s-t{i:04d}" for i in range(end, min(500, end + 37)))
        present -= set(to_delete(ledger, present, keep_best=5, keep_recent=20))
        best_so_far = max(range(min(500, end + 37)), key=lambda i: rewards[i])
        assert f"s-t{best_so_far:04d}" in present
        assert len(present) <= 25
    top5 = sorted(range(500), key=lambda i: -rewards[i])[:5]
    assert {f"s-t{i:04d}" for i in top5} <= present


def spec(retention: object) -> dict:
    return {"searchSpace": {"type": "zoph-le-cnn"}, "retention": retention}


def test_defaults_keep_kubectl_get_nastrials_useful():
    parsed = parse_spec(spec({}))
    assert (parsed.retention.keepBest, parsed.retention.keepRecent) == (10, 100)
    assert parse_spec({"searchSpace": {"type": "zoph-le-cnn"}}).retention.keepRecent == 100


@pytest.mark.parametrize(("retention", "words"), [
    ({"keepBest": -1}, "spec.retention.keepBest"),
    ({"keepBest": 10_001}, "spec.retention.keepBest"),
    ({"keepRecent": 100_001}, "spec.retention.keepRecent"),
    ({"keepRecent": "50"}, "spec.retention.keepRecent"),
    ({"keepBest": 2.5}, "spec.retention.keepBest"),
    ({"keepBest": True}, "spec.retention.keepBest"),
    ({"keepAll": True}, "spec.retention.keepAll"),
    ("all", "spec.retention"),
])
def test_bad_retention_is_refused_with_the_field_named(retention: object, words: str):
    with pytest.raises(SpecError) as err:
        parse_spec(spec(retention))
    text = "; ".join(err.value.errors)
    assert words in text, text
    assert len(text) < 600, text


def test_a_trial_is_covered_once_a_saved_checkpoint_reaches_its_stamp():
    stamps: dict[str, int] = {}
    # first seen when the ledger had compacted 7; the last saved checkpoint holds 5
    assert covered(["a", "b"], stamps, compactions=7, saved=5) == []
    assert stamps == {"a": 7, "b": 7}
    # later sightings keep the first stamp (an upper bound of when each was compacted)
    assert covered(["a", "b", "c"], stamps, compactions=9, saved=7) == ["a", "b"]
    assert stamps["c"] == 9
    assert covered(["c"], stamps, compactions=9, saved=8) == []
    assert covered(["c"], stamps, compactions=12, saved=9) == ["c"]
    # without any saved checkpoint (saved -1) nothing is ever covered
    assert covered(["d"], {}, compactions=0, saved=-1) == []


def test_compactions_count_in_snapshots_and_survive_a_restore():
    ledger = finished_ledger([0.1, 0.2, 0.3], live=2)
    assert ledger.compactions == 3 and ledger.snapshot().compactions == 3
    restored = Ledger.from_state(ledger.to_state())
    assert restored.compactions == 3
