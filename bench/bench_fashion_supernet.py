"""Weight sharing checked on the Fashion-MNIST table: does the zoph-le-cnn supernet rank its 512 children?

``bench.fashion_table`` holds the standalone validation accuracy of every child
of zoph-le-cnn {"layers": 2, "filterChoices": [16]} on Fashion-MNIST at 12x12,
and its spread across architectures is 6.7x one training's seed noise, so a
ranking can be checked where architectures really differ (the digits table of
``bench.bench_supernet_ranking`` is too easy for that). The trainer's ENAS
search (``nas_trainer.enas``, mode enas, with the supernet of
``enas.supernet_zoph_cnn``) trains on the table's exact split, resolution and
recipe; then all 512 children are scored on the whole validation split with the
shared weights and Kendall's tau and Spearman's rho are taken against the
table, over all children and over the table's top 10%, for several supernet
seeds and for the remedies the one-shot literature names: uniform path
sampling, a longer (uniform) warm-up with twice the epochs, and identity
instead of He initialisation of the layer-to-layer blocks. DARTS (first
order) over a relaxation of the same supernet is ranked the same way, by its
shared-weight scores and by its alphas.

Equal compute: a search's CPU-seconds buy ``n`` standalone trainings at the
table's median cost; random search's exact expected best of ``n`` distinct
architectures is read from the table and set beside the table accuracy of the
architecture ENAS derives. The ceiling is the table against its own seed
reruns (32 architectures x 2 other seeds) and, for the top 10%, the table
against itself plus its measured seed noise (simulated).

    python -m bench.bench_fashion_supernet [--quick] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.bench_fashion_search import expected_best_distinct
from bench.bench_supernet_ranking import TOP, Ranking, correlations
from bench.fashion_table import TASK, FashionTable, data_dir, noise_summary
from bench.table import format_table

OUT_DIR = Path(__file__).resolve().parent / "out"
EPOCHS = TASK["training"]["epochs"]
CONTROLLER = (20, 5)
"""Controller steps per epoch x children per step (the ENAS default of this space is 50 x 8)."""
DERIVE_SAMPLES = 100


@dataclass(frozen=True)
class Setting:
    """How one supernet is trained: sampler of the shared-weight steps, epochs, uniform warm-up
    epochs before the controller takes over, and the initialisation of the blocks."""

    sampler: str
    epochs: int
    warmup: int = 0
    init: str = "he"


SETTINGS: dict[str, Setting] = {
    "controller": Setting("controller", EPOCHS),
    "uniform": Setting("uniform", EPOCHS),
    f"uniform warm-up {EPOCHS}, then controller {EPOCHS} (2x epochs)": Setting("controller", 2 * EPOCHS,
                                                                             warmup=EPOCHS),
    "controller, identity init": Setting("controller", EPOCHS, init="identity"),
}
QUICK_SETTINGS = ("controller", "uniform", "controller, identity init")
DARTS_SETTINGS: dict[str, float] = {"DARTS first order, alpha lr 3e-4 (paper)": 3e-4}
"""Row name -> Adam learning rate of alpha (betas (0.5, 0.999), weight decay 1e-3: the paper's)."""


def enas_search(seed: int, epochs: int, controller: tuple[int, int]) -> Any:
    """The trainer's EnasSearch on the table's task: same split, resolution, recipe (mode enas)."""
    from controller_policy.contract import TrialDocument
    from nas_trainer.checkpoint import StopRequest
    from nas_trainer.enas.search import EnasSearch
    from nas_trainer.epochs import TrialContext
    from nas_trainer.reporter import Reporter
    from nas_trainer.runtime import setup_runtime

    doc = TrialDocument.model_validate({
        "search": "bench", "trial": f"bench-fashion-supernet-{seed}", "seed": seed, "mode": "enas",
        "spaceType": TASK["spaceType"], "spaceOptions": TASK["spaceOptions"],
        "dataset": {**TASK["dataset"], "path": str(data_dir())},
        "training": {**TASK["training"], "epochs": epochs},
        "enas": {"controllerStepsPerEpoch": controller[0], "controllerBatch": controller[1],
                 "deriveSamples": DERIVE_SAMPLES},
    })
    ctx = TrialContext(doc, setup_runtime(doc.training), Reporter(None, None, None, echo_stdout=False),
                       StopRequest())
    return EnasSearch(ctx)


def train_supernet(name: str, setting: Setting, seed: int, epochs_scale: float,
                   controller: tuple[int, int]) -> tuple[Any, list[int], float]:
    """Run one ENAS search under ``setting`` -> (search, derived tokens, search CPU-seconds)."""
    epochs = max(1, round(setting.epochs * epochs_scale))
    warmup = round(setting.warmup * epochs_scale)
    search = enas_search(seed, epochs, controller)
    cpu = time.process_time()  # after reading the data set: the table's CPU-s exclude it too
    if setting.init != "he":
        search.supernet.reset_parameters(setting.init)
    rng = random.Random(seed)
    slots = [s.num_values for s in search.space.slots]
    uniform = lambda n: [[rng.randrange(v) for v in slots] for _ in range(n)]  # noqa: E731
    for epoch in range(epochs):
        if setting.sampler == "uniform" or epoch < warmup:  # the controller still learns meanwhile
            search.sample = uniform
        elif "sample" in vars(search):
            del search.sample
        search.loop.end_epoch(search.run_epoch(epoch))
    if "sample" in vars(search):
        del search.sample  # derive from the controller, as the search does
    arch, _ = search.derive()
    return search, list(arch.tokens), time.process_time() - cpu


def rank_once(table: FashionTable, tokens: list[list[int]], name: str, seed: int, epochs_scale: float,
              controller: tuple[int, int]) -> Ranking:
    search, pick, search_cpu = train_supernet(name, SETTINGS[name], seed, epochs_scale, controller)
    scores = [search.task.evaluate(t)["val_accuracy"] for t in tokens]
    tau, rho, tau_top, rho_top = correlations(scores, [table.get(t).accuracy for t in tokens])
    return Ranking(name, seed, tau, rho, tau_top, rho_top, pick, search_cpu, scores)


@dataclass
class DartsRun:
    setting: str
    seed: int
    scores: list[float]
    """Shared-weight score of every child (the supernet's forward on the relaxation's weights)."""
    alpha: list[float]
    """log-probability of every child under the final alphas."""
    pick: list[int]
    search_cpu_s: float


def darts_once(tokens: list[list[int]], name: str, seed: int, epochs_scale: float) -> DartsRun:
    """First-order DARTS (``darts.bilevel``) over the relaxation of the same supernet, on the table's split
    and weight recipe: per training minibatch one Adam step on alpha (a validation minibatch), then one SGD
    step on the weights."""
    from controller_policy.contract import DartsSpec
    from nas_trainer.darts.bilevel import Bilevel
    from nas_trainer.darts.collective import Collective
    from nas_trainer.darts.zoph_cnn import RelaxedZophCnn
    from nas_trainer.train_image import epoch_permutation

    setting = DARTS_SETTINGS[name]
    epochs = max(1, round(EPOCHS * epochs_scale))
    search = enas_search(seed, epochs, (1, 1))  # the data, supernet, optimizer and schedule; no controller
    cpu = time.process_time()
    model = RelaxedZophCnn(search.supernet)
    doc_training = search.ctx.doc.training
    bilevel = Bilevel(model, search.optimizer, DartsSpec(order="first", archLearningRate=setting),  # type: ignore[arg-type]
                      doc_training, Collective())
    task, data, bs = search.task, search.task.data, doc_training.batchSize
    model.train()
    for epoch in range(epochs):
        order = epoch_permutation(len(data.train), seed, epoch)
        for step in range(task.steps):
            idx = order[step * bs : (step + 1) * bs]
            train = (data.normalize(data.train.images[idx]), data.train.labels[idx])
            bilevel.arch_step(train, task.val_batch_at(epoch, step))
            bilevel.weight_step(train)
            search.scheduler.step()
    pick = model.derive()
    search_cpu = time.process_time() - cpu
    scores = [task.evaluate(t)["val_accuracy"] for t in tokens]
    return DartsRun(name, seed, scores, [model.log_probability(t) for t in tokens], pick, search_cpu)


def rerun_ceiling(table: FashionTable) -> tuple[float, float, int]:
    """Mean (tau, rho) of the seed-0 accuracies against each other seed's, over the rerun sample."""
    from scipy.stats import kendalltau, spearmanr

    taus, rhos, n = [], [], 0
    seeds = sorted({s for by in table.noise.values() for s in by})
    for seed in seeds:
        keys = [k for k, by in table.noise.items() if seed in by and k in table.rows]
        first = [table.rows[k].accuracy for k in keys]
        other = [table.noise[k][seed].accuracy for k in keys]
        taus.append(float(kendalltau(first, other)[0]))
        rhos.append(float(spearmanr(first, other)[0]))
        n = len(keys)
    return statistics.mean(taus), statistics.mean(rhos), n


def noise_ceiling(accs: list[float], seed_std: float, draws: int = 20) -> tuple[float, float]:
    """Mean (tau, tau top 10%) of the table against itself plus Gaussian seed noise: what a perfect
    supernet, as noisy as one standalone training, would reach."""
    rng = random.Random(0)
    out = [correlations([a + rng.gauss(0, seed_std) for a in accs], accs) for _ in range(draws)]
    return statistics.mean(o[0] for o in out), statistics.mean(o[2] for o in out)


def chance_band(n: int) -> float:
    """Two standard errors of Kendall's tau between unrelated rankings of ``n`` items."""
    return 2 * math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))


