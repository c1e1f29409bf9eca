"""The operator's /metrics on the Kubernetes emulator, scraped by a real Prometheus that
also evaluates the chart's alert rules.

The real operator runs a REINFORCE search against the emulator (tests/support/kube_emulator.py;
the fake cluster plays the Job controller, the kubelet and the trainers, one attempt fails
and is retried). Prometheus scrapes the operator's status API every 0.5 s with the target
labels and ``honor_labels`` of the chart's ServiceMonitor, and evaluates the rendered
PrometheusRule. Every dashboard query must return series, the totals must equal the
NASSearch status the operator wrote, no alert fires on the healthy search, a failed search
fires KubenasSearchFailed, and deleting a search removes its series (they go stale). See
docs/monitoring.md.

Prometheus' HTTP API is called from threads: the operator shares this test's event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
import yaml

from nas_operator.monitoring.prometheus import Prometheus, free_port
from tests.support.kube_emulator import NASSEARCHES, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    document_of,
    search_manifest,
    wait_for,
)
from tests.support.prometheus import (
    SCRAPE_INTERVAL,
    binary,
    data_panels,
    finite,
    grafana_query,
    rendered_rule_groups,
)

kube = crd_test_bed()
JOB = "kubenas"
"""The job name the chart's ServiceMonitor gives (the release's full name), as the alert
KubenasOperatorDown expects; the target labels are those it adds."""
TARGET_LABELS = {"namespace": "kubenas-system", "pod": "kubenas-operator-0"}
MAX_TRIALS, PARALLELISM, BATCH = 8, 4, 4

MULTI_OBJECTIVE_ONLY = {"Pareto front size", "Front hypervolume"}
"""Panels of gauges only a multi-objective search sets."""


async def _trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
    doc = document_of(job)
    if doc["trial"].startswith("doomed-"):  # every attempt of this search fails
        await cluster.run(job)
        await cluster.terminate(job, 1, "out of memory")
        return
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
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rendered_rule_groups("monitoring.yaml")}))
    prom = Prometheus(binary("prometheus"), tmp_path, {JOB: [f"127.0.0.1:{bed.port}"]},
                      interval=SCRAPE_INTERVAL, rule_files=[rules], target_labels=TARGET_LABELS)
    booted = time.time()
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
                if panel["title"] in MULTI_OBJECTIVE_ONLY:
                    continue  # this search has one objective: no front (tests/monitoring/
                    # test_prometheus_dashboard.py checks these on a multi-objective search)
                for target in panel["targets"]:
                    expr = grafana_query(target["expr"], window=window, rate_interval=window,
                                         interval=window)
                    answers[expr] = await asyncio.to_thread(query, expr)
                    assert answers[expr], f"{panel['title']!r}: no series for {expr}"
            # the counters themselves (the operator started with this test): increase() misses
            # a retry that happened before Prometheus' first scrape of the operator
            outcomes = await asyncio.to_thread(query, 'kubenas_trials_total{search="watched"}')
            best = await asyncio.to_thread(query, 'kubenas_best_reward{search="watched"}')
            updates = await asyncio.to_thread(
                query, f'increase(kubenas_controller_updates_total{{search="watched"}}[{window}])')
            accepted = await asyncio.to_thread(
                query, f'increase(kubenas_status_api_reports_total{{result="accepted"}}[{window}])')
            phases = await asyncio.to_thread(query, "kubenas_searches")
            running = await asyncio.to_thread(
                prom.query_range, 'kubenas_trials_running{search="watched"}', started, at, 0.5)
            memory = await asyncio.to_thread(query, "process_resident_memory_bytes")
            fired = await asyncio.to_thread(
                prom.query_range, 'ALERTS{alertstate="firing"}', started, at, 0.5)
            alerts_at_end = await asyncio.to_thread(query, "ALERTS")
            pending = await asyncio.to_thread(
                prom.query_range, 'ALERTS{alertstate="pending"}', booted, at, 0.5)

            await kube.client.create(NASSEARCHES, search_manifest(
                "doomed", budget={"maxTrials": 2, "parallelism": 1, "maxFailedTrials": 0},
                trial={"retries": 0}))
            await bed.wait_phase("doomed", "Failed", timeout=60)
            failed_at = await _scrape_after(prom, time.time() + SCRAPE_INTERVAL)

            async def firing() -> list[Any]:
                return await asyncio.to_thread(
                    prom.query, 'ALERTS{alertname="KubenasSearchFailed", alertstate="firing"}')

            search_failed = await wait_for(firing, timeout=20, message="KubenasSearchFailed")

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
        # The ServiceMonitor's target labels, while the series keep their own namespace.
        assert {s.labels["pod"] for s in memory} == {TARGET_LABELS["pod"]}
        assert {s.labels["namespace"] for s in best} == {"default"}
        assert fired == [], f"alerts fired on a healthy search: {[s.labels for s in fired]}"
        assert alerts_at_end == [], [s.labels for s in alerts_at_end]
        # Before the operator served /metrics, KubenasOperatorDown was pending (its `for` is
        # 10 minutes): the rule matches this job and namespace, and it cleared once scraped.
        assert {s.labels["alertname"] for s in pending} == {"KubenasOperatorDown"}
        assert max(x.t for s in pending for x in s.samples) < at - 1
        [alert] = search_failed
        assert alert.labels["severity"] == "critical" and alert.labels["phase"] == "Failed"
        assert alert.samples[0].t >= failed_at - 2 * SCRAPE_INTERVAL
    finally:
        prom.stop()
