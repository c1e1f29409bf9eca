"""``bench.bench_darts``'s time-to-loss bookkeeping: when a run reaches the target and what counts as a difference."""

from __future__ import annotations

from bench.bench_darts import Reached, time_to_target, verdict


def test_target_is_reached_at_the_end_of_the_first_epoch_at_or_below_it() -> None:
    epochs = [{"train_loss": 2.3, "epoch_seconds": 4.0}, {"train_loss": 1.9, "epoch_seconds": 5.0},
              {"train_loss": 1.5, "epoch_seconds": 6.0}]
    assert time_to_target(epochs, 1.9, 128) == Reached(9.0, 256)
    assert time_to_target(epochs, 2.5, 128) == Reached(4.0, 128)
    assert time_to_target(epochs, 1.0, 128) == Reached(None, None)


def test_a_difference_within_the_summed_spread_is_no_difference() -> None:
    assert verdict([10.0, 12.0], [11.0, 13.0]).startswith("no difference")
    assert verdict([20.0, 21.0], [10.0, 11.0]).startswith("more")
    assert verdict([5.0, 5.5], [10.0, 11.0]).startswith("less")
    assert verdict([], [10.0]) == "n/a"