def verdict(tau: float, band: float) -> str:
    if tau > band:
        return "better than chance"
    return "worse than chance (reversed)" if tau < -band else "no better than chance"


def report(runs: list[Ranking], darts: list[DartsRun], table: FashionTable, tokens: list[list[int]],
           controller: tuple[int, int], epochs_scale: float, wall: float) -> str:
    all_accs = [r.accuracy for r in table.all_entries()]
    ranked = sorted(all_accs, reverse=True)
    median_cpu = statistics.median(r.cpu_s for r in table.all_entries())
    truth = [table.get(t).accuracy for t in tokens]
    top_n = max(2, int(len(tokens) * TOP))
    rows = []
    for r in runs:
        pick = table.get(r.pick).accuracy
        best_scored = truth[max(range(len(tokens)), key=lambda i: r.scores[i])]
        n = max(1, round(r.search_cpu_s / median_cpu))
        rows.append([r.sampler, r.seed, f"{r.tau:.3f}", f"{r.rho:.3f}", f"{r.tau_top:.3f}", f"{r.rho_top:.3f}",
                     f"{pick:.4f} (rank {ranked.index(pick) + 1})", f"{best_scored:.4f}",
                     f"{r.search_cpu_s:.1f}", n, f"{expected_best_distinct(all_accs, n):.4f}"])
    means = []
    for name in dict.fromkeys(r.sampler for r in runs):
        mine = [r for r in runs if r.sampler == name]
        picks = [table.get(r.pick).accuracy for r in mine]
        ns = [max(1, round(r.search_cpu_s / median_cpu)) for r in mine]
        rand = statistics.mean(expected_best_distinct(all_accs, n) for n in ns)
        row = [f"{name}, mean", "", *(f"{statistics.mean(getattr(r, f) for r in mine):.3f}"
                                     for f in ("tau", "rho", "tau_top", "rho_top")),
               f"{statistics.mean(picks):.4f}", "", f"{statistics.mean(r.search_cpu_s for r in mine):.1f}",
               "", f"{rand:.4f}"]
        rows.append(row)
        means.append((name, statistics.mean(r.tau for r in mine), statistics.mean(r.tau_top for r in mine),
                      statistics.mean(picks) - rand))
    noise = noise_summary(table)
    c_tau, c_rho, c_n = rerun_ceiling(table)
    n_tau, n_tau_top = noise_ceiling(truth, noise.seed_std)
    band_all, band_top = chance_band(len(tokens)), chance_band(top_n)
    lines = [
        f"Supernet: the trainer's ENAS search (mode enas, `nas_trainer.enas.supernet_zoph_cnn`) on the table's "
        f"task: {TASK['spaceType']} {json.dumps(TASK['spaceOptions'])}, Fashion-MNIST at "
        f"{TASK['dataset']['imageSize']}x{TASK['dataset']['imageSize']}, {TASK['dataset']['maxTrainExamples']:,} "
        f"train / {TASK['dataset']['validationSize']:,} val, batch {TASK['training']['batchSize']}, lr "
        f"{TASK['training']['learningRate']} cosine, {EPOCHS * epochs_scale:g} epochs unless the setting says "
        f"otherwise, {controller[0]} controller steps x {controller[1]} children per epoch, {DERIVE_SAMPLES} "
        "derive samples, CPU, 1 thread. Scored: "
        f"{len(tokens)} children on the whole validation split with the shared weights (BN on batch statistics); "
        f"truth: the table's standalone accuracy; top 10% = the table's best {top_n}. "
        "'best by score' = the table accuracy of the child the supernet scores highest (scoring all costs "
        f"{len(tokens)} evaluations, not counted in the search CPU-s). Equal compute: n = search CPU-s / "
        f"{median_cpu:.2f} CPU-s (the table's median training); random = exact E[best of n distinct].",
        "",
        format_table(["setting", "seed", "Kendall tau", "Spearman rho", "tau top 10%", "rho top 10%",
                      "ENAS pick: table val acc", "best by score", "search CPU-s", "= trainings n",
                      "random E[best of n]"], rows),
        "",
        f"Chance (one run): |tau| below {band_all:.3f} over all {len(tokens)} (2 standard errors of tau between unrelated "
        f"rankings), below {band_top:.3f} over the top {top_n}. Ceiling: the table against its own seed reruns "
        f"({c_n} architectures, seeds 0 vs 1 and 0 vs 2): tau {c_tau:.3f}, rho {c_rho:.3f}; the table against "
        f"itself plus its seed noise ({noise.seed_std:.4f} std, simulated): tau {n_tau:.3f}, top 10% "
        f"{n_tau_top:.3f}. Published: ENAS on PTB tau near 0 in all 10 runs (Sciuto et al., 2019/2020); one-shot "
        "supernets tau about 0.5 on NAS-Bench-201.",
        "",
        "Verdicts (mean over seeds):",
    ]
    for name, tau, tau_top, gain in means:
        lines.append(f"- {name}: all children {verdict(tau, band_all)} (tau {tau:.3f}); top 10% "
                     f"{verdict(tau_top, band_top)} (tau {tau_top:.3f}); pick {gain:+.4f} against random at "
                     "equal compute.")
    if darts:
        lines += ["", darts_report(darts, table, tokens, band_all, band_top, EPOCHS * epochs_scale)]
    lines += ["", f"Wall time {wall:.0f} s."]
    return "\n".join(lines)


