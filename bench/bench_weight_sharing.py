"""Weight sharing (ENAS) against multi-trial REINFORCE: CPU-seconds of search to reach an accuracy.

Both search the same ENAS micro space (``nodes`` computed nodes per cell) on
the bundled digits data, in this process, on one torch thread:

* ENAS: one supernet, alternating shared-weight SGD (a fresh child per
  minibatch) and REINFORCE on the controller, SGDR over the whole run
  (``nas_trainer.enas.search``, the code of mode ``enas``). After some epochs the
  current controller derives an architecture (its RNG is put back afterwards, so
  deriving does not change the search).
* Multi-trial: the ``reinforce`` strategy (the space's paper defaults, batch 5)
  proposes children; each trains on its own for a short proxy recipe
  (``bench.quality_table.train_child``, the trainer's code) and its reward is
  kubenas' default objective. After some trials the best so far is the pick.

Every pick, and a few random architectures as a no-search reference, is then
trained from scratch with one retraining recipe (same for all; its cost is
shown apart). The search cost is the process CPU time of the search alone
(plus the derivation for ENAS). The last table gives, for a few target
accuracies, the search CPU-seconds each method needed before its pick reached
the target, and the ratio; the paper reports about 1000x in GPU-days on CIFAR-10.

    python -m bench.bench_weight_sharing [--quick]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from bench.headlines import headline
from bench.quality_table import OBJECTIVE, key_of, train_child
from bench.table import format_table
from controller_policy.objective import compute_reward
from controller_policy.spaces import make_space
from controller_policy.strategies import make_strategy

SPACE_TYPE = "enas-micro"
MODEL = {"filters": 8, "cellsPerStage": 1, "stemMultiplier": 1}


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the full and the quick run."""

    nodes: int
    enas_epochs: int
    enas_checkpoints: tuple[int, ...]
    controller_steps: int
    controller_batch: int
    derive_samples: int
    trials: int
    trial_checkpoints: tuple[int, ...]
    proxy_epochs: int
    retrain_epochs: int
    retrain_seeds: tuple[int, ...]
    random_archs: int


FULL = Sizes(nodes=2, enas_epochs=10, enas_checkpoints=(1, 2, 4, 10), controller_steps=5,
             controller_batch=5, derive_samples=20, trials=40, trial_checkpoints=(5, 10, 20, 40),
             proxy_epochs=3, retrain_epochs=10, retrain_seeds=(0, 1), random_archs=3)
QUICK = Sizes(nodes=2, enas_epochs=2, enas_checkpoints=(1, 2), controller_steps=2,
              controller_batch=3, derive_samples=5, trials=4, trial_checkpoints=(2, 4),
              proxy_epochs=1, retrain_epochs=2, retrain_seeds=(0,), random_archs=1)


def training(epochs: int, **extra: Any) -> dict[str, Any]:
    """The digits recipe shared by every training here; only epochs and the schedule change."""
    return {"epochs": epochs, "batchSize": 64, "learningRate": 0.05, "schedule": "cosine",
            "augment": False, "threads": 1, "device": "cpu", "model": MODEL, **extra}


@dataclass
class Pick:
    """An architecture a method would hand over after spending ``search_cpu_s``."""

    method: str
    budget: str
    search_cpu_s: float
    evaluated: int
    tokens: list[int]


def enas_picks(sizes: Sizes) -> tuple[list[Pick], dict[str, float]]:
    """Run one ENAS search; derive at each checkpoint epoch. Returns picks and per-epoch timings."""
    from controller_policy.contract import TrialDocument
    from nas_trainer.checkpoint import StopRequest
    from nas_trainer.enas.search import EnasSearch
    from nas_trainer.epochs import TrialContext
    from nas_trainer.reporter import Reporter
    from nas_trainer.runtime import setup_runtime

    doc = TrialDocument.model_validate({
        "search": "bench", "trial": "bench-ws-enas", "seed": 0, "mode": "enas",
        "spaceType": SPACE_TYPE, "spaceOptions": {"nodes": sizes.nodes}, "dataset": {"name": "digits"},
        "training": training(sizes.enas_epochs, schedule="sgdr", learningRateMin=0.001,
                             sgdrPeriod=sizes.enas_epochs),
        "enas": {"controllerStepsPerEpoch": sizes.controller_steps,
                 "controllerBatch": sizes.controller_batch, "deriveSamples": sizes.derive_samples},
    })
    cpu = time.process_time()
    ctx = TrialContext(doc, setup_runtime(doc.training), Reporter(None, None, None, echo_stdout=False),
                       StopRequest())
    search = EnasSearch(ctx)
    picks, epoch_cpu = [], []
    per_epoch = search.task.steps + sizes.controller_steps * sizes.controller_batch
    for epoch in range(sizes.enas_epochs):
        started = time.process_time()
        search.loop.end_epoch(search.run_epoch(epoch))
        epoch_cpu.append(time.process_time() - started)
        if epoch + 1 in sizes.enas_checkpoints:
            rng = search.strategy.generator.get_state()
            derive_started = time.process_time()
            arch, _ = search.derive()
            now = time.process_time()
            search.strategy.generator.set_state(rng)
            picks.append(Pick("ENAS", f"{epoch + 1} epochs", now - cpu,
                              (epoch + 1) * per_epoch + sizes.derive_samples, arch.tokens))
            cpu += now - derive_started  # later checkpoints do not pay for this derivation
    return picks, {"epoch_cpu_s": statistics.median(epoch_cpu), "omega_steps": float(search.task.steps)}


