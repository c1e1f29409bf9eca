"""Search-loop and status-API throughput on this machine (simulated trials, no training).

* reports/s: epoch reports POSTed over loopback by a client in another process
  (aiohttp, concurrent connections), each authenticated, parsed and applied;
* report-to-launch latency: with the loop keeping 1,000 simulated trials in
  flight (random strategy on the NASNet space, in-memory checkpoints written
  before every launch), the time from a final report to the launch of the
  trial that takes its slot (p50/p99), beside the figure before checkpoints were
  made incremental (``BEFORE_MS``);
* memory and checkpoint size after 100,000 finished trials (RSS growth of a fresh
  process, and the deep size of the ledger).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import types
from typing import Any

from bench.headlines import headline
from bench.table import format_table
from controller_policy.contract import Report
from nas_operator.api import parse_search
from nas_operator.checkpoint import MemoryCheckpointStore
from nas_operator.launcher import Launcher, LaunchRequest
from nas_operator.loop import SearchLoop
from nas_operator.process import tune_garbage_collector
from nas_operator.status_api import SearchRegistry, StatusServer, create_app
from nas_operator.testing import SimulatedLauncher, SimulatedOutcome

TRIAL_SECONDS = (5.0, 15.0)
"""Simulated trial length: 1,000 in flight finish about 100 trials per second."""
BEFORE_MS = (134.0, 524.0)
"""Report-to-launch p50/p99 before checkpoints were made incremental (a quiet machine, the
whole ledger and the strategy re-encoded before every launch): printed beside today's."""


def _search(name: str, max_trials: int, parallelism: int) -> Any:
    return parse_search({
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"searchSpace": {"type": "nasnet"},
                 "strategy": {"type": "random", "seed": 0},
                 "budget": {"maxTrials": max_trials, "parallelism": parallelism,
                            "maxFailedTrials": max_trials}},
    })  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- 1. status API reports per second -------------------------------------------------


def _client(targets: list[tuple[str, str]], total: int, concurrency: int, out: Any) -> None:
    """Runs in a separate process: POST ``total`` epoch reports, report (seconds, codes)."""
    import aiohttp

    async def go() -> tuple[float, dict[int, int]]:
        codes: dict[int, int] = {}
        counter = iter(range(total))
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for i in counter:
                    url, token = targets[i % len(targets)]
                    trial = url.rsplit("/", 2)[-2]
                    body = json.dumps({"kind": "epoch", "trial": trial, "epoch": i // len(targets),
                                       "metrics": {"val_accuracy": 0.5, "train_loss": 1.0}})
                    async with session.post(url, data=body, headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"}) as r:
                        await r.read()
                        codes[r.status] = codes.get(r.status, 0) + 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - start, codes

    out.put(asyncio.run(go()))


async def bench_reports(total: int, concurrency: int) -> tuple[float, dict[int, int]]:
    trials = 50
    launcher = SimulatedLauncher(lambda req: SimulatedOutcome(hang=True))
    loop = SearchLoop(_search("api", trials, trials), launcher)
    registry = SearchRegistry()
    registry.add(loop)
    server = StatusServer(create_app(registry))
    url = await server.start()
    await loop.start()
    while launcher.running < trials:
        await asyncio.sleep(0.01)
    targets = [
        (f"{url}/v1/namespaces/bench/searches/api/trials/{r.trial}/reports", r.token)
        for r in launcher.launched
    ]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_client, args=(targets, total, concurrency, out))
    proc.start()
    while proc.is_alive() and out.empty():
        await asyncio.sleep(0.05)
    try:
        seconds, codes = await asyncio.to_thread(out.get, True, 5.0)
    except Exception as exc:
        raise RuntimeError(f"report client process failed (exit code {proc.exitcode})") from exc
    finally:
        proc.join(timeout=5)
    await loop.stop(cancel_trials=True)
    await launcher.close()
    await server.stop()
    return total / seconds, codes


# --- 2. final report -> next launch ----------------------------------------------------


class _Timed(SimulatedLauncher):
    """Stamps launches; the simulated trainer stamps its final report."""

    def __init__(self, in_flight: int, rng: random.Random):
        super().__init__(self._behave)
        self.in_flight = in_flight
        self.rng = rng
        self.launch_times: list[float] = []
        self.report_times: list[float] = []

    def _behave(self, req: LaunchRequest) -> SimulatedOutcome:
        return SimulatedOutcome(metrics=[{"val_accuracy": self.rng.random()}],
                                latency=self.rng.uniform(*TRIAL_SECONDS))

    async def launch(self, request: LaunchRequest) -> None:
        self.launch_times.append(time.perf_counter())
        await super().launch(request)
        # Forget what the test double records for tests: an operator keeps no such history,
        # and 4,000 kept trial documents would have the garbage collector walk them.
        self.launched.clear()
        key = (request.trial, request.attempt)
        task = self.tasks.get(key)
        if task is not None:
            task.add_done_callback(lambda _, key=key: self._forget(key))

    def _forget(self, key: tuple[str, int]) -> None:
        self.tasks.pop(key, None)
        self._requests.pop(key, None)

    def attach(self, observer: Any) -> None:
        super().attach(observer)
        sink = self.report_sink
        assert sink is not None

        def stamped(trial: str, report: Any) -> Any:
            self.report_times.append(time.perf_counter())
            return sink(trial, report)

        self.report_sink = stamped