def darts_report(runs: list[DartsRun], table: FashionTable, tokens: list[list[int]], band_all: float,
                 band_top: float, epochs: float) -> str:
    """The DARTS rows: the ranking by shared-weight score and by alpha, and the derived pick at equal compute."""
    all_accs = [r.accuracy for r in table.all_entries()]
    ranked = sorted(all_accs, reverse=True)
    median_cpu = statistics.median(r.cpu_s for r in table.all_entries())
    truth = [table.get(t).accuracy for t in tokens]
    rows, verdicts = [], []
    for name in dict.fromkeys(r.setting for r in runs):
        mine = [r for r in runs if r.setting == name]
        stats = []
        for r in mine:
            by_score, by_alpha = correlations(r.scores, truth), correlations(r.alpha, truth)
            pick = table.get(r.pick).accuracy
            n = max(1, round(r.search_cpu_s / median_cpu))
            rand = expected_best_distinct(all_accs, n)
            stats.append((*by_score, *by_alpha, pick, rand))
            rows.append([name, r.seed, *(f"{v:.3f}" for v in (*by_score, *by_alpha)),
                         f"{pick:.4f} (rank {ranked.index(pick) + 1})", f"{r.search_cpu_s:.1f}", n, f"{rand:.4f}"])
        mean = [statistics.mean(col) for col in zip(*stats, strict=True)]
        rows.append([f"{name}, mean", "", *(f"{v:.3f}" for v in mean[:8]), f"{mean[8]:.4f}",
                     f"{statistics.mean(r.search_cpu_s for r in mine):.1f}", "", f"{mean[9]:.4f}"])
        verdicts.append(
            f"- {name}: by shared-weight score, all children {verdict(mean[0], band_all)} (tau {mean[0]:.3f}), top "
            f"10% {verdict(mean[2], band_top)} (tau {mean[2]:.3f}); by alpha, all {verdict(mean[4], band_all)} "
            f"(tau {mean[4]:.3f}), top 10% {verdict(mean[6], band_top)} (tau {mean[6]:.3f}); derived pick "
            f"{mean[8] - mean[9]:+.4f} against random at equal compute.")
    return "\n".join([
        "DARTS over the same supernet (`nas_trainer.darts.zoph_cnn`: softmax over the 16 kernels of each layer, "
        "a 2-way softmax on the skip bit, the ENAS supernet's own blocks), first-order bilevel "
        "(`nas_trainer.darts.bilevel`: per training minibatch one Adam step on alpha on a validation minibatch, "
        f"betas (0.5, 0.999), weight decay 1e-3, then one SGD step on the weights with the table's recipe), "
        f"{epochs:g} epochs; derived pick = argmax per layer and bit. Scores: every child on the whole "
        "validation split with the trained weights (one-hot alphas = the supernet's child); alpha ranking: the "
        "child's log-probability under the alphas.",
        "",
        format_table(["setting", "seed", "tau (score)", "rho (score)", "tau top 10% (score)", "rho top 10% (score)",
                      "tau (alpha)", "rho (alpha)", "tau top 10% (alpha)", "rho top 10% (alpha)",
                      "DARTS pick: table val acc", "search CPU-s", "= trainings n", "random E[best of n]"], rows),
        "",
        *verdicts,
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fashion_supernet",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 3 settings, 40 children")
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("nas_trainer").setLevel(logging.WARNING)
    seeds = args.seeds or (1 if args.quick else 3)
    scale = 1 / EPOCHS if args.quick else 1.0
    controller = (3, 3) if args.quick else CONTROLLER
    table = FashionTable.load()
    tokens = [r.tokens for r in table.all_entries()]
    if args.quick:
        tokens = random.Random(0).sample(tokens, 40)
    names = QUICK_SETTINGS if args.quick else tuple(SETTINGS)
    started = time.perf_counter()
    runs = [rank_once(table, tokens, name, seed, scale, controller) for name in names for seed in range(seeds)]
    darts = [darts_once(tokens, name, seed, scale) for name in DARTS_SETTINGS for seed in range(seeds)]
    raw = OUT_DIR / ("fashion_supernet-quick.json" if args.quick else "fashion_supernet.json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"tokens": tokens, "runs": [{"setting": r.sampler, "seed": r.seed, "pick": r.pick,
                                                           "scores": r.scores} for r in runs],
                               "darts": [{"setting": r.setting, "seed": r.seed, "pick": r.pick, "scores": r.scores,
                                          "alpha": r.alpha} for r in darts]}))
    print(report(runs, darts, table, tokens, controller, scale, time.perf_counter() - started))


if __name__ == "__main__":
    main()
