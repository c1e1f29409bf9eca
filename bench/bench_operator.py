"""The kubenas operator on an emulated Kubernetes API: throughput and cost per trial.

Three processes, so that each figure belongs to what it names:

* the **operator** (this process): the real entry point ``nas_operator.kube.main.run``:
  kopf with the kubenas handlers, the status API, the search loop, the Kubernetes
  launcher, NASTrial/Job/ConfigMap/Secret/Event writes;
* the **API server**: the test suite's emulator (``tests/support/kube_emulator.py``) serving
  the generated CRDs, in a child process;
* the **cluster** (in that child process, its own thread): for every Job the
  operator creates it plays the trainer, which POSTs its final report to the
  report URL in the Job's env with the trial's token (the HMAC the kubelet would
  inject from the Secret; the key is read once from the Secret), and then the Job
  controller, which marks the Job Complete. Trials "train" for no time; no Pods
  are created.

Figures: trials per second from the NASSearch's creation to its Succeeded status;
the operator's API requests and CPU time per trial (kopf's and its own requests, by
verb and resource); the latency from a final report to the creation of the Job that
takes the freed slot (p50/p99, paired in FIFO order) — with 1,000 instant trials in
flight this is mostly queueing (in flight / throughput), so a lightly loaded search
(10 in flight) is measured first; the operator process's RSS. The strategy is
``random`` (a negligible controller) so the figures are the operator's; the
controller's own cost is in ``bench_controller``.

    python -m bench.bench_operator [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIZES = {"full": (10_000, 1_000), "quick": (600, 100)}
"""(maxTrials, parallelism) of the main search."""
LIGHT = (200, 10)
"""A second, lightly loaded search: report-to-launch latency when nothing queues."""


# --- the child process: API emulator + fake cluster ---------------------------------------------

def fast_emulator_class() -> type:
    """The test suite's emulator, serving object requests without kmock's generic matching.

    kmock matches every request against its reactions (signature inspection, protocol
    checks: ~10 ms a request on a loaded 2-core machine) and logs every request. The API
    semantics are the emulator's own code (``_serve_object``), called here directly; the
    response is written as kmock would (JSON, or one JSON event per line for watches).
    """
    import aiohttp.web

    from tests.support import kube_emulator

    class FastEmulator(kube_emulator.KubeEmulator):  # type: ignore[misc, valid-type]
        async def _handle(self, request: Any) -> Any:
            if not self._is_object_request(request):
                return await super()._handle(request)
            self._requests.clear()  # kmock's log: nothing here reads it
            resource = kube_emulator._res_name(request.resource)
            if request.subresource:
                resource = f"{resource}/{request.subresource}"
            agent = request.headers.get("User-Agent", "").split("/")[0].split(" ")[0]
            self.api_calls[(kube_emulator._verb(request), resource, agent)] += 1
            result = self._serve_object(request)
            if not hasattr(result.payload, "__aiter__"):
                return aiohttp.web.json_response(result.payload, status=result.status or 200,
                                                 headers=result.headers)
            raw = aiohttp.web.StreamResponse(status=result.status or 200, headers=result.headers)
            await raw.prepare(request._raw_request)
            try:
                async for item in result.payload:
                    if isinstance(item, dict):
                        await raw.write(json.dumps(item).encode() + b"\n")
                await raw.write_eof()
            except ConnectionError:
                pass
            return raw

    return FastEmulator


def serve() -> None:
    """Child process: serve the emulator, play the cluster; answer 'stats' on stdin."""
    from tests.support.kube_emulator import load_crd_manifests

    emulator = fast_emulator_class()(crds=load_crd_manifests(REPO / "crds"),
                                     history_limit=200_000)

    def stats(cluster: BenchCluster) -> dict[str, Any]:
        return {"calls": [[v, r, a, n] for (v, r, a), n in emulator.api_calls.items()],
                "reports": cluster.reports, "added": cluster.added,
                "errors": cluster.errors[:5], "rss": _rss(), "cpu": time.process_time()}

    serve_cluster(emulator, BenchCluster, stats, reset=emulator.api_calls.clear)


def serve_cluster(emulator: Any, cluster_class: type[BenchCluster],
                  stats: Callable[[Any], dict[str, Any]],
                  reset: Callable[[], None] | None = None) -> None:
    """Child process body shared by the operator benchmarks: serve ``emulator``, play the
    cluster with ``cluster_class``, print the URL, then answer stdin: ``stats`` prints
    ``stats(cluster)`` as one JSON line, ``reset`` calls ``reset``, ``quit`` stops."""
    from tests.support.kube_emulator import EmulatorThread

    server = EmulatorThread(emulator)
    url = server.start()
    cluster = cluster_class(url, server)
    cluster.start()
    print(json.dumps({"url": url}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            print(json.dumps(stats(cluster)), flush=True)
        elif command == "reset" and reset is not None:
            reset()
        elif command == "quit":
            break
    cluster.stop()
    server.stop()


class BenchCluster:
    """Trainer + Job controller for every Job, from a watch (its own thread and loop)."""

    def __init__(self, url: str, server: Any) -> None:
        self.url = url
        self.server = server
        self.reports: dict[str, list[float]] = {}
        """Per search: monotonic time of each final report POSTed (ordered)."""
        self.added: dict[str, list[float]] = {}
        """Per search: monotonic time each new Job was seen (ordered)."""
        self.errors: list[str] = []
        self._keys: dict[tuple[str, str], bytes] = {}
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def _main(self) -> None:
        import aiohttp

        from tests.support.kube_emulator import JOBS, KubeClient

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            self.session = session
            client = KubeClient(self.url, session)
            tasks: set[asyncio.Task[None]] = set()
            resource_version = "0"
            while not self._stop.is_set():
                try:
                    async with client.watch(JOBS, None, resourceVersion=resource_version,
                                            timeoutSeconds="5") as stream:
                        while True:
                            event = await stream.next(timeout=10)
                            if event is None:
                                break
                            obj = event["object"]
                            resource_version = obj["metadata"].get("resourceVersion",
                                                                   resource_version)
                            if event["type"] != "ADDED":
                                continue
                            search = obj["metadata"]["labels"]["kubenas.dev/search"]
                            self.added.setdefault(search, []).append(time.monotonic())
                            task = asyncio.create_task(self._play(obj))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                except TimeoutError:
                    continue

    async def _key(self, namespace: str, search: str) -> bytes:
        from nas_operator.tokens import decode_key
        from tests.support.kube_emulator import SECRETS

        if (namespace, search) not in self._keys:
            secret = await self.server.call(self.server.emulator.find_object, SECRETS,
                                            namespace, f"{search}-tokens")
            import base64

            self._keys[(namespace, search)] = decode_key(
                base64.b64decode(secret["data"]["search-key"]))
        return self._keys[(namespace, search)]

    async def _play(self, job: dict[str, Any]) -> None:
        from nas_operator.tokens import trial_token
        from tests.support.kube_emulator import JOBS

        try:
            meta = job["metadata"]
            env = {e["name"]: e.get("value") for e in
                   job["spec"]["template"]["spec"]["containers"][0]["env"]}
            doc = json.loads(env["KUBENAS_TRIAL_JSON"])
            key = await self._key(meta["namespace"], doc["search"])
            token = trial_token(key, meta["namespace"], doc["search"], doc["trial"])
            accuracy = 0.5 + 0.4 * (hash(doc["trial"]) % 1000) / 1000
            report = {"kind": "final", "trial": doc["trial"], "attempt": doc["attempt"],
                      "metrics": {"val_accuracy": accuracy},
                      "epochs": [{"val_accuracy": accuracy}]}
            self.reports.setdefault(doc["search"], []).append(time.monotonic())
            async with self.session.post(env["KUBENAS_REPORT_URL"], json=report, headers={
                    "Authorization": f"Bearer {token}"}) as response:
                if response.status != 200:
                    self.errors.append(f"{doc['trial']}: {response.status} "
                                       f"{await response.text()}")
            await self.server.call(self.server.emulator.patch_object, JOBS, meta["namespace"],
                                   meta["name"], {"status": {"succeeded": 1, "conditions": [
                                       {"type": "Complete", "status": "True"}]}},
                                   subresource="status")
        except Exception as exc:  # noqa: BLE001 - reported in the figures
            self.errors.append(repr(exc))


def _rss() -> int:
    """Current resident set size of this process, bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the operator process ------------------------------------------------------------------------

