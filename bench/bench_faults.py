"""Faults a week-long search meets: the operator and ``kubenas run`` SIGKILLed again and again,
and hostile requests to the status API. Figures: kills, trials, duplicate Jobs, lost rewards,
5xx answers (each of the last three should be 0; any other value is a bug).

* **operator**: the real operator (``nas_operator.kube.main.run``) in a child process against
  ``bench_operator``'s emulator + fake cluster (another child, up throughout). Its trainers
  retry their final report while no operator answers (as the real reporter does with its
  retries) and then complete their Job. The operator is SIGKILLed at random moments and
  started again on the same port; the search's checkpoint (ConfigMaps) is read at the end and
  every reward a trainer had accepted (200) must be in it, for the right trial.
* **status-API fuzz**, during the last operator's run: random and hostile requests (bodies
  of random bytes, deep or huge JSON, wrong types, non-finite and absurd metrics, forged,
  missing and other trials' tokens, odd methods, paths and headers) against the real
  status API on loopback; every answer is counted by class.
* **local runner**: ``kubenas run`` with the tests' fake trainer (``tests/support/
  fake_trainer.py``, slow epochs) SIGKILLed and resumed with ``--resume``; the run folder's
  trials.csv and attempt pid files are read at the end.

    python -m bench.bench_faults [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SIZES = {"full": {"trials": 400, "parallel": 20, "kills": 6, "kill_after": (0.3, 1.5),
                  "fuzz": 1000, "local_trials": 6, "local_kills": 2},
         "quick": {"trials": 150, "parallel": 8, "kills": 2, "kill_after": (0.1, 0.5),
                   "fuzz": 200, "local_trials": 4, "local_kills": 1}}
"""Per size: the search, how many SIGKILLs and how long (s) after the restarted operator
answers /healthz each comes (quick: soon, or its short search ends before the first kill)."""
FAKE_TRAINER = REPO / "tests" / "support" / "fake_trainer.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accuracy_of(trial: str) -> float:
    return round(0.5 + 0.4 * (int(trial[-4:]) * 7919 % 1000) / 1000, 6)


# --- child: emulator + a cluster whose trainers retry their report ------------------------------

def serve() -> None:
    import aiohttp

    from bench.bench_operator import BenchCluster, fast_emulator_class, serve_cluster
    from nas_operator.tokens import trial_token
    from tests.support.kube_emulator import JOBS, load_crd_manifests

    class RetryingCluster(BenchCluster):
        """Trainers that retry their final report until an operator takes it (or 120 s)."""

        accepted: dict[str, float] = {}
        jobs: Counter[str] = Counter()

        async def _play(self, job: dict[str, Any]) -> None:
            try:
                meta = job["metadata"]
                self.jobs[meta["name"]] += 1
                env = {e["name"]: e.get("value") for e in
                       job["spec"]["template"]["spec"]["containers"][0]["env"]}
                doc = json.loads(env["KUBENAS_TRIAL_JSON"])
                key = await self._key(meta["namespace"], doc["search"])
                token = trial_token(key, meta["namespace"], doc["search"], doc["trial"])
                accuracy = accuracy_of(doc["trial"])
                report = {"kind": "final", "trial": doc["trial"], "attempt": doc["attempt"],
                          "metrics": {"val_accuracy": accuracy},
                          "epochs": [{"val_accuracy": accuracy}]}
                deadline = time.monotonic() + 120
                status = None
                while time.monotonic() < deadline:
                    try:
                        async with self.session.post(env["KUBENAS_REPORT_URL"], json=report,
                                                     headers={"Authorization": f"Bearer {token}"}
                                                     ) as response:
                            status = response.status
                    except (TimeoutError, OSError, aiohttp.ClientError):
                        status = None  # refused, or the operator died mid-request: retry
                    if status is not None and status < 500 and status != 404:
                        break
                    await asyncio.sleep(0.3)
                if status == 200:
                    self.accepted[doc["trial"]] = accuracy
                else:
                    self.errors.append(f"{doc['trial']}: report answered {status}")
                await self.server.call(self.server.emulator.patch_object, JOBS, meta["namespace"],
                                       meta["name"], {"status": {"succeeded": 1, "conditions": [
                                           {"type": "Complete", "status": "True"}]}},
                                       subresource="status")
            except Exception as exc:  # noqa: BLE001 - reported in the figures
                self.errors.append(repr(exc))

    emulator = fast_emulator_class()(crds=load_crd_manifests(REPO / "crds"), history_limit=50_000)

    def stats(cluster: RetryingCluster) -> dict[str, Any]:
        creates = sum(n for (v, r, _a), n in emulator.api_calls.items()
                      if v == "create" and r == "jobs.batch")
        return {"accepted": cluster.accepted, "jobs": dict(cluster.jobs),
                "errors": cluster.errors[:5], "n_errors": len(cluster.errors),
                "job_creates": creates}

    serve_cluster(emulator, RetryingCluster, stats)


def run_operator(url: str, port: int) -> None:
    """Child: the operator, until killed."""
    import logging

    import kopf

    from nas_operator.kube.config import OperatorConfig
    from nas_operator.kube.main import run

    logging.basicConfig(level=logging.ERROR)
    config = OperatorConfig(http_host="127.0.0.1", http_port=port, status_interval=1.0)
    asyncio.run(run(config, connection=kopf.ConnectionInfo(server=url)))


# --- the fuzz -------------------------------------------------------------------------------------

def hostile_bodies(rng: random.Random, trial: str, attempt: int) -> list[bytes]:
    base = {"trial": trial, "attempt": attempt}
    deep = "[" * 30_000 + "]" * 30_000
    return [
        bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 512))),
        b"", b"null", b"[]", b"\"final\"", b"{", deep.encode(),
        ('{"kind":"final","metrics":' + deep + "}").encode(),
        b"{" + b'"a":1,' * 20_000 + b'"b":2}',
        json.dumps({"kind": "final", **base, "metrics": {"val_accuracy": 1e300}}).encode(),
        json.dumps({"kind": "final", **base, "metrics": {"val_accuracy": 1e13}}).encode(),
        json.dumps({"kind": "final", **base, "metrics": {"val_accuracy": -5}}).encode(),
        json.dumps({"kind": "final", **base, "metrics": {"val_accuracy": "0.5"}}).encode(),
        b'{"kind":"final","trial":"' + trial.encode() + b'","attempt":0,"metrics":'
        b'{"val_accuracy":NaN}}',
        b'{"kind":"final","trial":"' + trial.encode() + b'","attempt":0,"metrics":'
        b'{"val_accuracy":Infinity}}',
        json.dumps({"kind": "epoch", **base, "epoch": 10**15, "metrics": {"loss": 1}}).encode(),
        json.dumps({"kind": "final", **base, "attempt": 2**70, "metrics": {}}).encode(),
        json.dumps({"kind": "final", "trial": "x" * 100_000, "attempt": 0}).encode(),
        json.dumps({"kind": rng.choice(["final", "epoch", "failed", "??"]), **base,
                    "metrics": {rng.choice(["val_accuracy", "", "\x00", "a" * 300]):
                                rng.choice([0.5, None, [], {}, True, 1e-320])}}).encode(),
        os.urandom(70_000),
    ]


async def fuzz(report_url: str, status_base: str, tokens: dict[str, str], count: int,
               seed: int) -> Counter[str]:
    """``count`` hostile requests; answers by class (and connection errors)."""
    import aiohttp

    rng = random.Random(seed)
    answers: Counter[str] = Counter()
    trials = sorted(tokens)
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            trial = rng.choice(trials)
            body = rng.choice(hostile_bodies(rng, trial, 0)) if i % 25 else os.urandom(2_000_000)
            token = rng.choice([tokens[trial], tokens[rng.choice(trials)], "", "x" * 10_000,
                                tokens[trial][:-1] + "0", "\x7f\x80"])
            headers = {"Authorization": rng.choice([f"Bearer {token}", token, "Basic abc", ""]),
                       "Content-Type": rng.choice(["application/json", "text/plain", "",
                                                   "application/json; charset=latin-1"])}
            if rng.random() < 0.05:
                headers["X-Junk"] = "y" * rng.choice([10, 7000])
            method = rng.choice(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH"])
            url = rng.choice([report_url] * 8 + [status_base + p for p in (
                "/metrics", "/healthz", "/readyz", "/v1/reports/../x", "/%00", "/" + "a" * 5000)])
            try:
                async with session.request(method, url, data=body, headers={
                        k: v for k, v in headers.items() if v.isascii()}) as response:
                    await response.read()
                    if response.status == 503 and url.endswith("/readyz"):
                        # the readiness probe's own answer while a search restores: not an error
                        answers["readyz 503 (not ready yet)"] += 1
                        continue
                    answers[f"{response.status // 100}xx"] += 1
                    if response.status >= 500:
                        answers[f"5xx: {response.status} {method} {url[:60]}"] += 1
            except (aiohttp.ClientError, OSError) as exc:
                answers[f"connection: {type(exc).__name__}"] += 1
    return answers


# --- the operator run -------------------------------------------------------------------------

async def operator_faults(size: dict[str, int], seed: int) -> dict[str, Any]:
    import aiohttp

    from bench.bench_operator import _ask
    from nas_operator.checkpoint import decode_checkpoint
    from nas_operator.kube.api import KubeApi
    from nas_operator.kube.checkpoint_store import ConfigMapCheckpointStore
    from nas_operator.tokens import decode_key, trial_token

    rng = random.Random(seed)
    child = subprocess.Popen([sys.executable, "-m", "bench.bench_faults", "--serve"], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    url = json.loads(child.stdout.readline())["url"]
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "bench.bench_faults", "--operator", url,
                                 str(port)], cwd=REPO, stderr=subprocess.DEVNULL)

    search = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
              "metadata": {"name": "faults", "namespace": "default"},
              "spec": {"searchSpace": {"type": "nasnet"},
                       "strategy": {"type": "random", "seed": seed},
                       "budget": {"maxTrials": size["trials"], "parallelism": size["parallel"],
                                  "maxFailedTrials": size["trials"]},
                       "trial": {"retries": 2}}}
    base = f"{url}/apis/kubenas.dev/v1alpha1/namespaces/default/nassearches"
    headers = {"User-Agent": "kubenas-tests", "Content-Type": "application/json"}
    kills = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(base, data=json.dumps(search)) as response:
            assert response.status == 201, await response.text()

        async def status() -> dict[str, Any]:
            async with session.get(f"{base}/faults") as response:
                return (await response.json()).get("status") or {}

        async def ready() -> None:
            """The status API answers: the operator has started (imports take a while)."""
            for _ in range(1200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            return
                except OSError:
                    pass
                await asyncio.sleep(0.25)

        operator = start()
        for _ in range(size["kills"]):
            await ready()
            await asyncio.sleep(rng.uniform(*size["kill_after"]))
            if (await status()).get("phase") in ("Succeeded", "Failed"):
                break
            operator.send_signal(signal.SIGKILL)
            operator.wait()
            kills += 1
            operator = start()
        killed_at = (await status()).get("trials", {}).get("succeeded", 0)
        # fuzz the last operator's status API while the search runs on (once it answers: a
        # restarted operator takes seconds to import, and a fuzz of a closed port tests nothing)
        await ready()
        while not (await status()).get("trials", {}).get("total"):
            await asyncio.sleep(0.5)
        async with session.get(f"{url}/api/v1/namespaces/default/secrets/faults-tokens") as r:
            key = decode_key(base64.b64decode((await r.json())["data"]["search-key"]))
        async with session.get(f"{url}/apis/batch/v1/namespaces/default/jobs?limit=1") as r:
            env = {e["name"]: e.get("value") for e in (await r.json())["items"][0]["spec"][
                "template"]["spec"]["containers"][0]["env"]}
        tokens = {f"faults-t{i:04d}": trial_token(key, "default", "faults", f"faults-t{i:04d}")
                  for i in range(0, size["trials"], max(1, size["trials"] // 20))}
        answers = await fuzz(env["KUBENAS_REPORT_URL"], f"http://127.0.0.1:{port}", tokens,
                             size["fuzz"], seed)
        t0 = time.monotonic()
        final = await status()
        while final.get("phase") not in ("Succeeded", "Failed") and time.monotonic() - t0 < 900:
            await asyncio.sleep(1.0)
            final = await status()
    stats = _ask(child, "stats")
    assert stats is not None
    api = KubeApi(url)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{base}/faults") as r:
            owner = await r.json()
        blob = await ConfigMapCheckpointStore(api, "default", owner).load("faults")
    finally:
        await api.close()
    operator.send_signal(signal.SIGTERM)
    try:
        operator.wait(60)
    except subprocess.TimeoutExpired:
        operator.kill()
    _ask(child, "quit")
    child.wait(30)
    assert blob is not None
    records = decode_checkpoint(blob).state["ledger"]["trials"]["search"]
    rewards = {f"faults-t{i:04d}": (body[2] if tag == 1 else body.get("reward"))
               for i, (tag, body) in enumerate(records)}
    lost = [t for t, acc in stats["accepted"].items()
            if rewards.get(t) is None or abs(rewards[t] - acc ** 3) > 1e-6]
    trials_of = Counter(name.rsplit("-a", 1)[0] for name in stats["jobs"])
    return {"kills": kills, "succeeded_at_last_kill": killed_at, "status": final,
            "accepted": len(stats["accepted"]), "lost": lost,
            "duplicate_jobs": sum(n - 1 for n in stats["jobs"].values() if n > 1),
            "relaunched": sum(1 for n in trials_of.values() if n > 1),
            "jobs": len(stats["jobs"]), "job_creates": stats["job_creates"],
            "cluster_errors": stats["n_errors"], "first_errors": stats["errors"],
            "answers": dict(answers)}


# --- the local runner -------------------------------------------------------------------------

def local_faults(size: dict[str, int], seed: int) -> dict[str, Any]:
    import csv

    rng = random.Random(seed)
    n = size["local_trials"]
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"apiVersion": "kubenas.dev/v1alpha1", "kind": "NASSearch",
                "metadata": {"name": "lkill"},
                "spec": {"searchSpace": {"type": "zoph-le-cnn",
                                         "options": {"layers": 2, "filterChoices": [4, 8]}},
                         "strategy": {"type": "reinforce", "batchSize": 2, "seed": seed},
                         "objective": {"lastEpochs": 1},
                         "budget": {"maxTrials": n, "parallelism": 3},
                         "trial": {"dataset": {"name": "digits"},
                                   "training": {"epochs": 3}, "retries": 1}}}
        path = Path(tmp) / "s.yaml"
        path.write_text(yaml.safe_dump(spec))
        out = Path(tmp) / "run"
        env = {**os.environ, "FAKE_TRAINER_PLAN": json.dumps({str(i): ["slow"] for i in range(n)}),
               "FAKE_EPOCH_SECONDS": "0.5"}
        trainer = ["--trainer-command", f"{sys.executable} {FAKE_TRAINER}", "--quiet"]
        kubenas = [sys.executable, "-m", "nas_operator.cli", "run"]
        kills = 0
        args = [*kubenas, str(path), "--out", str(out), *trainer]
        for _ in range(size["local_kills"]):
            proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            before = len(list(out.glob("trials/*/a*/pid")))
            for _ in range(1200):  # until it has started a trainer (imports take a while)
                if proc.poll() is not None or len(list(out.glob("trials/*/a*/pid"))) > before:
                    break
                time.sleep(0.25)
            time.sleep(rng.uniform(0.5, 3.0))
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            args = [*kubenas, "--resume", str(out), *trainer]
        code = subprocess.run(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=600, check=False)
        with open(out / "trials.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        attempts = Counter(p.parent.parent.name for p in (out / "trials").glob("*/a*/pid"))
    succeeded = [r for r in rows if r.get("state", r.get("phase")) == "Succeeded"]
    expected = {f"lkill-t{i:04d}": round(0.30 + 0.05 * i + 0.02, 4) for i in range(n)}
    lost = [t for t in expected if not any(r["trial"] == t and abs(
        float(r.get("val_accuracy") or "nan") - expected[t]) < 1e-6 for r in succeeded)]
    return {"kills": kills, "exit": code.returncode, "error": code.stderr[-500:],
            "rows": len(rows), "succeeded": len(succeeded), "lost": lost,
            "attempts": sum(attempts.values()), "trials_run_twice": sum(
                1 for v in attempts.values() if v > 1), "columns": list(rows[0]) if rows else []}


def report(op: dict[str, Any], local: dict[str, Any], size: dict[str, int], seed: int) -> str:
    from bench.table import format_table

    answers = op["answers"]
    fives = {k: v for k, v in answers.items() if k.startswith("5xx:")}
    trials = op["status"].get("trials") or {}
    rows = [
        ["operator: SIGKILLs (each {:g}-{:g} s after the restarted operator answers /healthz)"
         .format(*size["kill_after"]), str(op["kills"])],
        ["operator: search phase; trials succeeded / failed",
         f"{op['status'].get('phase')}; {trials.get('succeeded', 0)} / {trials.get('failed', 0)} "
         f"of {size['trials']} ({size['parallel']} in flight, retries 2)"],
        ["operator: rewards accepted (200) by some operator", str(op["accepted"])],
        ["operator: lost rewards (accepted, not in the checkpoint)", str(len(op["lost"]))
         + (f" ({op['lost'][:5]})" if op["lost"] else "")],
        ["operator: duplicate Jobs (a Job name created twice)", str(op["duplicate_jobs"])],
        ["operator: trials launched in more than one attempt", str(op["relaunched"])],
        ["operator: Jobs / Job creates answered by the API", f"{op['jobs']} / {op['job_creates']}"],
        ["operator: trainer-side errors", str(op["cluster_errors"])
         + (f" (first: {op['first_errors'][0][:120]})" if op["first_errors"] else "")],
        ["status-API fuzz: requests (hostile bodies, tokens, headers, methods, paths)",
         str(size["fuzz"])],
        ["status-API fuzz: answers by class", ", ".join(
            f"{k} {v}" for k, v in sorted(answers.items()) if not k.startswith("5xx:"))],
        ["status-API fuzz: 5xx answers", str(sum(fives.values()))
         + (f" ({list(fives)[:3]})" if fives else "")],
        ["local runner: SIGKILLs then --resume (0.5-3 s after it starts a trainer)", str(local["kills"])],
        ["local runner: final exit; trials in trials.csv / succeeded",
         f"{local['exit']}; {local['rows']} / {local['succeeded']} of {size['local_trials']}"],
        ["local runner: lost rewards", str(len(local["lost"]))
         + (f" ({local['lost'][:5]})" if local["lost"] else "")],
        ["local runner: trainer attempts started / trials run more than once",
         f"{local['attempts']} / {local['trials_run_twice']}"],
    ]
    return (f"Seed {seed}. The operator section's search is random on nasnet (a controller's build can pass the 20 s build limit on a loaded machine), with with instant "
            "fake trials; the local section's trainer is tests/support/fake_trainer.py (3 "
            "epochs of 0.5 s). Kill times are random (seeded), so the counts vary run to "
            "run; lost rewards, duplicate Jobs and 5xx answers must be 0 in every run.\n\n"
            + format_table(["figure", "value"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--operator", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.operator:
        run_operator(args.operator[0], int(args.operator[1]))
        return 0
    size = SIZES["quick" if args.quick else "full"]
    op = asyncio.run(operator_faults(size, args.seed))
    local = local_faults(size, args.seed)
    print(report(op, local, size, args.seed))
    bad = op["lost"] or local["lost"] or op["duplicate_jobs"] or any(
        k.startswith("5xx:") for k in op["answers"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
