"""Prometheus metrics: the exact names and labels the dashboard relies on, registries that do
not leak between instances, and ``forget`` dropping a search's series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from nas_operator.metrics import (
    REWARD_BUCKETS,
    OperatorMetrics,
    metric_family_names,
    metric_series_names,
)
from nas_operator.testing import SimulatedOutcome
from tests.support.loop_harness import Harness, make_search

EXPECTED = [
    "kubenas_trials_total", "kubenas_trials_running", "kubenas_trials_pending",
    "kubenas_trial_duration_seconds", "kubenas_reward", "kubenas_best_reward",
    "kubenas_front_size", "kubenas_front_hypervolume", "kubenas_controller_updates_total", "kubenas_controller_entropy",
    "kubenas_controller_baseline", "kubenas_controller_update_duration_seconds",
    "kubenas_checkpoint_size_bytes", "kubenas_status_api_reports_total", "kubenas_searches",
    "kubenas_build_info", "kubenas_trials_early_stopped_total", "kubenas_epochs_saved_total",
    "kubenas_trials_infeasible_total",
]  # fmt: skip


def samples(metrics: OperatorMetrics) -> dict[str, list]:
    body, _ = metrics.exposition()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_family_names_are_the_contract():
    assert metric_family_names() == EXPECTED
    series = metric_series_names()
    assert "kubenas_reward_bucket" in series and "kubenas_trials_total" in series


def test_reward_buckets_cover_unit_interval():
    assert REWARD_BUCKETS[0] == 0.0 and REWARD_BUCKETS[-2] == 1.0
    assert REWARD_BUCKETS[-1] == float("inf")


async def test_a_search_exports_every_family_with_the_right_labels():
    metrics = OperatorMetrics()
    h = Harness(make_search(budget={"maxTrials": 4, "parallelism": 2}),
                lambda req: SimulatedOutcome(fail="boom") if req.trial.endswith("3") and
                req.attempt == 0 else SimulatedOutcome(metrics=[{"val_accuracy": 0.7}]),
                metrics=metrics.for_search("ns", "s"))
    from nas_operator.checkpoint import MemoryCheckpointStore

    h.loop.store = MemoryCheckpointStore()
    try:
        await h.run()
    finally:
        await h.close()
    metrics.report("accepted")
    metrics.set_search_phases(["Succeeded"])
    got = samples(metrics)
    for name in metric_series_names():
        if name.endswith("_created") or name in ("kubenas_controller_entropy",
                                                  "kubenas_controller_baseline",
                                                  "kubenas_front_size",
                                                  "kubenas_front_hypervolume"):
            continue  # random search has no entropy or baseline; one objective has no front
        assert name in got, name
    search_labels = {"namespace": "ns", "search": "s"}
    outcomes = {s.labels["outcome"]: s.value for s in got["kubenas_trials_total"]}
    assert outcomes == {"succeeded": 4.0, "retried": 1.0, "failed": 0.0, "cancelled": 0.0}
    for s in got["kubenas_trials_total"]:
        assert set(s.labels) == {"namespace", "search", "outcome"}
    for name in ("kubenas_trials_running", "kubenas_trials_pending", "kubenas_best_reward",
                 "kubenas_checkpoint_size_bytes"):
        [s] = got[name]
        assert s.labels == search_labels
    assert got["kubenas_best_reward"][0].value == 0.7**3
    assert got["kubenas_trials_running"][0].value == 0
    assert got["kubenas_checkpoint_size_bytes"][0].value > 0
    reward_count = [s for s in got["kubenas_reward_count"]][0]
    assert reward_count.value == 4
    assert {s.labels["result"] for s in got["kubenas_status_api_reports_total"]} == {
        "accepted", "duplicate", "bad_request", "unauthorized", "forbidden", "not_found",
        "conflict", "unavailable"}
    phases = {s.labels["phase"]: s.value for s in got["kubenas_searches"]}
    assert phases["Succeeded"] == 1 and phases["Running"] == 0
    [info] = got["kubenas_build_info"]
    assert info.value == 1 and set(info.labels) == {"version"}
    assert "process_cpu_seconds_total" in got or "python_info" in got


def test_registries_are_independent_and_forget_drops_one_search():
    a, b = OperatorMetrics(process_collectors=False), OperatorMetrics(process_collectors=False)
    one, two = a.for_search("ns", "one"), a.for_search("ns", "two")
    for m in (one, two):
        m.trial_outcome("succeeded")
        m.set_counts(1, 2)
        m.observe_duration(3.0)
        m.observe_reward(0.5)
        m.set_best(0.5)
        m.controller(3, 1.2, 0.4)
        m.observe_update_duration(0.01)
        m.set_checkpoint_size(100)
    assert "kubenas_trials_total" not in samples(b)  # nothing leaks into b
    a.forget("ns", "one")
    got = samples(a)
    for name, entries in got.items():
        if name.startswith("kubenas_") and not name.startswith(
                ("kubenas_searches", "kubenas_build_info", "kubenas_status_api_reports")):
            searches = {s.labels.get("search") for s in entries}
            assert searches == {"two"}, name
    a.forget("ns", "never-existed")  # no error


def test_controller_updates_count_the_change_only():
    m = OperatorMetrics(process_collectors=False)
    s = m.for_search("ns", "s")
    s.controller(2, None, None)
    s.controller(2, None, None)
    s.controller(5, None, None)
    value = m.registry.get_sample_value("kubenas_controller_updates_total",
                                        {"namespace": "ns", "search": "s"})
    assert value == 5
