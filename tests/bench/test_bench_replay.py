"""The epoch-by-epoch replay behind the early-stopping and multi-objective benchmarks.

Checked on the shipped Fashion-MNIST table with the real rules and strategies:
the budget is spent exactly, a stopped trial costs only the epochs it ran, an
excluded trial is withdrawn from the strategy, a limit checked before training
never lets an architecture over it train; the latency side table and the
hypervolume fractions; and both benchmarks' ``--quick`` command lines.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.bench_pareto import Found, Space, optimum_of, scores
from bench.fashion_table import TABLE_PATH, FashionTable
from bench.latency_table import LATENCY_PATH, LatencyTable, build
from bench.replay import (
    KubenasSearcher,
    Limit,
    NoGate,
    OptunaPrunerGate,
    OptunaSearcher,
    RuleGate,
    replay,
)
from controller_policy.early_stopping import EarlyStopping

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table() -> FashionTable:
    return FashionTable.load(TABLE_PATH)


class StopAfterFirst:
    """A gate that stops every trial after its first epoch."""

    name = "first"

    def should_stop(self, handle: Any, trial: int, values: Sequence[float]) -> str | None:
        return "first epoch only"

    def finished(self, handle: Any, trial: int, values: Sequence[float], stopped: bool) -> None:
        return None


def test_no_early_stopping_spends_whole_trainings(table: FashionTable) -> None:
    trace = replay(KubenasSearcher("random", table, 0), NoGate(), table, 42, "full")
    assert len(trace.best) == 42
    assert [t.epochs for t in trace.trials] == [4] * 10 + [2]  # the last one cut by the budget
    assert trace.trials[-1].stopped == "budget" and trace.stopped_trials == 0
    assert trace.best == sorted(trace.best)
    assert trace.final == max(t.observed for t in trace.trials)


def test_a_stopped_trial_costs_only_its_epochs(table: FashionTable) -> None:
    trace = replay(KubenasSearcher("random", table, 0), StopAfterFirst(), table, 30, "partial")
    assert len(trace.trials) == 30 and all(t.epochs == 1 for t in trace.trials)
    for t in trace.trials:
        row = table.get(t.tokens)
        assert t.observed == row.val[0] and t.full == row.accuracy


def test_successive_halving_stops_at_its_rungs_and_spends_the_budget(table: FashionTable) -> None:
    gate = RuleGate(EarlyStopping(type="successive-halving"), 4)  # eta 3: rungs at epochs 1 and 3
    trace = replay(KubenasSearcher("random", table, 1), gate, table, 400, "partial")
    assert sum(t.epochs for t in trace.trials) == 400
    stopped = [t for t in trace.trials if t.stopped not in (None, "budget")]
    assert stopped and {t.epochs for t in stopped} <= {1, 3}
    assert len(trace.trials) > 100  # more architectures than 400 epochs of full trainings


def test_exclude_withdraws_stopped_trials_from_the_strategy(table: FashionTable) -> None:
    searcher = KubenasSearcher("reinforce", table, 0)
    gate = RuleGate(EarlyStopping(type="median", stoppedReward="exclude"), 4)
    trace = replay(searcher, gate, table, 120, "exclude")
    assert trace.stopped_trials > 0
    assert searcher.strategy.pending == []  # every proposal closed: told or withdrawn


def test_optuna_pruner_rows_mark_trials_pruned(table: FashionTable) -> None:
    import optuna

    searcher = OptunaSearcher(table, 0, pruner=optuna.pruners.SuccessiveHalvingPruner())
    trace = replay(searcher, OptunaPrunerGate("SuccessiveHalvingPruner"), table, 120, "pruned")
    states = [t.state for t in searcher.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == trace.stopped_trials > 0


def test_a_limit_checked_before_training_never_trains_over_it(table: FashionTable) -> None:
    limit = Limit("macs", 100_000)
    trace = replay(KubenasSearcher("evolution", table, 0), NoGate(), table, 200, "full", limit=limit)
    assert trace.infeasible > 0 and len(trace.trials) == 50
    assert all(table.get(t.tokens).macs <= 100_000 for t in trace.trials)


def test_full_semantics_refuses_a_gate(table: FashionTable) -> None:
    with pytest.raises(ValueError, match="NoGate"):
        replay(KubenasSearcher("random", table, 0), StopAfterFirst(), table, 8, "full")


def test_shipped_latency_table_covers_the_space(table: FashionTable) -> None:
    latency = LatencyTable.load(LATENCY_PATH)
    assert len(latency.latency_ms) == len(table.rows)
    assert all(v > 0 for v in latency.latency_ms.values())
    assert latency.measure["batch"] == 64 and latency.measure["threads"] == 1
    assert 0 < latency.noise() < 5
    assert "relative noise" in latency.describe()


def test_latency_builder_writes_a_loadable_table(tmp_path: Path) -> None:
    out = tmp_path / "lat.json"
    build(out, limit=2, passes=2)
    latency = LatencyTable.load(out)
    assert len(latency.latency_ms) == 2 and all(len(v) == 2 for v in latency.passes_ms.values())


def test_hypervolume_fractions_are_one_for_the_whole_table() -> None:
    space = Space.load()
    optimum = optimum_of(space)
    everything = Found("all", 0, [space.measure(r.tokens) for r in space.table.all_entries()])
    assert scores(everything, space, optimum)["hv_latency"] == pytest.approx(1.0)
    assert scores(everything, space, optimum)["hv_macs"] == pytest.approx(1.0)
    few = Found("few", 0, everything.trials[:5])
    assert 0 <= scores(few, space, optimum)["hv_latency"] < 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize("module, headings", [
    ("bench_early_stopping", ["| random + successive-halving, partial", "optuna SuccessiveHalvingPruner",
                              "epochs ratio to no-ES final best", "trainings over the limit"]),
    ("bench_pareto", ["| evolution, Pareto selection", "| optuna NSGA-II", "hypervolume, accuracy x latency"]),
])
def test_quick_command_line_prints_its_tables(module: str, headings: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=580, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for heading in headings:
        assert heading in proc.stdout
    assert "Wilcoxon" in proc.stdout or "p=" in proc.stdout
    assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in tmp_path.iterdir())
