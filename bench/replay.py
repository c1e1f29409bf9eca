"""Replay a search on the Fashion-MNIST table epoch by epoch, so that a stopped trial costs only the epochs it ran.

A search here is a *searcher* (something that proposes an architecture and is
told how it did: kubenas' strategies through their public ask/tell, or an
Optuna study through its ask/tell) and a *gate* (an early-stopping rule, or
none). The replay asks for an architecture, looks its real training up in the
table, and reveals the validation accuracy one epoch at a time; after each epoch
but the last the gate may stop the trial. Every revealed epoch is one epoch of
the budget, which is the total number of training epochs the search may spend;
the last trial is cut when the budget runs out. Trials run one after another
(one worker), so the rules see every earlier trial.

What a stopped trial tells its searcher is the ``semantics``: ``partial`` (the
objective computed on the epochs it reached, what Katib, Ray Tune and Optuna
do) or ``exclude`` (nothing: kubenas strategies get ``withdraw``, what the loop
does under ``stoppedReward: exclude``; Optuna trials are marked failed, which
its samplers skip).

An optional limit (``Limit``) is checked before training: an architecture over
it costs no epoch, is told to the searcher with a penalty reward, and the next
proposal takes its slot (``objective.constraints`` of issue 16).

The result of one search is a ``Trace``: the best validation accuracy seen after
every epoch spent, and each trial's architecture, epochs and outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bench.bench_search_quality import VARIANTS
from bench.fashion_table import FashionTable
from bench.quality_table import OBJECTIVE
from controller_policy.early_stopping import Curve, EarlyStopping, Rule, oriented
from controller_policy.objective import compute_reward
from controller_policy.strategies import make_strategy

Semantics = Literal["full", "partial", "exclude", "pruned"]
"""``full``: no early stopping (every trial runs its epochs); ``pruned``: Optuna's own handling of
a pruned trial (state PRUNED; its samplers use the last reported value), for its pruners' rows."""
MAX_PROPOSALS_PER_EPOCH = 50
"""A searcher that proposes only architectures over the limit stops the replay after this many
proposals per epoch of budget (it would otherwise never end)."""


def objective_of(values: Sequence[float]) -> float:
    """kubenas' default reward, (max val accuracy of the last k epochs)^3, on the epochs seen."""
    return compute_reward(OBJECTIVE, [{"val_accuracy": v} for v in values])


def accuracy_of(values: Sequence[float]) -> float:
    return max(values[-OBJECTIVE.lastEpochs:])


class Searcher(Protocol):
    """What proposes architectures: ``ask`` gives a handle and tokens; ``tell`` closes the handle."""

    def ask(self) -> tuple[Any, list[int]]: ...

    def tell(self, handle: Any, values: Sequence[float], complete: bool, semantics: Semantics) -> None: ...

    def tell_penalty(self, handle: Any, reward: float) -> None: ...


class Gate(Protocol):
    """An early-stopping rule as the replay sees it."""

    name: str

    def should_stop(self, handle: Any, trial: int, values: Sequence[float]) -> str | None:
        """Called after epoch ``len(values)`` of trial number ``trial`` (not after its last epoch):
        a reason to stop it now, or None to go on."""
        ...

    def finished(self, handle: Any, trial: int, values: Sequence[float], stopped: bool) -> None:
        """The trial ended (completed or stopped) with these epochs' values."""
        ...


class NoGate:
    """Every trial runs all its epochs."""

    name = "none"

    def should_stop(self, handle: Any, trial: int, values: Sequence[float]) -> str | None:
        return None

    def finished(self, handle: Any, trial: int, values: Sequence[float], stopped: bool) -> None:
        return None