def multi_trial_picks(sizes: Sizes) -> tuple[list[Pick], float]:
    """REINFORCE proposing children that each train alone; the best so far at each checkpoint."""
    space = make_space(SPACE_TYPE, {"nodes": sizes.nodes})
    strategy = make_strategy("reinforce", space, {"batchSize": 5, "seed": 0})
    recipe = training(sizes.proxy_epochs)
    cpu = time.process_time()
    best: tuple[float, list[int]] | None = None
    picks, trial_cpu = [], []
    for n in range(1, sizes.trials + 1):
        proposal = strategy.ask()
        tokens = proposal.architecture.tokens
        out = train_child(SPACE_TYPE, {"nodes": sizes.nodes}, tokens, recipe, seed=0)
        trial_cpu.append(out["cpu_s"])
        reward = compute_reward(OBJECTIVE, out["history"])
        strategy.tell(proposal.id, reward)
        if best is None or reward > best[0]:
            best = (reward, tokens)
        if n in sizes.trial_checkpoints:
            picks.append(Pick("multi-trial REINFORCE", f"{n} trials", time.process_time() - cpu, n,
                              list(best[1])))
    return picks, statistics.median(trial_cpu)


@dataclass(frozen=True)
class Retrained:
    """One architecture trained from scratch with the retraining recipe, once per seed."""

    val: list[float]
    test: list[float]
    cpu_s: list[float]

    @property
    def mean_val(self) -> float:
        return statistics.mean(self.val)


def retrain(tokens: list[int], sizes: Sizes, cache: dict[str, Retrained]) -> Retrained:
    """Train ``tokens`` from scratch once per retraining seed; cached by token list."""
    key = key_of(tokens)
    if key not in cache:
        runs = [train_child(SPACE_TYPE, {"nodes": sizes.nodes}, tokens,
                            training(sizes.retrain_epochs, reportTestAccuracy=True), seed=s)
                for s in sizes.retrain_seeds]
        cache[key] = Retrained([r["metrics"]["val_accuracy"] for r in runs],
                               [r["metrics"]["test_accuracy"] for r in runs], [r["cpu_s"] for r in runs])
    return cache[key]


def time_to_target(rows: list[tuple[Pick, float]], target: float) -> float | None:
    """Search CPU-s of the first pick (in budget order) whose retrained accuracy reaches ``target``."""
    return next((p.search_cpu_s for p, acc in rows if acc >= target - 1e-6), None)


