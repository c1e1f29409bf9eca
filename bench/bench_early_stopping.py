"""Early stopping and limits checked before training, replayed on the Fashion-MNIST learning curves.

Every search of ``bench.replay`` runs on the 512 real trainings of
``bench.fashion_table`` (4 epochs each) for the same budget of training epochs;
a trial stopped after epoch e costs e epochs, so early stopping buys more
trials. Rows: each strategy (random, REINFORCE, PPO, evolution as in
``bench.bench_fashion_search``, and Optuna's TPE) without early stopping, with
kubenas' ``median`` rule and with its ``successive-halving`` (ASHA) rule, each
with ``stoppedReward`` ``partial`` and ``exclude``, plus Hyperband brackets
(partial); and TPE with Optuna's own ``MedianPruner``,
``SuccessiveHalvingPruner`` and ``HyperbandPruner`` (their defaults). The rules
are the ones the operator runs (``controller_policy.early_stopping``, built
from ``spec.earlyStopping`` settings at their defaults).

Reported per row, mean ± standard error over seeds: the best validation
accuracy seen after E epochs spent, trials run and stopped, and the ratio the
issue asks for: the budget divided by the epochs the row's mean curve needed to
reach the final mean best of the same strategy without early stopping (and per
seed, against that seed's own no-early-stopping search). Whether the final best
differs from no early stopping is a two-sided Wilcoxon signed-rank test paired
by seed, Holm-adjusted over the rows compared (the code of
``bench.bench_fashion_search``); gaps below one training's seed noise are said
to be so.

The second table: a limit on multiply-adds checked before training (the
architecture is told to the strategy with reward 0 and costs no epoch) against
training every proposal and filtering by the limit afterwards, at the same
epoch budget: trainings spent on architectures over the limit, and the best
accuracy found under it.

    python -m bench.bench_early_stopping [--quick] [--seeds 20] [--budget 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_fashion_search import Verdict, holm, mean_se, wilcoxon_p
from bench.fashion_table import TABLE_PATH, TASK, FashionTable, noise_summary
from bench.headlines import headline
from bench.replay import (
    Gate,
    KubenasSearcher,
    Limit,
    NoGate,
    OptunaPrunerGate,
    OptunaSearcher,
    RuleGate,
    Searcher,
    Semantics,
    Trace,
    mean_curve,
    replay,
    run_by_row,
)
from bench.table import format_table
from controller_policy.early_stopping import EarlyStopping

BENCH_DIR = Path(__file__).resolve().parent
STRATEGIES = ("random", "reinforce", "ppo", "evolution", "optuna-tpe")
EPOCHS = TASK["training"]["epochs"]
SEEDS = 20
"""What the shared 2-core machine finishes in about 10 minutes (REINFORCE and PPO cost most)."""
BUDGET = 200
"""Training epochs per search: 50 full trainings (the no-early-stopping search)."""
MAC_LIMIT = 100_000
"""The limit of the second table: multiply-adds of one forward pass of one image."""
RULES: dict[str, tuple[dict[str, Any] | None, Semantics]] = {
    "none": (None, "full"),
    "median": ({"type": "median", "stoppedReward": "partial"}, "partial"),
    "successive-halving, partial": ({"type": "successive-halving", "stoppedReward": "partial"}, "partial"),
    "successive-halving, exclude": ({"type": "successive-halving", "stoppedReward": "exclude"}, "exclude"),
    "hyperband (2 brackets)": ({"type": "successive-halving", "brackets": 2, "stoppedReward": "partial"},
                               "partial"),
}
"""Row suffix -> (spec.earlyStopping settings, or None; what a stopped trial tells the strategy)."""
CHEAP_ONLY = ("hyperband (2 brackets)",)
"""Rules run only for the strategies whose own cost is negligible (random, evolution): the
controllers' and TPE's ask/tell time is what bounds the seeds on the shared machine."""
CHEAP = ("random", "evolution")
PRUNERS = ("MedianPruner", "SuccessiveHalvingPruner", "HyperbandPruner")


@dataclass(frozen=True)
class Config:
    strategy: str
    rule: str
    """A key of ``RULES`` or, for Optuna's own pruners, ``optuna <Pruner>``."""
    limit: str = "none"
    """``none``, ``before`` (checked before training) or ``after`` (trained, filtered afterwards)."""

    @property
    def name(self) -> str:
        return f"{self.strategy} + {self.rule}"


