"""Search quality where architectures matter: strategies at equal budget on the Fashion-MNIST table, 50 seeds.

Every strategy searches the 512 architectures of ``bench.fashion_table`` (Zoph & Le's
space with 2 layers of 16 filters, Fashion-MNIST 12x12) for
the same number of trials, one at a time (ask, look the real training up, tell);
a repeated architecture costs a trial like any other. The runners are those of
``bench.bench_search_quality`` (kubenas' own strategies through
``controller_policy.strategies.make_strategy`` with the same settings, and
Optuna's TPE with one ``suggest_categorical`` per token).

Strategies: those of the digits comparison (the controllers at the papers'
learning rate and at the ENAS code's 3.5e-3, evolution, TPE). Reported per
strategy and budget: mean ± standard error over seeds of the best
validation accuracy found, and a Wilcoxon signed-rank test against random
search paired by seed index (two-sided). A difference is called one only when
its p-value, Holm-adjusted over the strategies compared at that budget, is
below 0.05; the verdict also says when the gap is smaller than one training's
seed noise (a retraining of the pick could reverse it). Beside them the exact
expectation of random search from the table: with replacement (what kubenas'
``random`` does, drawing every token uniformly) and without (distinct
architectures), by order statistics. The running-best plot goes beside
``bench/RESULTS.md`` (``bench/fashion_search.png``).

    python -m bench.bench_fashion_search [--quick] [--seeds 50] [--budget 100] [--strategy NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.bench_search_quality import (
    VARIANTS,
    Run,
    expected_random_best,
    plot_running_best,
    run_kubenas,
    run_optuna,
)
from bench.fashion_table import TABLE_PATH, TASK, FashionTable, Noise, noise_summary
from bench.headlines import headline
from bench.table import format_table

BENCH_DIR = Path(__file__).resolve().parent
STRATEGIES = ("random", *(k for k in VARIANTS if k != "random"), "optuna-tpe")
"""Every row of the digits comparison: the controllers also at the ENAS code's learning rate."""
QUICK_STRATEGIES = ("random", "reinforce", "ppo", "evolution", "optuna-tpe")
CHECKPOINTS = (5, 10, 25, 50, 100, 200, 500)
ALPHA = 0.05


def expected_best_distinct(accuracies: list[float], n: int) -> float:
    """Exact E[max] of ``n`` distinct architectures drawn uniformly without replacement: the i-th
    smallest of m values is the maximum with probability C(i-1, n-1) / C(m, n)."""
    values = sorted(accuracies)
    m = len(values)
    if n >= m:
        return values[-1]
    total = math.comb(m, n)
    return sum(v * math.comb(i, n - 1) for i, v in enumerate(values) if i >= n - 1) / total


def run_search(name: str, seed: int, budget: int, table: FashionTable) -> Run:
    if name == "optuna-tpe":
        return run_optuna(seed, budget, table)  # type: ignore[arg-type]  # duck-typed table
    return run_kubenas(name, seed, budget, table)  # type: ignore[arg-type]