def ratio_text(enas: float | None, multi: float | None, enas_total: float, multi_total: float) -> str:
    """multi / ENAS, or a bound when one side never reached the target within its whole budget."""
    if enas and multi:
        return f"{multi / enas:.1f}x"
    if multi and enas is None:
        return f"< {multi / enas_total:.1f}x (ENAS not reached in {enas_total:.0f} CPU-s)"
    if enas and multi is None:
        return f"> {multi_total / enas:.1f}x (multi-trial not reached in {multi_total:.0f} CPU-s)"
    return "n/a"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_weight_sharing",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a minute or two)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("nas_trainer").setLevel(logging.WARNING)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    space = make_space(SPACE_TYPE, {"nodes": sizes.nodes})
    # Untimed warm-up: whichever method ran first would otherwise pay torch's one-off start costs.
    train_child(SPACE_TYPE, {"nodes": sizes.nodes}, space.sample(1), training(1), seed=0)
    enas, enas_info = enas_picks(sizes)
    multi, trial_cpu = multi_trial_picks(sizes)
    rng = random.Random(0)
    randoms = [Pick("random (no search)", f"arch {i}", 0.0, 0, space.sample(rng)) for i in range(sizes.random_archs)]
    cache: dict[str, Retrained] = {}
    scored = {"ENAS": [], "multi": [], "random": []}  # type: dict[str, list[tuple[Pick, float]]]
    rows = []
    for group, picks in (("ENAS", enas), ("multi", multi), ("random", randoms)):
        for p in picks:
            r = retrain(p.tokens, sizes, cache)
            scored[group].append((p, r.mean_val))
            rows.append([p.method, p.budget, f"{p.search_cpu_s:.1f}", p.evaluated, f"{r.mean_val:.4f}",
                         " / ".join(f"{v:.4f}" for v in r.val), f"{statistics.mean(r.test):.4f}",
                         f"{statistics.mean(r.cpu_s):.1f}", key_of(p.tokens)])
    wall = time.perf_counter() - started

    print(f"Space {SPACE_TYPE}, {sizes.nodes} nodes per cell ({space.size():.2e} token lists); digits "
          f"(1,200 train / 300 val / 297 test); model {MODEL}; CPU, 1 torch thread; seed 0.")
    print(f"ENAS: {sizes.enas_epochs} epochs of {enas_info['omega_steps']:.0f} shared-weight steps + "
          f"{sizes.controller_steps} x {sizes.controller_batch} controller samples, SGDR one cycle, "
          f"derive from {sizes.derive_samples} samples; median {enas_info['epoch_cpu_s']:.1f} CPU-s per epoch.")
    print(f"Multi-trial: REINFORCE (paper defaults, batch 5), each child trained {sizes.proxy_epochs} "
          f"epochs alone (median {trial_cpu:.1f} CPU-s per trial); reward (max val acc)^3.")
    print(f"Retraining of every pick: {sizes.retrain_epochs} epochs, cosine, mean over seeds "
          f"{list(sizes.retrain_seeds)}.\n")
    print(format_table(
        ["method", "budget", "search CPU-s", "archs evaluated", "retrained val acc",
         "per seed", "retrained test acc", "retrain CPU-s/seed", "tokens"], rows))
    if len(sizes.retrain_seeds) > 1:
        spread = statistics.mean(statistics.stdev(r.val) for r in cache.values())
        every = [r.mean_val for r in cache.values()]
        print(f"\nRetraining noise: seed-to-seed std of validation accuracy {spread:.4f} on average "
              f"(300 validation images: one image is 0.0033); the retrained accuracies of all "
              f"{len(every)} architectures above span {min(every):.4f}..{max(every):.4f}, so "
              "differences smaller than about twice that std are not evidence of a better architecture.")

    accs = sorted(v for g in ("ENAS", "multi") for _, v in scored[g])
    targets = sorted({accs[len(accs) // 2], accs[-1], max(v for _, v in scored["ENAS"])})
    target_rows = []
    for t in targets:
        e, m = time_to_target(scored["ENAS"], t), time_to_target(scored["multi"], t)
        ratio = ratio_text(e, m, enas[-1].search_cpu_s, multi[-1].search_cpu_s)
        target_rows.append([f"{t:.4f}", "not reached" if e is None else f"{e:.1f}",
                            "not reached" if m is None else f"{m:.1f}", ratio])
    print("\nSearch CPU-seconds until the pick, retrained, reaches the target validation accuracy "
          f"(random architectures reach {statistics.mean(v for _, v in scored['random']):.4f} on average):\n")
    print(format_table(["target val acc", "ENAS CPU-s", "multi-trial CPU-s", "multi / ENAS"], target_rows))
    per_arch_enas = enas[-1].search_cpu_s / max(enas[-1].evaluated, 1)
    per_arch_multi = multi[-1].search_cpu_s / max(multi[-1].evaluated, 1)
    print(f"\nCost per architecture looked at: ENAS {per_arch_enas * 1000:.0f} ms (one shared-weight step "
          f"or one validation-batch score), multi-trial {per_arch_multi:.1f} s (one training), "
          f"{per_arch_multi / per_arch_enas:,.0f}x. Paper (CIFAR-10): NAS about 22,400 GPU-days, "
          f"ENAS micro 0.45 GPU-days, the '~1000x'. Wall time {wall:.0f} s.")
    print("\n" + headline(
        f"**Weight sharing**: ENAS looks at an architecture for {per_arch_enas * 1000:.0f} ms against "
        f"{per_arch_multi:.1f} s for a multi-trial child, {per_arch_multi / per_arch_enas:,.0f}x cheaper per "
        "architecture at our scale (the paper's ~1000x is on CIFAR-10)."))


if __name__ == "__main__":
    main()