def early_stopping_configs(strategies: Sequence[str]) -> list[Config]:
    out = [Config(s, r) for s in strategies for r in RULES if r not in CHEAP_ONLY or s in CHEAP]
    if "optuna-tpe" in strategies:
        out += [Config("optuna-tpe", f"optuna {p}") for p in PRUNERS]
    return out


def limit_configs(strategies: Sequence[str]) -> list[Config]:
    return [Config(s, "none", where) for s in strategies for where in ("before", "after")]


_TABLE: FashionTable | None = None


def _table() -> FashionTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = FashionTable.load(TABLE_PATH)
    return _TABLE


def build(config: Config, seed: int, table: FashionTable) -> tuple[Searcher, Gate, Semantics]:
    """The searcher, gate and stopped-trial semantics of one row."""
    if config.rule.startswith("optuna "):
        import optuna

        pruner_name = config.rule.removeprefix("optuna ")
        pruner = getattr(optuna.pruners, pruner_name)()
        return OptunaSearcher(table, seed, pruner=pruner), OptunaPrunerGate(pruner_name), "pruned"
    settings, semantics = RULES[config.rule]
    searcher: Searcher = (OptunaSearcher(table, seed) if config.strategy == "optuna-tpe"
                          else KubenasSearcher(config.strategy, table, seed))
    gate: Gate = NoGate() if settings is None else RuleGate(EarlyStopping.model_validate(settings), EPOCHS)
    return searcher, gate, semantics


def run_one(job: tuple[Config, int, int]) -> Trace:
    """One replayed search (in a worker process: the table is loaded once per process)."""
    import torch

    torch.set_num_threads(1)
    config, seed, budget = job
    table = _table()
    searcher, gate, semantics = build(config, seed, table)
    limit = Limit("macs", MAC_LIMIT) if config.limit == "before" else None
    return replay(searcher, gate, table, budget, semantics, config.name, seed, limit)


def run_all(configs: Sequence[Config], seeds: int, budget: int, workers: int) -> dict[Config, list[Trace]]:
    return run_by_row(run_one, configs, seeds, budget, workers)


def first_reach(curve: Sequence[float], target: float) -> int | None:
    for i, value in enumerate(curve):
        if value >= target - 1e-12:
            return i + 1
    return None


def ratio_text(budget: int, reached: int | None) -> str:
    if reached is None:
        return "not reached (< 1x)"
    return f"{budget / reached:.2f}x ({reached} epochs)"


def early_stopping_report(runs: dict[Config, list[Trace]], budget: int, checkpoints: list[int],
                          seed_std: float) -> tuple[str, dict[str, float]]:
    """The first table, the tests against no early stopping, and the headline ratios by row."""
    base = {c.strategy: t for c, t in runs.items() if c.rule == "none"}
    raw = {c.name: Verdict(statistics.mean(x.final for x in t) - statistics.mean(x.final for x in base[c.strategy]),
                           wilcoxon_p([x.final for x in t], [x.final for x in base[c.strategy]]))
           for c, t in runs.items() if c.rule != "none"}
    adjusted = holm(raw)
    rows, ratios = [], {}
    for config, traces in runs.items():
        curve = mean_curve(traces)
        target = statistics.mean(x.final for x in base[config.strategy])
        reached = first_reach(curve, target)
        ratios[config.name] = budget / reached if reached else 0.0
        per_seed = [x.epochs_to_reach(b.final) for x, b in zip(traces, base[config.strategy], strict=True)]
        hits = [budget / e for e in per_seed if e is not None]
        median_ratio = statistics.median([*hits, *([0.0] * (len(per_seed) - len(hits)))])
        if config.rule == "none":
            verdict = "(baseline)"
        else:
            v = raw[config.name]
            verdict = (f"{v.diff:+.4f}, p={v.p:.2g} (Holm {adjusted[config.name]:.2g}): "
                       f"{Verdict(v.diff, v.p, adjusted[config.name]).text(seed_std)}")
        rows.append([config.name,
                     *(mean_se([x.best[n - 1] for x in traces]) for n in checkpoints),
                     f"{statistics.mean(len(x.trials) for x in traces):.0f}",
                     f"{statistics.mean(x.stopped_trials for x in traces):.0f}",
                     "-" if config.rule == "none" else ratio_text(budget, reached),
                     "-" if config.rule == "none" else
                     f"{len(hits)}/{len(per_seed)}, median {'< 1' if median_ratio == 0 else f'{median_ratio:.2f}'}x",
                     verdict])
    headers = ["strategy + rule", *(f"best val acc @{n} epochs" for n in checkpoints), "trials", "stopped",
               "epochs ratio to no-ES final best (mean curve)", "per seed: reached, ratio",
               f"final @{budget} vs no early stopping"]
    return format_table(headers, rows), ratios


