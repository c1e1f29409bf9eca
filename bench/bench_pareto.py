"""Multi-objective search on the Fashion-MNIST table: accuracy against CPU latency and multiply-adds.

Every search proposes architectures of ``bench.fashion_table`` (512 real
trainings) for the same number of trials, without early stopping; each trial's
objectives are its validation accuracy (maximize), its CPU latency from the side
table of ``bench.latency_table`` (minimize) and its multiply-adds per image
(minimize). Searches: ``random``; ``reinforce`` learning MnasNet's soft reward
acc x (latency / target)^w with the paper's w = -0.07
(``controller_policy.scalarize``); ``evolution`` with Pareto selection
(``selection: pareto``: non-domination rank, then crowding distance, told each
trial's point through ``tell_objectives``) and, beside it, evolution on the
MnasNet reward alone; Optuna's ``NSGAIISampler`` (population 20, as
evolution's) and its multi-objective ``TPESampler`` (defaults), both seeded, on
(accuracy, latency).

Reported per search, mean ± standard error over seeds: the hypervolume of the
front found in (accuracy, latency) and in (accuracy, multiply-adds), each as a
fraction of the hypervolume of the table's true front, against the reference
point (accuracy 0.5, the table's largest latency or multiply-adds); and the best
accuracy found under the latency target (the table's median latency, also the
MnasNet target). Paired tests against random: two-sided Wilcoxon signed-rank,
Holm-adjusted over the searches (the code of ``bench.bench_fashion_search``).

    python -m bench.bench_pareto [--quick] [--seeds 20] [--workers 2] [--budget 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_fashion_search import ALPHA, Verdict, holm, mean_se, wilcoxon_p
from bench.fashion_table import TABLE_PATH, FashionTable, noise_summary
from bench.latency_table import LATENCY_PATH, LatencyTable
from bench.quality_table import key_of
from bench.replay import run_by_row
from bench.table import format_table
from controller_policy.pareto import hypervolume, orient, pareto_front
from controller_policy.scalarize import MNASNET_W, mnasnet_reward
from controller_policy.strategies import make_strategy

BENCH_DIR = Path(__file__).resolve().parent
DIRECTIONS = ("maximize", "minimize")
ACCURACY_REF = 0.5
SEEDS = 20
"""What the shared 2-core machine finishes in about 10 minutes."""
SEARCHES = ("random", "reinforce, MnasNet reward", "evolution, Pareto selection", "evolution, MnasNet reward",
            "optuna NSGA-II", "optuna TPE, multi-objective")
QUICK_SEARCHES = ("random", "reinforce, MnasNet reward", "evolution, Pareto selection", "optuna NSGA-II")


@dataclass
class Found:
    """One search: what it trained, as (tokens, accuracy, latency ms, multiply-adds)."""

    name: str
    seed: int
    trials: list[tuple[list[int], float, float, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Space:
    """The table with its latency column and the benchmark's fixed figures."""

    table: FashionTable
    latency: LatencyTable
    target_ms: float
    max_latency: float
    max_macs: int

    @classmethod
    def load(cls) -> Space:
        table, latency = FashionTable.load(TABLE_PATH), LatencyTable.load(LATENCY_PATH)
        values = [latency.get(r.tokens) for r in table.all_entries()]
        return cls(table, latency, statistics.median(values), max(values),
                   max(r.macs for r in table.all_entries()))

    def measure(self, tokens: Sequence[int]) -> tuple[list[int], float, float, int]:
        row = self.table.get(tokens)
        return list(tokens), row.accuracy, self.latency.get(tokens), row.macs

    def reward(self, accuracy: float, latency: float) -> float:
        return mnasnet_reward(accuracy, [(latency, self.target_ms)])


def run_kubenas(name: str, seed: int, budget: int, space: Space) -> Found:
    """A kubenas strategy through ask and tell (``tell_objectives`` for Pareto selection)."""
    kind, settings = {
        "random": ("random", {}),
        "reinforce, MnasNet reward": ("reinforce", {"batchSize": 5}),
        "evolution, Pareto selection": ("evolution", {"populationSize": 20, "sampleSize": 5, "selection": "pareto"}),
        "evolution, MnasNet reward": ("evolution", {"populationSize": 20, "sampleSize": 5}),
    }[name]
    strategy = make_strategy(kind, space.table.space, {**settings, "seed": seed})
    found = Found(name, seed)
    for _ in range(budget):
        proposal = strategy.ask()
        trial = space.measure(proposal.architecture.tokens)
        found.trials.append(trial)
        _, acc, lat, _ = trial
        strategy.tell_objectives(proposal.id, space.reward(acc, lat), list(orient((acc, lat), DIRECTIONS)))
    return found