async def bench_latency(in_flight: int, total: int) -> tuple[list[float], float]:
    launcher = _Timed(in_flight, random.Random(0))
    loop = SearchLoop(_search("lat", total, in_flight), launcher, store=MemoryCheckpointStore())
    tune_garbage_collector()
    start = time.perf_counter()
    await loop.start()
    await loop.done
    wall = time.perf_counter() - start
    await launcher.close()
    # After the first ``in_flight`` launches, launch k takes the slot the k-th report freed.
    later = launcher.launch_times[in_flight:]
    reports = launcher.report_times[: len(later)]
    return [lt - rt for lt, rt in zip(later, reports, strict=True)], total / wall


# --- 3. memory at many finished trials -------------------------------------------------


class _Instant(Launcher):
    """Each attempt starts, reports and exits inside ``launch``: only the loop's cost remains."""

    def __init__(self) -> None:
        self.observer: Any = None

    def attach(self, observer: Any) -> None:
        self.observer = observer

    async def launch(self, request: LaunchRequest) -> None:
        accuracy = 0.3 + (hash(request.trial) % 1000) / 2000
        report = Report(kind="final", trial=request.trial, attempt=request.attempt,
                        metrics={"val_accuracy": accuracy}, epochs=[{"val_accuracy": accuracy}])
        self.observer.on_trial_started(request.trial, request.attempt)
        self.observer.handle_report(request.trial, report)
        self.observer.on_trial_exit(request.trial, request.attempt, 0, None)

    async def cancel(self, trial: str, attempt: int) -> None:
        return None


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _deep_size(root: Any) -> int:
    """Bytes of every object reachable from ``root`` (types, modules and functions excluded)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _memory_child(trials: int, out: Any) -> None:
    """Runs in a fresh process so that its RSS growth is the loop's alone."""

    async def go() -> tuple[float, float, float, int]:
        store = MemoryCheckpointStore()
        loop = SearchLoop(_search("mem", trials, 1000), _Instant(), store=store)
        gc.collect()
        before = _rss()
        start = time.perf_counter()
        await loop.start()
        await loop.done
        seconds = time.perf_counter() - start
        gc.collect()
        grown = (_rss() - before) / 2**20
        ledger = _deep_size(loop.ledger) / 2**20
        return grown, ledger, seconds, len(store.blobs["bench.mem"])

    out.put(asyncio.run(go()))


def bench_memory(trials: int) -> tuple[float, float, float, int]:
    """(RSS growth MiB, ledger MiB, seconds, checkpoint bytes) after ``trials`` finished."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(trials, out))
    proc.start()
    try:
        return out.get(timeout=3600)
    finally:
        proc.join(timeout=10)


def run(quick: bool) -> str:
    total, conc = (3000, 32) if quick else (20000, 64)
    in_flight, lat_total = (1000, 2000) if quick else (1000, 4000)
    mem_trials = 10_000 if quick else 100_000
    rate, codes = asyncio.run(bench_reports(total, conc))
    latencies, trials_per_s = asyncio.run(bench_latency(in_flight, lat_total))
    rss_mb, ledger_mb, mem_seconds, ckpt = bench_memory(mem_trials)
    ms = [x * 1000 for x in latencies]
    rows = [
        ["status API reports/s (loopback, separate client process)", f"{rate:,.0f}",
         f"{total} POSTs, {conc} connections, codes {codes}"],
        ["final report -> next launch p50", f"{statistics.median(ms):.1f} ms",
         f"before: {BEFORE_MS[0]:g} ms; {in_flight} trials in flight "
         f"({TRIAL_SECONDS[0]:g}-{TRIAL_SECONDS[1]:g} s each), {len(ms)} slot refills"],
        ["final report -> next launch p99", f"{_percentile(ms, 0.99):.1f} ms",
         f"before: {BEFORE_MS[1]:g} ms; {trials_per_s:,.0f} trials/s through the loop"],
        [f"loop process RSS growth at {mem_trials:,} finished trials", f"{rss_mb:.1f} MiB",
         f"fresh process; {mem_seconds:.1f} s, {mem_trials / mem_seconds:,.0f} trials/s"],
        [f"ledger size at {mem_trials:,} finished trials", f"{ledger_mb:.1f} MiB",
         "every object reachable from the ledger"],
        [f"checkpoint size at {mem_trials:,} finished trials", f"{ckpt / 2**20:.2f} MiB",
         "ledger JSON + strategy state"],
    ]
    return format_table(["figure", "value", "conditions"], rows) + "\n\n" + headline(
        f"**Search loop**: {rate:,.0f} status-API reports/s on loopback; final report to the next launch "
        f"{statistics.median(ms):.1f} ms p50 with {in_flight:,} trials in flight; the loop's memory grows "
        f"{rss_mb:.1f} MiB over {mem_trials:,} finished trials.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    args = parser.parse_args()
    print(run(args.quick))


if __name__ == "__main__":
    main()
