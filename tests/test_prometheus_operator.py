"""The operator's /metrics on the Kubernetes emulator, scraped by a real Prometheus.

The real operator runs a REINFORCE search against the emulator (tests/kube_emulator.py;
the fake cluster plays the Job controller, the kubelet and the trainers, one attempt fails
and is retried). Prometheus scrapes the operator's status API every 0.5 s. Every dashboard
query must return series, and the totals must equal the NASSearch status the operator wrote;
deleting the search removes its series (they go stale). See docs/monitoring.md.

Prometheus' HTTP API is called from threads: the operator shares this test's event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from kube_emulator import NASSEARCHES, KubeTestBed
from prometheus_support import SCRAPE_INTERVAL, binary, data_panels, finite, grafana_query
from test_operator_support import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    search_manifest,
    wait_for,
)

from nas_operator.monitoring.prometheus import Prometheus, free_port

kube = crd_test_bed()
JOB = "kubenas"
MAX_TRIALS, PARALLELISM, BATCH = 8, 4, 4


async def _trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
    doc = document_of(job)
    if doc["trial"].endswith("t0002") and doc["attempt"] == 0:  # one attempt fails, retried
        await cluster.run(job)
        await cluster.terminate(job, 1, "trainer crashed")
        return
    await cluster.run(job)
    await asyncio.sleep(1.5)  # running for a few scrapes
    await cluster.succeed(job)


async def _scrape_after(prom: Prometheus, moment: float) -> float:
    """The time of the first successful scrape that began after ``moment``."""

    async def scraped() -> float | None:
        ups = await asyncio.to_thread(prom.scrape_times, JOB, moment)
        return next((s.t for s in ups if s.v == 1 and s.t > moment), None)

    return await wait_for(scraped, timeout=20, message=f"a scrape after {moment}")


async def test_prometheus_scrapes_the_operator_on_the_emulator(kube: KubeTestBed,
                                                               tmp_path) -> None:
    bed = OperatorBed(kube)
    bed.port = free_port()
    prom = Prometheus(binary("prometheus"), tmp_path, {JOB: [f"127.0.0.1:{bed.port}"]},
                      interval=SCRAPE_INTERVAL)
    await asyncio.to_thread(prom.start)
    try:
        await asyncio.to_thread(prom.wait_for_targets)
        started = time.time()
        manifest = search_manifest("watched", budget={"maxTrials": MAX_TRIALS,
                                                      "parallelism": PARALLELISM},
                                   strategy={"batchSize": BATCH})
        async with FakeCluster(kube, _trainer) as cluster, bed.running():
            await kube.client.create(NASSEARCHES, manifest)
            done = await bed.wait_phase("watched", "Succeeded", "Failed", timeout=90)
            at = await _scrape_after(prom, time.time())
            window = f"{math.ceil(at - started) + 5}s"

            def query(expr: str) -> list[Any]:
                return prom.query(expr, at=at)

            answers = {}
            for panel in data_panels():
                for target in panel["targets"]:
                    expr = grafana_query(target["expr"], window=window, rate_interval=window,
                                         interval=window)
                    answers[expr] = await asyncio.to_thread(query, expr)
                    assert answers[expr], f"{panel['title']!r}: no series for {expr}"
            outcomes = await asyncio.to_thread(
                query, f'increase(kubenas_trials_total{{search="watched"}}[{window}])')
            best = await asyncio.to_thread(query, 'kubenas_best_reward{search="watched"}')
            updates = await asyncio.to_thread(
                query, f'increase(kubenas_controller_updates_total{{search="watched"}}[{window}])')
            accepted = await asyncio.to_thread(
                query, f'increase(kubenas_status_api_reports_total{{result="accepted"}}[{window}])')
            phases = await asyncio.to_thread(query, "kubenas_searches")
            running = await asyncio.to_thread(
                prom.query_range, 'kubenas_trials_running{search="watched"}', started, at, 0.5)

            await kube.client.delete(NASSEARCHES, "watched")

            async def gone() -> bool:
                return await bed.search("watched") is None

            await wait_for(gone, message="the deleted search to go")
            after = await _scrape_after(prom, time.time())
            forgotten = await asyncio.to_thread(
                prom.query, 'kubenas_best_reward{search="watched"}', after)

        status = done["status"]
        assert status["phase"] == "Succeeded", status
        got = {s.labels["outcome"]: s.last for s in outcomes}
        assert got == pytest.approx({"succeeded": status["trials"]["succeeded"],
                                     "failed": status["trials"]["failed"], "cancelled": 0,
                                     "retried": 1}, abs=1e-6)
        assert status["trials"]["succeeded"] == MAX_TRIALS
        assert [s.last for s in best] == [pytest.approx(status["best"]["reward"], rel=1e-12)]
        assert [s.last for s in updates] == [pytest.approx(status["controller"]["updates"],
                                                           abs=1e-6)]
        assert status["controller"]["updates"] == MAX_TRIALS // BATCH
        reports = sum(1 for _, code, _ in cluster.responses if code == 200)
        assert reports == MAX_TRIALS and accepted[0].last == pytest.approx(reports, abs=1e-6)
        assert {s.labels["phase"]: s.last for s in phases}["Succeeded"] == 1
        seen_running = finite(running)
        assert max(seen_running) == PARALLELISM and min(seen_running) >= 0, seen_running
        assert forgotten == [], "a deleted search's series are dropped (stale in Prometheus)"
    finally:
        prom.stop()