def run_optuna(name: str, seed: int, budget: int, space: Space) -> Found:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.NSGAIISampler(seed=seed, population_size=20) if name == "optuna NSGA-II"
               else optuna.samplers.TPESampler(seed=seed))
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=sampler)
    found = Found(name, seed)
    for _ in range(budget):
        trial = study.ask()
        tokens = [trial.suggest_categorical(s.name, list(range(s.num_values))) for s in space.table.space.slots]
        measured = space.measure(tokens)
        found.trials.append(measured)
        study.tell(trial, [measured[1], measured[2]])
    return found


def run_search(name: str, seed: int, budget: int, space: Space) -> Found:
    runner: Callable[[str, int, int, Space], Found] = run_optuna if name.startswith("optuna") else run_kubenas
    return runner(name, seed, budget, space)


_SPACE: Space | None = None


def _run_job(job: tuple[str, int, int]) -> Found:
    """One search in a worker process (the tables are loaded once per process)."""
    import torch

    global _SPACE
    torch.set_num_threads(1)
    if _SPACE is None:
        _SPACE = Space.load()
    return run_search(*job, _SPACE)


def run_all(names: Sequence[str], seeds: int, budget: int, workers: int) -> dict[str, list[Found]]:
    return run_by_row(_run_job, names, seeds, budget, workers)