@dataclass(frozen=True)
class Limit:
    """A hard limit checked before training: ``field`` (``params`` or ``macs``) at most ``maximum``."""

    field: Literal["params", "macs"]
    maximum: int
    penalty: float = 0.0
    check: Callable[[list[int]], int] | None = None
    """How the figure of an architecture is counted before training; None: the table's column."""

    def value(self, table: FashionTable, tokens: list[int]) -> int:
        if self.check is not None:
            return self.check(tokens)
        return int(getattr(table.get(tokens), self.field))

    def allows(self, table: FashionTable, tokens: list[int]) -> bool:
        return self.value(table, tokens) <= self.maximum


@dataclass(frozen=True)
class TrialOutcome:
    tokens: list[int]
    epochs: int
    """Epochs it ran (and cost)."""
    observed: float
    """Best validation accuracy over the epochs it ran: what the search saw."""
    full: float
    """Its accuracy had it run every epoch: the table's."""
    stopped: str | None
    """The gate's reason, ``budget`` when the budget ran out mid-trial, None when it completed."""


@dataclass
class Trace:
    """One replayed search."""

    name: str
    seed: int
    budget: int
    best: list[float] = field(default_factory=list)
    """best[i]: the best observed validation accuracy after i + 1 epochs spent."""
    trials: list[TrialOutcome] = field(default_factory=list)
    infeasible: int = 0
    """Proposals refused by the limit before training (no epoch spent)."""

    def epochs_to_reach(self, target: float) -> int | None:
        """Epochs spent when the best first reached ``target``; None if it never did."""
        for i, value in enumerate(self.best):
            if value >= target - 1e-12:
                return i + 1
        return None

    @property
    def final(self) -> float:
        return self.best[-1] if self.best else 0.0

    @property
    def stopped_trials(self) -> int:
        return sum(1 for t in self.trials if t.stopped not in (None, "budget"))


def replay(searcher: Searcher, gate: Gate, table: FashionTable, budget: int, semantics: Semantics,
           name: str = "", seed: int = 0, limit: Limit | None = None) -> Trace:
    """Run one search until ``budget`` epochs are spent; see the module docstring."""
    if semantics == "full" and not isinstance(gate, NoGate):
        raise ValueError("semantics 'full' means no early stopping: pass NoGate()")
    trace = Trace(name, seed, budget)
    spent, best, proposals = 0, 0.0, 0
    while spent < budget:
        proposals += 1
        if proposals > MAX_PROPOSALS_PER_EPOCH * budget:
            break
        handle, tokens = searcher.ask()
        if limit is not None and not limit.allows(table, tokens):
            trace.infeasible += 1
            searcher.tell_penalty(handle, limit.penalty)
            continue
        row = table.get(tokens)
        values: list[float] = []
        stopped: str | None = None
        for value in row.val:
            if spent >= budget:
                stopped = "budget"
                break
            values.append(value)
            spent += 1
            best = max(best, value)
            trace.best.append(best)
            if len(values) < len(row.val):
                stopped = gate.should_stop(handle, len(trace.trials), values)
                if stopped is not None:
                    break
        complete = len(values) == len(row.val)
        if values:
            searcher.tell(handle, values, complete, semantics)
            gate.finished(handle, len(trace.trials), values, not complete)
            trace.trials.append(TrialOutcome(list(tokens), len(values), max(values), row.accuracy, stopped))
    trace.best += [best] * (budget - len(trace.best))  # a search that gave up keeps its best
    return trace


class KubenasSearcher:
    """One of kubenas' strategies (the rows of ``bench.bench_search_quality.VARIANTS``), through
    ``make_strategy`` and its public ask/tell."""

    def __init__(self, variant: str, table: FashionTable, seed: int,
                 reward: Callable[[list[int], Sequence[float]], float] | None = None) -> None:
        kind, settings = VARIANTS[variant]
        self.strategy = make_strategy(kind, table.space, {**settings, "seed": seed})
        self.reward = reward

    def ask(self) -> tuple[Any, list[int]]:
        proposal = self.strategy.ask()
        return proposal.id, list(proposal.architecture.tokens)

    def tell(self, handle: Any, values: Sequence[float], complete: bool, semantics: Semantics) -> None:
        if not complete and semantics == "exclude":
            self.strategy.withdraw(handle)
            return
        if not complete and semantics == "pruned":
            raise ValueError("semantics 'pruned' is Optuna's own; kubenas strategies take partial or exclude")
        self.strategy.tell(handle, objective_of(values))

    def tell_penalty(self, handle: Any, reward: float) -> None:
        self.strategy.tell(handle, reward)