async def run_search(session: Any, url: str, name: str, max_trials: int,
                     parallelism: int) -> dict[str, Any]:
    """Create one search and wait for its end; (status, wall seconds, operator CPU, peak RSS)."""
    search = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
              "metadata": {"name": name, "namespace": "default"},
              "spec": {"searchSpace": {"type": "nasnet"},
                       "strategy": {"type": "random", "seed": 0},
                       "budget": {"maxTrials": max_trials, "parallelism": parallelism,
                                  "maxFailedTrials": max_trials},
                       "trial": {"retries": 0, "resources": {"limits": {"nvidia.com/gpu": 1}}}}}
    path = f"{url}/apis/kubenas.dev/v1alpha1/namespaces/default/nassearches"
    async with session.post(path, data=json.dumps(search)) as response:
        assert response.status == 201, await response.text()
    t0, cpu0, peak = time.monotonic(), time.process_time(), 0
    status: dict[str, Any] = {}
    while status.get("phase") not in ("Succeeded", "Failed"):
        await asyncio.sleep(0.5)
        peak = max(peak, _rss())
        async with session.get(f"{path}/{name}") as response:
            status = (await response.json()).get("status") or {}
        if time.monotonic() - t0 > 3600:
            raise TimeoutError(f"search {name} not done after an hour: {status.get('trials')}")
    return {"status": status, "elapsed": time.monotonic() - t0,
            "cpu": time.process_time() - cpu0, "rss_peak": peak,
            "max_trials": max_trials, "parallelism": parallelism}


