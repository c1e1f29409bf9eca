"""Build (or finish) the Fashion-MNIST table of ``bench.fashion_table``: resumable, rows appended as they finish.

Jobs run in a shuffled order (seed 0), the seed reruns first, so a build that
is stopped early leaves a uniform random sample of the space and a noise
estimate. Each finished training is appended to
``bench/out/fashion_zoph2x16.partial.jsonl`` at once; a rerun skips what is
there (a torn last line is retrained). When every job is done the rows are
written, sorted, to ``bench/data/fashion_zoph2x16.jsonl.gz`` (the shipped
table) and the partial file is removed.

Each worker process reads the data set once and keeps it (as a long-running
trainer process would): the per-trial read and resize would otherwise cost a
fifth of each training.

    python -m bench.build_fashion_table [--workers 1] [--fresh] [--limit N] [--table PATH]
    nice -n 15 env OMP_NUM_THREADS=1 python -m bench.build_fashion_table   # on a shared machine
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.fashion_table import (
    NOISE_ARCHS,
    NOISE_SEEDS,
    PARTIAL_PATH,
    TABLE_PATH,
    TASK,
    FashionTable,
    data_dir,
    key_of,
    noise_summary,
    read_rows,
    task_space,
)
from bench.machine import cpu_model, git_commit

LATENCY_RUNS = 20


def dataset_spec(root: Path) -> dict[str, Any]:
    return {**TASK["dataset"], "path": str(root)}


def _init_worker() -> None:
    """Threads to 1 and the data set read once per process (keyed by the spec, so a different
    spec is still loaded afresh)."""
    import logging

    import torch

    import nas_trainer.child as child

    torch.set_num_threads(1)
    logging.getLogger("nas_trainer").setLevel(logging.WARNING)
    original, cache = child.load_dataset, {}

    def cached(spec: Any, seed: int, kind: Any = None) -> Any:
        key = (spec.model_dump_json(), seed, kind)
        if key not in cache:
            cache[key] = original(spec, seed, kind=kind)
        return cache[key]

    child.load_dataset = cached


def measure_model(tokens: list[int], root: Path) -> tuple[int, float]:
    """(multiply-adds of one forward pass of one image, median batch-1 CPU latency in ms) of the
    child exactly as the trainer builds it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from controller_policy.contract import TrialDocument
    from nas_trainer.child import build_child

    doc = TrialDocument.model_validate({
        "search": "bench", "trial": f"t-{key_of(tokens)}", "seed": TASK["seed"],
        "architecture": task_space().architecture(tokens).model_dump(), "spaceOptions": TASK["spaceOptions"],
        "dataset": dataset_spec(root), "training": TASK["training"],
    })
    model, data = build_child(doc)
    model.eval()
    x = torch.zeros(1, *data.input_shape)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        times = []
        for _ in range(LATENCY_RUNS + 3):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return counter.get_total_flops() // 2, statistics.median(times[3:]) * 1000


def train_row(job: tuple[list[int], int, str]) -> dict[str, Any]:
    """One training of ``tokens`` with ``seed``; the model figures are measured for seed-0 rows."""
    from bench.quality_table import train_child

    tokens, seed, root = job
    out = train_child(TASK["spaceType"], TASK["spaceOptions"], tokens, TASK["training"], seed,
                      dataset_spec(Path(root)))
    row: dict[str, Any] = {
        "tokens": tokens, "seed": seed,
        "val": [round(h["val_accuracy"], 6) for h in out["history"]],
        "params": int(out["metrics"]["params"]),
        "cpu_s": round(out["cpu_s"], 3),
    }
    macs, latency = measure_model(tokens, Path(root))
    row.update(macs=int(macs), latency_ms=round(latency, 4))
    return row


def all_jobs() -> list[tuple[list[int], int]]:
    """Seed reruns (and their seed-0 rows) first, then the rest of the space, shuffled."""
    space = task_space()
    every = [list(c) for c in itertools.product(*(range(s.num_values) for s in space.slots))]
    rng = random.Random(0)
    rng.shuffle(every)
    noisy = every[:NOISE_ARCHS]
    jobs = [(t, s) for t in noisy for s in (TASK["seed"], *NOISE_SEEDS)]
    return jobs + [(t, TASK["seed"]) for t in every[NOISE_ARCHS:]]


def header() -> dict[str, Any]:
    import torch

    return {"task": TASK, "built_with": {"torch": torch.__version__, "commit": git_commit(),
                                         "cpu": cpu_model(), "cores": os.cpu_count()}}