def limit_report(runs: dict[Config, list[Trace]], table: FashionTable) -> str:
    macs = {tuple(r.tokens): r.macs for r in table.all_entries()}
    feasible = [r for r in table.all_entries() if r.macs <= MAC_LIMIT]
    best_feasible = max(r.accuracy for r in feasible)

    def best_under(trace: Trace) -> float:
        return max((t.observed for t in trace.trials if macs[tuple(t.tokens)] <= MAC_LIMIT), default=0.0)

    strategies = list(dict.fromkeys(c.strategy for c in runs))
    by = {(c.strategy, c.limit): t for c, t in runs.items()}
    raw = {s: Verdict(statistics.mean(map(best_under, by[s, "before"])) - statistics.mean(map(best_under, by[s, "after"])),
                      wilcoxon_p([best_under(x) for x in by[s, "before"]], [best_under(x) for x in by[s, "after"]]))
           for s in strategies}
    adjusted = holm(raw)
    rows = []
    for s in strategies:
        before, after = by[s, "before"], by[s, "after"]
        over = [sum(1 for t in x.trials if macs[tuple(t.tokens)] > MAC_LIMIT) for x in after]
        v = raw[s]
        rows.append([s,
                     f"{statistics.mean(len(x.trials) for x in before):.0f} / {statistics.mean(len(x.trials) for x in after):.0f}",
                     f"{statistics.mean(x.infeasible for x in before):.0f}",
                     f"{statistics.mean(over):.0f} ({statistics.mean(over) / statistics.mean(len(x.trials) for x in after):.0%})",
                     mean_se([best_under(x) for x in before]), mean_se([best_under(x) for x in after]),
                     f"{v.diff:+.4f}, p={v.p:.2g} (Holm {adjusted[s]:.2g}): "
                     f"{Verdict(v.diff, v.p, adjusted[s]).text(noise_summary(table).seed_std)}"])
    return "\n".join([
        f"Limit: at most {MAC_LIMIT:,} multiply-adds per image ({len(feasible)} of {len(table.rows)} "
        f"architectures are under it; the best of them reaches {best_feasible:.4f}, the best overall "
        f"{max(r.accuracy for r in table.all_entries()):.4f}). Checked before training: an architecture "
        "over the limit is told to the strategy with reward 0 and costs no epoch; filtered after: every "
        "proposal is trained and the best under the limit is kept at the end. No early stopping.", "",
        format_table(["strategy", "trainings: checked before / filtered after",
                      "proposals refused before training", "trainings over the limit (filtered after)",
                      "best under the limit, checked before", "best under the limit, filtered after",
                      "before - after"], rows)])