def hv(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Hypervolume of (accuracy, cost) points, cost minimized."""
    oriented = [orient(p, DIRECTIONS) for p in points]
    return hypervolume(oriented, orient(reference, DIRECTIONS))


def scores(found: Found, space: Space, optimum: dict[str, float]) -> dict[str, float]:
    lat = hv([(a, t) for _, a, t, _ in found.trials], (ACCURACY_REF, space.max_latency)) / optimum["lat"]
    macs = hv([(a, float(m)) for _, a, _, m in found.trials], (ACCURACY_REF, float(space.max_macs))) / optimum["macs"]
    under = max((a for _, a, t, _ in found.trials if t <= space.target_ms), default=0.0)
    return {"hv_latency": lat, "hv_macs": macs, "best_under_target": under}


def optimum_of(space: Space) -> dict[str, float]:
    rows = space.table.all_entries()
    return {"lat": hv([(r.accuracy, space.latency.get(r.tokens)) for r in rows], (ACCURACY_REF, space.max_latency)),
            "macs": hv([(r.accuracy, float(r.macs)) for r in rows], (ACCURACY_REF, float(space.max_macs)))}


def report(runs: dict[str, list[Found]], space: Space, seed_std: float) -> str:
    optimum = optimum_of(space)
    got = {name: [scores(f, space, optimum) for f in group] for name, group in runs.items()}
    keys = ("hv_latency", "hv_macs", "best_under_target")
    verdicts: dict[str, dict[str, Verdict]] = {}
    for key in keys:
        base = [s[key] for s in got["random"]]
        raw = {n: Verdict(statistics.mean(s[key] for s in g) - statistics.mean(base), wilcoxon_p([s[key] for s in g], base))
               for n, g in got.items() if n != "random"}
        adjusted = holm(raw)
        verdicts[key] = {n: Verdict(v.diff, v.p, adjusted[n]) for n, v in raw.items()}
    rows = []
    for name, group in got.items():
        rows.append([name, *(mean_se([s[k] for s in group]) for k in keys),
                     f"{statistics.mean(len({key_of(t[0]) for t in f.trials}) for f in runs[name]):.0f}"])
    tests = [[name, *(f"{verdicts[k][name].diff:+.4f}, p={verdicts[k][name].p:.2g} (Holm {verdicts[k][name].p_holm:.2g}): "
                      f"{verdicts[k][name].text(seed_std if k == 'best_under_target' else 0.0)}" for k in keys)]
             for name in got if name != "random"]
    rows_all = space.table.all_entries()
    best_under = max(r.accuracy for r in rows_all if space.latency.get(r.tokens) <= space.target_ms)
    lat_front = pareto_front([orient((r.accuracy, space.latency.get(r.tokens)), DIRECTIONS) for r in rows_all])
    macs_front = pareto_front([orient((r.accuracy, float(r.macs)), DIRECTIONS) for r in rows_all])
    return "\n".join([
        f"True fronts of the table: {len(lat_front)} architectures on the (accuracy, latency) front, "
        f"{len(macs_front)} on the (accuracy, multiply-adds) front; latency target {space.target_ms:.2f} ms "
        f"(the table's median), best accuracy under it in the table {best_under:.4f}. Hypervolumes are "
        f"fractions of the true front's (reference: accuracy {ACCURACY_REF}, latency {space.max_latency:.2f} ms, "
        f"{space.max_macs:,} multiply-adds).", "",
        format_table(["search", "hypervolume, accuracy x latency", "hypervolume, accuracy x multiply-adds",
                      f"best val acc under {space.target_ms:.2f} ms", "distinct archs"], rows), "",
        f"Against random (mean difference, two-sided Wilcoxon signed-rank p paired by seed, Holm-adjusted over "
        f"the {len(got) - 1} searches; a difference needs Holm p < {ALPHA}; for the accuracy column, gaps below "
        f"one training's seed noise {seed_std:.4f} are marked):", "",
        format_table(["search", "hypervolume (latency)", "hypervolume (multiply-adds)", "best under the target"],
                     tests),
    ])


def plot(runs: dict[str, list[Found]], space: Space, path: Path) -> None:
    """Every architecture, the table's true front, and each search's front for seed 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = space.table.all_entries()
    pts = [(space.latency.get(r.tokens), r.accuracy) for r in rows]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, color="lightgrey", label="every architecture")

    def draw(points: list[tuple[float, float]], **style: Any) -> None:
        front = sorted(points[i] for i in pareto_front([orient((a, t), DIRECTIONS) for t, a in points]))
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", **style)

    draw(pts, color="black", linewidth=2, label="true front (table)")
    for name, group in runs.items():
        seed0 = next(f for f in group if f.seed == 0)
        draw([(t, a) for _, a, t, _ in seed0.trials], linewidth=1.2, marker="o", markersize=3, label=f"{name} (seed 0)")
    ax.axvline(space.target_ms, color="grey", linestyle=":", label=f"latency target {space.target_ms:.1f} ms")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0.6)
    ax.set_xlabel(f"CPU latency, batch {space.latency.measure['batch']}, 1 thread (ms)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Fronts found in {len(seed0.trials)} trials, Fashion-MNIST table", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.bench_pareto", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 20 trials (seconds)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="folder for the plot")
    parser.add_argument("--strategy", action="append", default=None, metavar="NAME",
                        help=f"repeat for each, from {list(SEARCHES)} (default: all; random is always run)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2; 1 with --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = args.seeds or (3 if args.quick else SEEDS)
    workers = args.workers or (1 if args.quick else 2)
    budget = args.budget or (20 if args.quick else 100)
    names = QUICK_SEARCHES if args.quick else SEARCHES
    if args.strategy:
        unknown = set(args.strategy) - set(SEARCHES)
        if unknown:
            raise SystemExit(f"--strategy: unknown {sorted(unknown)}; choose from {list(SEARCHES)}")
        names = tuple(s for s in SEARCHES if s in {"random", *args.strategy})
    space = Space.load()
    started = time.perf_counter()
    runs = run_all(names, seeds, budget, workers)
    wall = time.perf_counter() - started
    print(f"Searches of {budget} trials on the Fashion-MNIST table ({len(space.table.rows)} architectures; "
          f"bench.bench_fashion_search describes it), seeds 0..{seeds - 1}, one trial at a time, no early "
          f"stopping. MnasNet reward: acc x (latency / {space.target_ms:.2f} ms)^{MNASNET_W} (val accuracy, "
          "not cubed). Strategy settings: reinforce batchSize 5, evolution populationSize 20 sampleSize 5, "
          "otherwise the space's defaults.")
    from scipy.stats import spearmanr

    rows = space.table.all_entries()
    rho = spearmanr([space.latency.get(r.tokens) for r in rows], [r.macs for r in rows])[0]
    print(space.latency.describe() + f" Spearman rho of latency against multiply-adds: {rho:.2f}. The latency "
          "column is fixed for every search, so its noise does not change the comparison between searches; "
          "but where one pass barely orders the architectures as the next, the latency objective is mostly "
          "measurement noise, and the multiply-adds columns are the ones to read.\n")
    print(report(runs, space, noise_summary(space.table).seed_std))
    out = args.out or (BENCH_DIR / "out" if args.quick else BENCH_DIR)
    png = out / ("pareto_fronts-quick.png" if args.quick else "pareto_fronts.png")
    plot(runs, space, png)
    if png.parent == BENCH_DIR:
        print(f"\n![fronts found per search against the table's true front]({png.name})")
    shown = png.relative_to(Path.cwd()) if png.is_relative_to(Path.cwd()) else png
    print(f"\nPlot: {shown}. Wall time {wall:.0f} s for {len(runs) * seeds} searches (table lookups, {workers} worker processes).")


if __name__ == "__main__":
    main()
