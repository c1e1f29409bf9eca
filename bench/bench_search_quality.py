"""Search quality at equal budget: kubenas' strategies against random search and Optuna's TPE.

Every strategy searches the same space for the same number of trials; each
trial's result is a real training of that architecture, looked up in the
table of ``bench.quality_table`` (ENAS macro, 3 layers, 1,728 architectures,
digits, 3 epochs; rebuilt with ``python -m bench.quality_table --rebuild``).
The reward is kubenas' default objective, (max val accuracy)^3; a repeated
architecture costs a trial like any other. Trials run one at a time (ask,
train, tell), so asynchrony plays no part here.

Strategies: ``random``; ``reinforce`` and ``ppo`` with the space's paper
defaults but ``batchSize`` 5 (40 updates in 200 trials), and again with the
ENAS reference code's controller learning rate (3.5e-3, 10x the papers'),
because a few hundred trials barely move a controller at the papers' rate;
``evolution`` (population 20, tournament 5, scaled to the budget); and Optuna's
TPE sampler with one ``suggest_categorical`` per token position (defaults,
seeded). The settings were fixed before any result was seen, not tuned here.

Reported per strategy, over seeds: best validation accuracy after N trials
(mean +- std), the test accuracy of the architecture picked by validation, its
rank in the table, the seconds the strategy itself spent (ask + tell), and the
CPU-seconds of training the budget stands for. The running-best curves go to
``bench/out/search_quality.png`` and the raw numbers to ``search_quality.json``.

    python -m bench.bench_search_quality [--quick] [--seeds 10] [--budget 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.quality_table import TABLE_PATH, TASK, Entry, QualityTable, noise_summary, verify
from bench.table import format_table
from controller_policy.strategies import make_strategy

OUT_DIR = Path(__file__).parent / "out"
CODE_LR = 3.5e-3
"""The ENAS reference code's controller learning rate (micro), 10x the papers' 3.5e-4."""
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "random": ("random", {}),
    "reinforce": ("reinforce", {"batchSize": 5}),
    "reinforce, lr 3.5e-3": ("reinforce", {"batchSize": 5, "learningRate": CODE_LR}),
    "ppo": ("ppo", {"batchSize": 5}),
    "ppo, lr 3.5e-3": ("ppo", {"batchSize": 5, "learningRate": CODE_LR}),
    "evolution": ("evolution", {"populationSize": 20, "sampleSize": 5}),
}
"""Row name -> (kubenas strategy, what differs from its defaults, the space's paper values)."""


@dataclass
class Run:
    """One search: the table entries it visited, in trial order, and its own compute time."""

    strategy: str
    seed: int
    entries: list[Entry] = field(default_factory=list)
    strategy_seconds: float = 0.0

    def running_best(self) -> list[float]:
        out, best = [], 0.0
        for e in self.entries:
            best = max(best, e.accuracy)
            out.append(best)
        return out

    def pick(self, n: int) -> Entry:
        """The architecture a user would keep after ``n`` trials: best validation accuracy."""
        return max(self.entries[:n], key=lambda e: e.accuracy)


def run_kubenas(name: str, seed: int, budget: int, table: QualityTable) -> Run:
    """ask -> look up the real training -> tell, ``budget`` times."""
    kind, settings = VARIANTS[name]
    strategy = make_strategy(kind, table.space, {**settings, "seed": seed})
    run = Run(name, seed)
    for _ in range(budget):
        t = time.perf_counter()
        proposal = strategy.ask()
        run.strategy_seconds += time.perf_counter() - t
        entry = table.get(proposal.architecture.tokens)
        run.entries.append(entry)
        t = time.perf_counter()
        strategy.tell(proposal.id, entry.reward)
        run.strategy_seconds += time.perf_counter() - t
    return run


def run_optuna(seed: int, budget: int, table: QualityTable) -> Run:
    """Optuna's TPE over the same token positions; its objective time is taken out of its cost."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = Run("optuna-tpe", seed)
    lookup_seconds = 0.0

    def objective(trial: optuna.Trial) -> float:
        nonlocal lookup_seconds
        tokens = [trial.suggest_categorical(s.name, list(range(s.num_values))) for s in table.space.slots]
        t = time.perf_counter()
        entry = table.get(tokens)
        lookup_seconds += time.perf_counter() - t
        run.entries.append(entry)
        return entry.reward

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    t = time.perf_counter()
    study.optimize(objective, n_trials=budget)
    run.strategy_seconds = time.perf_counter() - t - lookup_seconds
    return run


def expected_random_best(accuracies: list[float], n: int) -> float:
    """Exact E[max of n uniform draws with replacement] over the whole table."""
    values = sorted(accuracies)
    m = len(values)
    return sum(v * (((i + 1) / m) ** n - (i / m) ** n) for i, v in enumerate(values))


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def report(runs: dict[str, list[Run]], table: QualityTable, checkpoints: list[int], budget: int) -> str:
    """The Markdown tables: best accuracy at N, the pick's test accuracy and rank, costs."""
    accuracies = sorted((e.accuracy for e in table.all_entries()), reverse=True)
    rank = {a: accuracies.index(a) + 1 for a in set(accuracies)}  # ties share the better rank
    rows = []
    for name, group in runs.items():
        curves = [r.running_best() for r in group]
        picks = [r.pick(budget) for r in group]
        rows.append([
            name,
            *(mean_std([c[n - 1] for c in curves]) for n in checkpoints),
            mean_std([p.test for p in picks]),
            f"{statistics.median(rank[p.accuracy] for p in picks):.0f}",
            f"{statistics.mean(len({tuple(e.tokens) for e in r.entries}) for r in group):.0f}",
            f"{statistics.mean(r.strategy_seconds for r in group):.2f}",
            f"{statistics.mean(sum(e.cpu_s for e in r.entries) for r in group):,.0f}",
        ])
    if table.complete:
        rows.append(["uniform random, exact expectation",
                     *(f"{expected_random_best(accuracies, n):.4f}" for n in checkpoints),
                     "", "", "", "", ""])
    headers = ["strategy", *(f"best val acc @{n}" for n in checkpoints),
               f"test acc of pick @{budget}", f"median rank of pick @{budget}",
               "distinct archs", "strategy s/search", "training CPU-s/search (from table)"]
    return format_table(headers, rows)


def plot_running_best(runs: dict[str, list[Run]], accuracies: list[float], path: Path, *,
                      title: str, ylabel: str, bands: bool, floor: tuple[int, float],
                      headroom: float) -> None:
    """Mean running best per strategy (with one standard error as a band when ``bands``) beside
    the exact random expectation and the table's optimum; the y axis starts at the random
    expectation after ``floor[0]`` trials minus ``floor[1]`` (matplotlib object API, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    n = len(next(iter(runs.values()))[0].entries)
    xs = list(range(1, n + 1))
    for i, (name, group) in enumerate(runs.items()):
        curves = [r.running_best() for r in group]
        mean = [statistics.mean(c[j] for c in curves) for j in range(n)]
        if not bands:
            ax.plot(xs, mean, label=name, linestyle=styles[i % len(styles)], linewidth=1.6)
            continue
        se = [statistics.stdev(c[j] for c in curves) / math.sqrt(len(curves)) if len(curves) > 1
              else 0.0 for j in range(n)]
        (line,) = ax.plot(xs, mean, label=name, linewidth=1.5)
        ax.fill_between(xs, [m - e for m, e in zip(mean, se, strict=True)],
                        [m + e for m, e in zip(mean, se, strict=True)], color=line.get_color(),
                        alpha=0.15)
    if accuracies:
        ax.plot(xs, [expected_random_best(accuracies, k) for k in xs], color="black", linewidth=1,
                linestyle=(0, (1, 1)), label="random, exact expectation")
        ax.axhline(max(accuracies), color="grey", linewidth=1, label="table optimum")
        ax.set_ylim(bottom=expected_random_best(accuracies, floor[0]) - floor[1],
                    top=max(accuracies) + headroom)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot(runs: dict[str, list[Run]], accuracies: list[float], path: Path) -> None:
    """The digits comparison's curves; bands are left out: they overlap so much that they hide
    the means, and the table gives the spread."""
    plot_running_best(runs, accuracies, path, bands=False, floor=(5, 0.01), headroom=0.003,
                      ylabel="best validation accuracy so far (mean over seeds)",
                      title=f"{TASK['spaceType']} L={TASK['spaceOptions']['layers']} on digits, "
                            f"{len(next(iter(runs.values())))} seeds")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_search_quality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 30 trials, 1 live re-check")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--table", type=Path, default=TABLE_PATH)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny controller steps: more threads only add contention
    logging.getLogger("nas_trainer").setLevel(logging.WARNING)
    seeds = args.seeds or (2 if args.quick else 10)
    budget = args.budget or (30 if args.quick else 200)
    checkpoints = [n for n in (10, 25, 50, 100, 200, 500) if n <= budget]
    if checkpoints[-1] != budget:
        checkpoints.append(budget)
    started = time.perf_counter()
    table = QualityTable.load(args.table)
    cached = len(table.entries)

    searches: dict[str, Callable[[int], Run]] = {
        name: (lambda seed, n=name: run_kubenas(n, seed, budget, table)) for name in VARIANTS
    }
    searches["optuna-tpe"] = lambda seed: run_optuna(seed, budget, table)
    runs = {name: [search(seed) for seed in range(seeds)] for name, search in searches.items()}
    search_wall = time.perf_counter() - started

    check_n = 1 if args.quick else 3
    check_started = time.perf_counter()
    worst = verify(table, check_n)
    check_wall = time.perf_counter() - check_started
    if table.trained_live:
        table.save(args.table)

    entries = table.all_entries()
    seed_std, across = noise_summary(table)
    best = max(entries, key=lambda e: e.accuracy)
    accs = [e.accuracy for e in entries]
    training = TASK["training"]
    print(f"Task: {TASK['spaceType']} with {TASK['spaceOptions']['layers']} layers "
          f"({table.space.size():,} architectures, {table.space.num_tokens} tokens), digits "
          f"(1,200 train / 300 val / 297 test, 8x8), {training['epochs']} epochs, batch "
          f"{training['batchSize']}, lr {training['learningRate']} cosine, {training['model']['filters']} "
          f"filters, trial seed {TASK['seed']}, CPU, 1 thread.")
    print(f"Table: {cached:,} of {table.space.size():,} architectures cached before this run, "
          f"{table.trained_live} trained now; table accuracy: best {best.accuracy:.4f} "
          f"(tokens {best.tokens}), median {statistics.median(accs):.4f}, worst {min(accs):.4f}; "
          f"median {statistics.median(e.cpu_s for e in entries):.2f} CPU-s per training.")
    built = table.data.get("built_with", {})
    total_cpu = sum(e.cpu_s for e in entries) + sum(
        r["cpu_s"] for by_seed in table.data["noise"].values() for r in by_seed.values())
    print(f"Table build: {total_cpu / 60:.0f} CPU-minutes of training in all (with the seed-noise "
          f"reruns), {table.data.get('build_wall_s', 0) / 60:.0f} min wall with {built.get('workers', '?')} "
          f"worker processes on {built.get('cores', '?')} cores ({built.get('cpu', 'CPU unknown')}, "
          f"torch {built.get('torch')}, commit {built.get('commit')}).")
    print(f"Budget {budget} trials, seeds 0..{seeds - 1}; reward (max val acc)^3. "
          f"Cache check: {check_n} entr{'y' if check_n == 1 else 'ies'} retrained now, "
          f"max |val acc difference| {worst:.6f} ({check_wall:.1f} s).\n")
    print(report(runs, table, checkpoints, budget))
    print(f"\nSettings (beyond each strategy's defaults for {TASK['spaceType']}): "
          f"{json.dumps({k: v[1] for k, v in VARIANTS.items()})}; optuna-tpe: TPESampler(seed=seed) "
          "defaults, one suggest_categorical per token. Same seed = same RNG stream: random and "
          "evolution share their first 20 proposals, the controllers their initial weights. "
          "Rank 1 = the table's best validation accuracy; seed-to-seed noise of one training in "
          f"the table: {seed_std:.4f} std (vs {across:.4f} across architectures).")
    png = args.out / ("search_quality-quick.png" if args.quick else "search_quality.png")
    plot(runs, accs if table.complete else [], png)
    (args.out / png.with_suffix(".json").name).write_text(json.dumps({
        name: [{"seed": r.seed, "running_best": r.running_best(),
                "tokens": [e.tokens for e in r.entries], "strategy_seconds": r.strategy_seconds}
               for r in group] for name, group in runs.items()}))
    print(f"Running-best curves: {png.relative_to(Path.cwd()) if png.is_relative_to(Path.cwd()) else png}. "
          f"Wall time: {search_wall:.1f} s for {len(runs) * seeds} searches of {budget} trials "
          f"(table lookups), {time.perf_counter() - started:.1f} s in all.")


if __name__ == "__main__":
    main()