def plot(runs: dict[Config, list[Trace]], path: Path, floor: float) -> None:
    """Mean best accuracy against epochs spent: one panel per strategy, one line per rule."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    strategies = list(dict.fromkeys(c.strategy for c in runs))
    panels = strategies + (["optuna-tpe, Optuna pruners"] if any(c.rule.startswith("optuna ") for c in runs) else [])
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for config, traces in runs.items():
            pruner_panel = panel.endswith("Optuna pruners")
            if pruner_panel and not (config.strategy == "optuna-tpe" and
                                     (config.rule.startswith("optuna ") or config.rule == "none")):
                continue
            if not pruner_panel and (config.strategy != panel or config.rule.startswith("optuna ")):
                continue
            curve = mean_curve(traces)
            xs = range(1, len(curve) + 1)
            style = "-" if config.rule == "none" else ("--" if "exclude" in config.rule else "-")
            ax.plot(xs, curve, linestyle=style, linewidth=1.8 if config.rule == "none" else 1.2,
                    color="black" if config.rule == "none" else None, label=config.rule)
        ax.set_title(panel, fontsize=9)
        ax.set_xscale("log")
        ax.set_ylim(bottom=floor)
        ax.grid(alpha=0.3)
        ax.set_xlabel("training epochs spent", fontsize=8)
        ax.set_ylabel("best val acc (mean)", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"Early stopping on the Fashion-MNIST table: {len(next(iter(runs.values())))} seeds", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_early_stopping", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 40 epochs, random and TPE only (seconds)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None, help="training epochs per search")
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the plot")
    parser.add_argument("--strategy", action="append", default=None, metavar="NAME",
                        help=f"repeat for each, from {list(STRATEGIES)} (default: all; random is always run)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else SEEDS)
    budget = args.budget or (40 if args.quick else BUDGET)
    workers = args.workers or (1 if args.quick else 2)
    strategies = ("random", "optuna-tpe") if args.quick else STRATEGIES
    if args.strategy:
        unknown = set(args.strategy) - set(STRATEGIES)
        if unknown:
            raise SystemExit(f"--strategy: unknown {sorted(unknown)}; choose from {list(STRATEGIES)}")
        strategies = tuple(s for s in STRATEGIES if s in {"random", *args.strategy})
    checkpoints = sorted({n for n in (budget // 8, budget // 4, budget // 2, budget) if n > 0})
    table = FashionTable.load(TABLE_PATH)
    noise = noise_summary(table)
    started = time.perf_counter()
    runs = run_all(early_stopping_configs(strategies), seeds, budget, workers)
    es_wall = time.perf_counter() - started
    limited = run_all(limit_configs(strategies), seeds, budget, workers)
    wall = time.perf_counter() - started
    text, ratios = early_stopping_report(runs, budget, checkpoints, noise.seed_std)
    settings = EarlyStopping(type="successive-halving")
    print(f"Replay of the Fashion-MNIST table ({len(table.rows)} architectures, {EPOCHS} epochs each; "
          f"bench.bench_fashion_search describes it): budget {budget} training epochs per search "
          f"({budget // EPOCHS} full trainings), seeds 0..{seeds - 1}, one trial at a time. kubenas rules at "
          f"their spec.earlyStopping defaults: minEpochs {settings.minEpochs}, median minTrials "
          f"{settings.minTrials}, successive-halving reductionFactor (eta) {settings.reductionFactor} "
          f"(rungs at epochs 1 and 3 of 4), Hyperband with 2 brackets (bracket 1: rung at epoch 3; random and evolution only). "
          "Optuna pruners at their defaults (report = that epoch's val accuracy, step = epoch). Strategy "
          "settings as in bench.bench_fashion_search; reward (max val acc)^3, partial = the same on the "
          f"epochs reached. One training's seed noise: {noise.seed_std:.4f}.\n")
    print(text)
    best = max(ratios.items(), key=lambda kv: kv[1])
    per_trial = {rule: budget * sum(len(t) for c, t in runs.items() if c.rule == rule)
                 / sum(len(x.trials) for c, t in runs.items() if c.rule == rule for x in t)
                 for rule in dict.fromkeys(c.rule for c in runs)}
    print(f"\nThe largest epochs ratio measured is {best[1]:.2f}x ({best[0]}); the issue's target is >= 3x "
          "at equal final quality. Mean epochs spent per trial (over strategies and seeds): "
          + "; ".join(f"{rule} {v:.2f}" for rule, v in per_trial.items())
          + f". No rule stops a trial before its first epoch, so with {EPOCHS}-epoch curves a rule that "
          f"spends k epochs per trial tries at most {EPOCHS}/k times as many architectures as no early "
          "stopping in the same epochs; the ratio can exceed that only when the extra architectures are "
          "better chosen, not just more.")
    print("\n" + limit_report(limited, table))
    print("\n" + headline(
        f"**Early stopping** (the Fashion-MNIST table's {EPOCHS}-epoch curves replayed, {seeds} seeds, "
        f"{budget} training epochs per search): the best rule reaches the final best of the same search "
        f"without early stopping in {best[1]:.2f}x fewer training epochs ({best[0]}); the target was 3x. "
        "Mean epochs per trial: " + "; ".join(f"{rule} {v:.2f}" for rule, v in per_trial.items()) + "."))
    out = args.out or (BENCH_DIR / "out" if args.quick else BENCH_DIR)
    png = out / ("early_stopping-quick.png" if args.quick else "early_stopping.png")
    accs = sorted(r.accuracy for r in table.all_entries())
    plot(runs, png, floor=accs[len(accs) // 2])
    if png.parent == BENCH_DIR:
        print(f"\n![best validation accuracy against training epochs spent, per strategy and rule]({png.name})")
    shown = png.relative_to(Path.cwd()) if png.is_relative_to(Path.cwd()) else png
    print(f"\nPlot: {shown}. Wall time {es_wall:.0f} s for {len(runs) * seeds} early-stopping searches and "
          f"{wall - es_wall:.0f} s for {len(limited) * seeds} limit searches ({workers} worker processes, "
          "table lookups).")


if __name__ == "__main__":
    main()