def _ask(child: Any, command: str) -> dict[str, Any] | None:
    child.stdin.write(command + "\n")
    child.stdin.flush()
    return json.loads(child.stdout.readline()) if command == "stats" else None


async def bench(max_trials: int, parallelism: int) -> dict[str, Any]:
    import aiohttp
    import kopf

    from nas_operator.kube.config import OperatorConfig
    from nas_operator.kube.main import run

    child = subprocess.Popen([sys.executable, "-m", "bench.bench_operator", "--serve"],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    url = json.loads(child.stdout.readline())["url"]
    rss_before = _rss()
    stop = asyncio.Event()
    started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    config = OperatorConfig(http_host="127.0.0.1", http_port=0, status_interval=1.0,
                            write_concurrency=64)
    operator = asyncio.create_task(run(config, connection=kopf.ConnectionInfo(server=url),
                                       stop_flag=stop, started=started))
    await asyncio.wait_for(started, 30)
    headers = {"User-Agent": "kubenas-tests", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        light = await run_search(session, url, "light", *LIGHT)
        _ask(child, "reset")  # count requests of the main search only
        emulator_cpu = _ask(child, "stats")["cpu"]  # type: ignore[index]
        main = await run_search(session, url, "bench", max_trials, parallelism)
    stop.set()
    await asyncio.wait_for(operator, 60)
    stats = _ask(child, "stats")
    assert stats is not None
    stats["cpu"] -= emulator_cpu
    _ask(child, "quit")
    child.wait(30)
    return {"main": main, "light": light, "stats": stats, "rss_before": rss_before}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latencies(stats: dict[str, Any], search: str, parallelism: int) -> list[float]:
    """Report k frees the slot of Job k + parallelism (launch order is FIFO)."""
    reports, added = stats["reports"].get(search, []), stats["added"].get(search, [])
    return [added[parallelism + k] - reports[k]
            for k in range(min(len(reports), len(added) - parallelism))
            if added[parallelism + k] >= reports[k]]


def report(result: dict[str, Any]) -> str:
    from bench.headlines import headline
    from bench.table import format_table

    main, light, stats = result["main"], result["light"], result["stats"]
    n, p = main["max_trials"], main["parallelism"]
    operator = Counter()
    for verb, resource_name, agent, count in stats["calls"]:
        if agent != "kubenas-tests":
            operator[(verb, resource_name)] += count
    heavy_lat = latencies(stats, "bench", p)
    light_lat = latencies(stats, "light", light["parallelism"])
    succeeded = (main["status"].get("trials") or {}).get("succeeded", 0)

    def ms(values: list[float], q: float) -> str:
        return f"{_percentile(values, q) * 1000:.0f} ms"

    summary = [
        ["trials (maxTrials / parallelism)", f"{n:,} / {p:,}"],
        ["search phase, trials succeeded", f"{main['status'].get('phase')}, {succeeded:,}"],
        ["wall time, creation to Succeeded", f"{main['elapsed']:.1f} s"],
        ["trials per second", f"{succeeded / main['elapsed']:.1f}"],
        ["operator API requests per trial", f"{sum(operator.values()) / max(1, n):.2f}"],
        ["operator CPU per trial", f"{main['cpu'] / max(1, n) * 1000:.1f} ms"],
        ["API server (emulator + fake cluster) CPU per trial",
         f"{stats['cpu'] / max(1, n) * 1000:.1f} ms"],
        [f"final report -> next Job created, p50 / p99 ({p:,} in flight, queueing)",
         f"{ms(heavy_lat, 0.5)} / {ms(heavy_lat, 0.99)}"],
        [f"same, light load ({light['max_trials']} trials, {light['parallelism']} in flight)",
         f"{ms(light_lat, 0.5)} / {ms(light_lat, 0.99)}"],
        ["operator RSS before the searches / peak", f"{result['rss_before'] / 2**20:.0f} MiB / "
                                                    f"{main['rss_peak'] / 2**20:.0f} MiB"],
        ["API server (emulator) RSS at the end", f"{stats['rss'] / 2**20:.0f} MiB"],
        ["cluster-side errors", str(len(stats["errors"])) + (
            f" (first: {stats['errors'][0]})" if stats["errors"] else "")],
    ]
    rows = sorted(((v, r, c, c / max(1, n)) for (v, r), c in operator.items()),
                  key=lambda row: -row[2])
    return (format_table(["figure", "value"], summary) + "\n\n"
            + "Operator API requests during the main search (kopf's and its own):\n\n"
            + format_table(["verb", "resource", "requests", "per trial"],
                           [[v, r, c, f"{per:.3f}"] for v, r, c, per in rows])
            + "\n\n" + headline(
                f"**Operator** on a Kubernetes API emulator ({n:,} simulated trials, {p:,} in flight): "
                f"{sum(operator.values()) / max(1, n):.2f} API requests and {main['cpu'] / max(1, n) * 1000:.1f} ms "
                f"operator CPU per trial, final report to next Job p50 {ms(light_lat, 0.5)} at light load, "
                f"operator RSS {main['rss_peak'] / 2**20:.0f} MiB peak."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 trials, parallelism 100")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, help="maxTrials (default 10,000; quick 600)")
    parser.add_argument("--parallelism", type=int, help="parallelism (default 1,000; quick 100)")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    n, p = SIZES["quick" if args.quick else "full"]
    result = asyncio.run(bench(args.trials or n, args.parallelism or p))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