class OptunaSearcher:
    """An Optuna study over the same token positions (one ``suggest_categorical`` each), through
    ``Study.ask`` / ``Study.tell``; with a pruner, ``OptunaPrunerGate`` reports to it."""

    def __init__(self, table: FashionTable, seed: int, pruner: Any = None, sampler: Any = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.space = table.space
        self.study = optuna.create_study(direction="maximize",
                                         sampler=sampler or optuna.samplers.TPESampler(seed=seed),
                                         pruner=pruner or optuna.pruners.NopPruner())

    def ask(self) -> tuple[Any, list[int]]:
        trial = self.study.ask()
        return trial, [trial.suggest_categorical(s.name, list(range(s.num_values))) for s in self.space.slots]

    def tell(self, handle: Any, values: Sequence[float], complete: bool, semantics: Semantics) -> None:
        state = self.optuna.trial.TrialState
        if complete:
            self.study.tell(handle, accuracy_of(values))
        elif semantics == "exclude":
            self.study.tell(handle, state=state.FAIL)
        elif semantics == "pruned":
            self.study.tell(handle, state=state.PRUNED)
        else:
            self.study.tell(handle, accuracy_of(values))

    def tell_penalty(self, handle: Any, reward: float) -> None:
        self.study.tell(handle, reward)


class RuleGate:
    """One of kubenas' early-stopping rules (``controller_policy.early_stopping``, built from the
    ``spec.earlyStopping`` settings) deciding from the curves of every earlier trial."""

    def __init__(self, settings: EarlyStopping, epochs: int) -> None:
        self.rule: Rule = settings.rule()
        self.name = self.rule.name
        self.epochs = epochs
        self.done: list[Curve] = []

    def should_stop(self, handle: Any, trial: int, values: Sequence[float]) -> str | None:
        mine = Curve(trial, oriented(OBJECTIVE.metric, values))
        decision = self.rule.decide(mine, self.done, self.epochs)
        return decision.reason if decision is not None and decision.stop else None

    def finished(self, handle: Any, trial: int, values: Sequence[float], stopped: bool) -> None:
        self.done.append(Curve(trial, oriented(OBJECTIVE.metric, values), completed=not stopped))


class OptunaPrunerGate:
    """Optuna's own pruner deciding: each epoch is ``trial.report``-ed, then ``should_prune``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def should_stop(self, handle: Any, trial: int, values: Sequence[float]) -> str | None:
        handle.report(values[-1], len(values))
        return f"{self.name} pruned at epoch {len(values)}" if handle.should_prune() else None

    def finished(self, handle: Any, trial: int, values: Sequence[float], stopped: bool) -> None:
        return None


def run_by_row(run: Callable[[tuple[Any, int, int]], Any], rows: Sequence[Any], seeds: int, budget: int,
               workers: int) -> dict[Any, list[Any]]:
    """``run((row, seed, budget))`` for every row and seed, in ``workers`` forked processes (1: here),
    grouped by row in seed order."""
    jobs = [(row, seed, budget) for row in rows for seed in range(seeds)]
    if workers <= 1:
        results = [run(j) for j in jobs]
    else:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(run, jobs, chunksize=2))
    out: dict[Any, list[Any]] = {row: [] for row in rows}
    for (row, _, _), result in zip(jobs, results, strict=True):
        out[row].append(result)
    return out


def mean_curve(traces: Sequence[Trace]) -> list[float]:
    n = len(traces[0].best)
    return [math.fsum(t.best[i] for t in traces) / len(traces) for i in range(n)]