def wilcoxon_p(xs: list[float], ys: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples; 1.0 when every pair is equal."""
    from scipy.stats import wilcoxon

    if all(x == y for x, y in zip(xs, ys, strict=True)):
        return 1.0
    return float(wilcoxon(xs, ys).pvalue)


def mean_se(values: list[float]) -> str:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {se:.4f}"


@dataclass(frozen=True)
class Verdict:
    diff: float
    p: float
    """Raw two-sided p-value of this strategy's paired test against random."""
    p_holm: float = 1.0
    """Holm-adjusted over the strategies compared at the same budget: the verdict's."""

    def text(self, seed_std: float) -> str:
        if self.p_holm >= ALPHA:
            return "no difference"
        word = "better" if self.diff > 0 else "worse"
        return word + (" (gap < seed noise)" if abs(self.diff) < seed_std else "")


def compare(runs: dict[str, list[Run]], n: int) -> dict[str, Verdict]:
    base = [r.running_best()[n - 1] for r in runs["random"]]
    out = {}
    for name, group in runs.items():
        if name == "random":
            continue
        mine = [r.running_best()[n - 1] for r in group]
        out[name] = Verdict(statistics.mean(mine) - statistics.mean(base), wilcoxon_p(mine, base))
    return {name: Verdict(v.diff, v.p, holm(out)[name]) for name, v in out.items()}


def holm(verdicts: dict[str, Verdict]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values: the k-th smallest of m is scaled by m - k + 1, kept
    monotone, capped at 1."""
    order = sorted(verdicts, key=lambda name: verdicts[name].p)
    adjusted, running = {}, 0.0
    for k, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * verdicts[name].p))
        adjusted[name] = running
    return adjusted


def table_summary(table: FashionTable, noise: Noise) -> str:
    from scipy.stats import spearmanr

    rows = table.all_entries()
    accs = [r.accuracy for r in rows]
    best = max(rows, key=lambda r: r.accuracy)
    first = [r.val[0] for r in rows]
    built = table.header.get("built_with", {})
    ds, tr = TASK["dataset"], TASK["training"]
    lines = [
        f"Task: {TASK['spaceType']} {json.dumps(TASK['spaceOptions'])} ({table.space.size():,} "
        f"architectures: kernel height and width in {{1,3,5,7}} per layer, skip bit), Fashion-MNIST at {ds['imageSize']}x{ds['imageSize']}, {ds['maxTrainExamples']:,} "
        f"train / {ds['validationSize']:,} validation images (held out of the official training set), "
        f"{tr['epochs']} epochs, batch {tr['batchSize']}, lr {tr['learningRate']} cosine, "
        f"trial seed {TASK['seed']}, CPU, 1 thread. "
        f"Table: {len(rows):,} of {table.space.size():,} architectures.",
        "",
        format_table(["figure", "value"], [
            ["validation accuracy: best / median / worst",
             f"{best.accuracy:.4f} (tokens {best.tokens}) / {statistics.median(accs):.4f} / {min(accs):.4f}"],
            ["spread across architectures (std)", f"{noise.across_std:.4f}"],
            ["one training's seed noise (mean std)",
             f"{noise.seed_std:.4f} ({noise.archs} architectures x {noise.runs_per_arch} seeds)"],
            ["spread / seed noise", f"{noise.ratio:.1f}x"],
            ["parameters: min / median / max",
             f"{min(r.params for r in rows):,} / {statistics.median(r.params for r in rows):,.0f} / "
             f"{max(r.params for r in rows):,}"],
            ["multiply-adds per image: min / median / max",
             f"{min(r.macs for r in rows):,} / {statistics.median(r.macs for r in rows):,.0f} / "
             f"{max(r.macs for r in rows):,}"],
            ["Spearman rho, accuracy vs parameters / vs multiply-adds",
             f"{spearmanr(accs, [r.params for r in rows])[0]:.2f} / "
             f"{spearmanr(accs, [r.macs for r in rows])[0]:.2f}"],
            ["Spearman rho, epoch-1 vs final validation accuracy", f"{spearmanr(first, accs)[0]:.2f}"],
            ["training CPU-s per architecture: median / total",
             f"{statistics.median(r.cpu_s for r in rows):.1f} / {sum(r.cpu_s for r in rows) / 60:.0f} min"],
            ["batch-1 CPU latency ms: median (shared machine, noisy)",
             f"{statistics.median(r.latency_ms or 0 for r in rows):.2f}"],
            ["build", f"{built.get('cpu_s', 0) / 60:.0f} CPU-minutes of training with the reruns, "
                      f"{built.get('wall_s', 0) / 60:.0f} min wall, {built.get('workers', '?')} workers on "
                      f"{built.get('cores', '?')} cores ({built.get('cpu', '?')}, torch {built.get('torch')})"],
        ]),
    ]
    return "\n".join(lines)


def report(runs: dict[str, list[Run]], table: FashionTable, noise: Noise, checkpoints: list[int]) -> str:
    accs = [r.accuracy for r in table.all_entries()]
    ranked = sorted(accs, reverse=True)
    rank = {a: ranked.index(a) + 1 for a in set(ranked)}
    budget = checkpoints[-1]
    verdicts = {n: compare(runs, n) for n in checkpoints}
    rows = []
    for name, group in runs.items():
        curves = [r.running_best() for r in group]
        picks = [r.pick(budget) for r in group]
        rows.append([name, *(mean_se([c[n - 1] for c in curves]) for n in checkpoints),
                     f"{statistics.median(rank[p.accuracy] for p in picks):.0f}",
                     f"{statistics.mean(len({tuple(e.tokens) for e in r.entries}) for r in group):.0f}",
                     f"{statistics.mean(r.strategy_seconds for r in group):.2f}"])
    if table.complete:
        rows.append(["random, exact expectation (with replacement)",
                     *(f"{expected_random_best(accs, n):.4f}" for n in checkpoints), "", "", ""])
        rows.append(["random, exact expectation (distinct archs)",
                     *(f"{expected_best_distinct(accs, n):.4f}" for n in checkpoints), "", "", ""])
    headers = ["strategy", *(f"best val acc @{n}" for n in checkpoints), f"median rank of pick @{budget}",
               "distinct archs", "strategy s/search"]
    tests = [[name, *(f"{v[name].diff:+.4f}, p={v[name].p:.2g} (Holm {v[name].p_holm:.2g}): "
                      f"{v[name].text(noise.seed_std)}"
                      for v in verdicts.values())] for name in runs if name != "random"]
    return "\n".join([
        format_table(headers, rows), "",
        f"Against random search (mean difference of best val acc, two-sided Wilcoxon signed-rank p, "
        f"paired by seed; a difference needs the Holm-adjusted p over the {len(runs) - 1} strategies "
        f"< {ALPHA}; one training's seed noise is "
        f"{noise.seed_std:.4f}):", "",
        format_table(["strategy", *(f"@{n}" for n in checkpoints)], tests),
    ])


def headline_text(runs: dict[str, list[Run]], table: FashionTable, noise: Noise, budget: int) -> str:
    """The README's line for this benchmark: who beats random at the full budget, who does not."""
    accs = [r.accuracy for r in table.all_entries()]
    verdicts = compare(runs, budget)
    final = {name: mean_se([r.running_best()[budget - 1] for r in group]) for name, group in runs.items()}
    better = [n for n, v in verdicts.items() if v.p_holm < ALPHA and v.diff > 0]
    worse = [n for n, v in verdicts.items() if v.p_holm < ALPHA and v.diff < 0]
    same = [n for n in verdicts if n not in better and n not in worse]

    def listed(names: list[str]) -> str:
        return ", ".join(f"{n} {final[n]}" for n in names) or "none"

    exact = f" (exact expectation {expected_random_best(accs, budget):.4f})" if table.complete else ""
    worst_p = max((verdicts[n].p_holm for n in better), default=None)
    return (f"**Search quality at equal budget** ({TASK['spaceType']} {json.dumps(TASK['spaceOptions'])}: "
            f"{len(accs):,} architectures trained for real on Fashion-MNIST and tabulated, spread across "
            f"architectures {noise.ratio:.1f}x one training's seed noise; {budget} trials, {len(runs['random'])} "
            f"seeds, best validation accuracy, mean ± s.e.): random {final['random']}{exact}; better than "
            f"random: {listed(better)}" + (f" (Wilcoxon, Holm-adjusted p ≤ {worst_p:.2g})" if worst_p is not None else "")
            + f"; no different from random: {listed(same)}" + (f"; worse: {listed(worse)}" if worse else "")
            + f". Best in the table {max(accs):.4f}; one training's seed noise {noise.seed_std:.4f}.")


def plot(runs: dict[str, list[Run]], accuracies: list[float], path: Path) -> None:
    """Mean running best ± one standard error per strategy, the exact random expectations and the
    table's optimum."""
    plot_running_best(runs, accuracies, path, bands=True, floor=(3, 0.0), headroom=0.002,
                      ylabel="best validation accuracy so far (mean ± s.e.)",
                      title=f"{TASK['spaceType']} ({len(accuracies) or '?'} archs) on Fashion-MNIST "
                            f"{TASK['dataset']['imageSize']}x{TASK['dataset']['imageSize']}, "
                            f"{len(next(iter(runs.values())))} seeds")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fashion_search", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 20 trials (seconds)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--strategy", action="append", default=None, metavar="NAME",
                        help=f"repeat for each, from {sorted([*VARIANTS, 'optuna-tpe'])} (default: all; "
                             "--quick: one row per strategy)")
    parser.add_argument("--table", type=Path, default=TABLE_PATH)
    parser.add_argument("--out", type=Path, default=None, help="folder for the plot and raw JSON")
    args = parser.parse_args(argv)
    names = args.strategy or list(QUICK_STRATEGIES if args.quick else STRATEGIES)
    unknown = [s for s in names if s not in VARIANTS and s != "optuna-tpe"]
    if unknown or "random" not in names:
        raise SystemExit(f"--strategy: unknown {unknown} or no 'random' (the baseline); choose from "
                         f"{sorted([*VARIANTS, 'optuna-tpe'])}")
    torch.set_num_threads(1)  # tiny controller steps: more threads only add contention
    seeds = args.seeds or (3 if args.quick else 50)
    budget = args.budget or (20 if args.quick else 100)
    checkpoints = [n for n in CHECKPOINTS if n < budget] + [budget]
    started = time.perf_counter()
    table = FashionTable.load(args.table)
    noise = noise_summary(table)
    runs = {name: [run_search(name, seed, budget, table) for seed in range(seeds)] for name in names}
    wall = time.perf_counter() - started
    print(table_summary(table, noise))
    print(f"\nBudget {budget} trials, seeds 0..{seeds - 1}; reward (max val acc)^3; settings as in "
          f"bench.bench_search_quality: {json.dumps({k: VARIANTS[k][1] for k in names if k in VARIANTS})}; "
          "optuna-tpe: TPESampler(seed=seed) defaults. Rank 1 = the table's best.\n")
    print(report(runs, table, noise, checkpoints))
    out = args.out or (BENCH_DIR / "out" if args.quick else BENCH_DIR)
    png = out / ("fashion_search-quick.png" if args.quick else "fashion_search.png")
    plot(runs, [r.accuracy for r in table.all_entries()] if table.complete else [], png)
    raw = BENCH_DIR / "out" / png.with_suffix(".json").name
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({name: [{"seed": r.seed, "running_best": r.running_best(),
                                       "tokens": [e.tokens for e in r.entries]} for r in group]
                               for name, group in runs.items()}))
    shown = png.relative_to(Path.cwd()) if png.is_relative_to(Path.cwd()) else png
    if png.parent == BENCH_DIR:  # beside RESULTS.md: show it there
        print(f"\n![running best validation accuracy per strategy]({png.name})")
    print(f"\nRunning-best curves: {shown}. Wall time {wall:.0f} s for {len(runs) * seeds} searches "
          f"of {budget} trials (table lookups).")
    print("\n" + headline(headline_text(runs, table, noise, budget)))


if __name__ == "__main__":
    main()
