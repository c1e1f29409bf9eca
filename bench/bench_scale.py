"""A long search on an emulated Kubernetes API: operator memory, API requests and bytes per trial,
with ``spec.retention`` (the default: the best 10 and the latest 100 NASTrials) and without it
(``keepRecent: 100000``: every NASTrial stays).

The set-up is ``bench_operator``'s (the real operator in this process, the test suite's
emulator and an instant fake cluster in a child process, a ``random`` strategy), one fresh
operator process and emulator per case so that each RSS belongs to one case. The emulator
also counts what a real API server would hand to etcd: the bytes of every object it stores
after a create, patch or update (etcd keeps the whole object each time), beside the bytes of
the request bodies. RSS is sampled every second against trials done; its slope (least
squares over the second half) says whether memory is bounded.

    python -m bench.bench_scale [--quick] [--trials N] [--parallelism P]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIZES = {"full": (25_000, 1_000), "quick": (300, 50)}
"""(maxTrials, parallelism)."""
CASES = {"retention": {}, "no retention": {"keepRecent": 100_000}}
"""``spec.retention`` of each case ({}: the defaults)."""
WRITES = frozenset({"create", "patch", "update"})
PROGRESS = REPO / "bench" / "out" / "bench_scale.progress"
"""Progress lines of a running case (``python -m bench`` holds stderr until the end)."""


def counting_emulator_class() -> type:
    """``bench_operator``'s fast emulator, also counting the bytes written per resource.

    It keeps only each object's latest version and forgets deleted objects (the test
    suite's emulator keeps every version, for its assertions): a 100k-trial search
    writes a few hundred thousand versions, which would make the emulator's memory, not
    the operator's, the limit.
    """
    from bench.bench_operator import fast_emulator_class
    from tests.support import kube_emulator

    base = fast_emulator_class()

    class Counting(base):  # type: ignore[misc, valid-type]
        def _serve_object(self, request: Any) -> Any:
            result = super()._serve_object(request)
            verb = kube_emulator._verb(request)
            if verb in WRITES and (result.status or 200) < 300:
                name = kube_emulator._res_name(request.resource)
                self.body_bytes[name] += len(request.body or b"")
                self.stored_bytes[name] += len(json.dumps(result.payload, separators=(",", ":")))
            return result

        def _commit(self, res: Any, key: Any, old: Any, new: Any) -> Any:
            result = super()._commit(res, key, old, new)
            if key in self._objects and not self._objects[key].deleted:
                del self._objects[key].history[:-1]
            return result

        def _remove(self, res: Any, key: Any, old: Any, final: Any) -> Any:
            result = super()._remove(res, key, old, final)
            del self._objects[key]
            return result

    Counting.body_bytes = Counter()  # type: ignore[attr-defined]
    Counting.stored_bytes = Counter()  # type: ignore[attr-defined]
    return Counting


def serve() -> None:
    """Child process: emulator + fake cluster; answers 'stats' and 'quit' on stdin."""
    from bench.bench_operator import BenchCluster, _rss, serve_cluster
    from tests.support.kube_emulator import load_crd_manifests

    cls = counting_emulator_class()
    emulator = cls(crds=load_crd_manifests(REPO / "crds"), history_limit=50_000)

    def stats(cluster: BenchCluster) -> dict[str, Any]:
        return {"calls": [[v, r, a, n] for (v, r, a), n in emulator.api_calls.items()],
                "body": dict(cls.body_bytes), "stored": dict(cls.stored_bytes),
                "errors": cluster.errors[:5], "rss": _rss()}

    serve_cluster(emulator, BenchCluster, stats)


async def run_case(max_trials: int, parallelism: int, retention: dict[str, int]) -> dict[str, Any]:
    """One operator, one search; RSS samples and the API server's counts."""
    import aiohttp
    import kopf

    from bench.bench_operator import _ask, _rss
    from nas_operator.kube.config import OperatorConfig
    from nas_operator.kube.main import run

    child = subprocess.Popen([sys.executable, "-m", "bench.bench_scale", "--serve"], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    url = json.loads(child.stdout.readline())["url"]
    stop = asyncio.Event()
    started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    config = OperatorConfig(http_host="127.0.0.1", http_port=0, status_interval=1.0,
                            write_concurrency=64)
    operator = asyncio.create_task(run(config, connection=kopf.ConnectionInfo(server=url),
                                       stop_flag=stop, started=started))
    await asyncio.wait_for(started, 60)
    rss_start = _rss()
    search = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
              "metadata": {"name": "long", "namespace": "default"},
              "spec": {"searchSpace": {"type": "nasnet"},
                       "strategy": {"type": "random", "seed": 0},
                       "budget": {"maxTrials": max_trials, "parallelism": parallelism,
                                  "maxFailedTrials": max_trials},
                       "trial": {"retries": 0}, "retention": retention}}
    base = f"{url}/apis/kubenas.dev/v1alpha1/namespaces/default"
    samples: list[tuple[float, int, int]] = []
    headers = {"User-Agent": "kubenas-tests", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{base}/nassearches", data=json.dumps(search)) as response:
            assert response.status == 201, await response.text()
        t0 = time.monotonic()
        status: dict[str, Any] = {}
        while status.get("phase") not in ("Succeeded", "Failed"):
            await asyncio.sleep(1.0)
            async with session.get(f"{base}/nassearches/long") as response:
                status = (await response.json()).get("status") or {}
            done = (status.get("trials") or {}).get("succeeded", 0)
            samples.append((time.monotonic() - t0, done, _rss()))
            if len(samples) % 60 == 0:  # progress for whoever runs it in the background
                line = f"{samples[-1][0]:.0f} s: {done:,} trials, RSS {samples[-1][2] >> 20} MiB"
                print(line, file=sys.stderr, flush=True)
                PROGRESS.parent.mkdir(exist_ok=True)
                with PROGRESS.open("a") as out:
                    out.write(f"{retention or 'retention'}: {line}\n")
            if time.monotonic() - t0 > 4 * 3600:
                raise TimeoutError(f"not done after four hours: {status.get('trials')}")
        elapsed = time.monotonic() - t0
        # counted at once: the final status is written after retention's last deletions
        async with session.get(f"{base}/nastrials") as response:
            left = len((await response.json()).get("items") or [])
        async with session.get(f"{url}/apis/batch/v1/namespaces/default/jobs") as response:
            jobs_left = len((await response.json()).get("items") or [])
    stop.set()
    await asyncio.wait_for(operator, 120)
    stats = _ask(child, "stats")
    _ask(child, "quit")
    child.wait(30)
    assert stats is not None
    return {"samples": samples, "elapsed": elapsed, "status": status, "stats": stats,
            "rss_start": rss_start, "left": left, "jobs_left": jobs_left,
            "max_trials": max_trials, "parallelism": parallelism}


def slope(samples: list[tuple[float, int, int]]) -> float:
    """Least-squares RSS bytes per trial over the second half of the trials."""
    done = max((s[1] for s in samples), default=0)
    half = [(n, r) for _, n, r in samples if n >= done / 2]
    if len(half) < 3 or len({n for n, _ in half}) < 2:
        return float("nan")
    mx = sum(n for n, _ in half) / len(half)
    my = sum(r for _, r in half) / len(half)
    return (sum((n - mx) * (r - my) for n, r in half)
            / sum((n - mx) ** 2 for n, _ in half))


def report(results: dict[str, dict[str, Any]]) -> str:
    from bench.table import format_table

    mib = 2**20
    rows = []
    for name, res in results.items():
        n = res["max_trials"]
        calls = sum(c for _, _, agent, c in res["stats"]["calls"] if agent != "kubenas-tests")
        stored = res["stats"]["stored"]

        def of(kind: str, stored: dict[str, int] = stored) -> int:
            return sum(v for k, v in stored.items() if k.split(".")[0] == kind)

        body = res["stats"]["body"]
        peak = max(r for _, _, r in res["samples"])
        per = slope(res["samples"])
        rows.append([
            name, f"{n:,} / {res['parallelism']:,}",
            f"{res['status'].get('phase')}, {(res['status'].get('trials') or {}).get('succeeded', 0):,}",
            f"{res['elapsed']:.0f} s ({n / res['elapsed']:.1f}/s)",
            f"{calls / n:.2f}",
            f"{sum(stored.values()) / n / 1024:.1f} KiB ({of('nastrials') / n / 1024:.1f} NASTrial, "
            f"{of('jobs') / n / 1024:.1f} Job, {of('configmaps') / n / 1024:.1f} checkpoint)",
            f"{sum(body.values()) / n / 1024:.1f} KiB",
            f"{res['left']:,} / {res['jobs_left']:,}",
            f"{res['rss_start'] / mib:.0f} / {peak / mib:.0f} / {res['samples'][-1][2] / mib:.0f} MiB",
            f"{per * 10_000 / mib:+.1f} MiB",
            f"{(res['samples'][-1][2] + per * (100_000 - n)) / mib:.0f} MiB",
        ])
    table = format_table(
        ["case", "trials / in flight", "phase, succeeded", "wall (trials/s)",
         "operator API requests per trial", "etcd-bound bytes written per trial",
         "request bodies written per trial", "NASTrials / Jobs left", "operator RSS start / peak / end",
         "RSS slope per 10k trials (2nd half)", "RSS at 100k trials, extrapolated"], rows)
    over_time = []
    for name, res in results.items():
        samples = res["samples"]
        picks = [samples[min(len(samples) - 1, round(i * (len(samples) - 1) / 8))] for i in range(9)]
        over_time.append([name] + [f"{done:,}: {rss / mib:.0f}" for _, done, rss in picks])
    return (table + "\n\nOperator RSS over the search (trials done: MiB), nine evenly spaced samples:\n\n"
            + format_table(["case"] + [f"{i}/8" for i in range(9)], over_time))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 trials, 50 in flight (full: 25,000, 1,000)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int)
    parser.add_argument("--parallelism", type=int)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    import logging

    logging.basicConfig(level=logging.ERROR)
    n, p = SIZES["quick" if args.quick else "full"]
    n, p = args.trials or n, args.parallelism or p
    if args.case is not None:  # one case, in its own process: its RSS is its own
        print(json.dumps(asyncio.run(run_case(n, p, CASES[args.case]))))
        return 0
    results = {}
    for name in CASES:
        proc = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--case", name,
                               "--trials", str(n), "--parallelism", str(p)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True, check=False)  # stderr: progress
        if proc.returncode != 0:
            return proc.returncode
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"Sizes: maxTrials {n:,}, parallelism {p:,}, strategy random (seed 0), instant fake "
          "trials (report, then Job Complete), one operator process per case. The issue asks "
          "for 100,000 trials; this 2-core machine, shared with other work, runs the size "
          "above, and the 100k column is extrapolated from the measured slope, not run.\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