def partial_path(table: Path) -> Path:
    """Where an unfinished build of ``table`` keeps its rows: bench/out/ for the shipped table
    (never committed), beside any other."""
    if table == TABLE_PATH:
        return PARTIAL_PATH
    return table.with_name(table.name.removesuffix(".gz").removesuffix(".jsonl") + ".partial.jsonl")


def done_rows(table: Path, fresh: bool) -> list[dict[str, Any]]:
    if fresh:
        partial_path(table).unlink(missing_ok=True)
        return []
    rows: list[dict[str, Any]] = []
    for path in (table, partial_path(table)):
        head, found = read_rows(path)
        if head is not None and head["task"] != TASK:
            raise SystemExit(f"{path} was built for another TASK; rerun with --fresh")
        rows += found
    return rows


def finish(table: Path, rows: list[dict[str, Any]], wall_s: float, workers: int) -> None:
    """Write the shipped table: header, then rows sorted by (tokens, seed); deterministic bytes."""
    head = header()
    head["built_with"].update(wall_s=round(wall_s, 1), workers=workers,
                              cpu_s=round(sum(r["cpu_s"] for r in rows), 1))
    table.parent.mkdir(parents=True, exist_ok=True)
    tmp = table.with_suffix(".tmp")
    unique = {(key_of(r["tokens"]), r["seed"]): r for r in rows}
    with gzip.GzipFile(tmp, "wb", mtime=0) as fh:
        lines = [head] + sorted(unique.values(), key=lambda r: (r["tokens"], r["seed"]))
        fh.write("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines).encode())
    os.replace(tmp, table)
    partial_path(table).unlink(missing_ok=True)


def partial_wall(rows_path: Path) -> float:
    """Wall seconds spent by earlier sessions (their last progress record each)."""
    if not rows_path.exists():
        return 0.0
    last: dict[str, float] = {}
    for line in rows_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "session" in rec:
            last[rec["session"]] = rec["wall_s"]
    return sum(last.values())


def build(table_path: Path, workers: int, fresh: bool, limit: int | None) -> None:
    root = data_dir()
    partial = partial_path(table_path)
    rows = done_rows(table_path, fresh)
    have = {(key_of(r["tokens"]), r["seed"]) for r in rows}
    todo = [j for j in all_jobs() if (key_of(j[0]), j[1]) not in have]
    if limit is not None:
        todo = todo[:limit]
    earlier = partial_wall(partial)
    session, started = f"{time.time():.0f}", time.perf_counter()
    print(f"{len(have)} rows done, {len(todo)} trainings to run with {workers} workers", flush=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if not partial.exists() or partial.stat().st_size == 0:
        partial.write_text(json.dumps(header()) + "\n")
    elif not partial.read_bytes().endswith(b"\n"):  # a torn last line: end it, so the next row parses
        with open(partial, "a") as fh:
            fh.write("\n")
    cpu = 0.0
    with open(partial, "a") as out, ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = [pool.submit(train_row, (t, s, str(root))) for t, s in todo]
        for n, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            rows.append(row)
            cpu += row["cpu_s"]
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            if n % 25 == 0 or n == len(todo):
                wall = time.perf_counter() - started
                out.write(json.dumps({"session": session, "wall_s": round(wall, 1)}) + "\n")
                print(f"{n}/{len(todo)} done, {wall:.0f} s wall, {cpu:.0f} CPU-s in trainings", flush=True)
            out.flush()
    wall = earlier + time.perf_counter() - started
    if len({(key_of(r["tokens"]), r["seed"]) for r in rows}) == len(all_jobs()):
        finish(table_path, rows, wall, workers)
        table = FashionTable.load(table_path)
        noise = noise_summary(table)
        print(f"wrote {table_path} ({table_path.stat().st_size / 1e3:.0f} kB): {len(table.rows)} architectures, "
              f"spread {noise.across_std:.4f} vs seed noise {noise.seed_std:.4f} ({noise.ratio:.1f}x); "
              f"{wall / 60:.0f} min wall")
    else:
        print(f"partial: {partial}; rerun to continue")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.build_fashion_table", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (default 1: the machine is usually shared)")
    parser.add_argument("--fresh", action="store_true", help="discard finished rows and start over")
    parser.add_argument("--limit", type=int, default=None, help="run at most N trainings now (then stop)")
    parser.add_argument("--table", type=Path, default=TABLE_PATH, help="where the finished table goes")
    args = parser.parse_args(argv)
    build(args.table, args.workers, args.fresh, args.limit)


if __name__ == "__main__":
    main()
