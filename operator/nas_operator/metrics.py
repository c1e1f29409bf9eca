"""Prometheus metrics of the operator and the local runner.

The names below are a contract: the Grafana dashboard's PromQL uses them, and
a test checks that it names nothing else (``metric_family_names``). Labels are
``namespace`` and ``search`` unless noted, so a dashboard can pick one search;
status-API results are labelled by result only, so a stranger POSTing to
made-up searches cannot grow the label set.

Each ``OperatorMetrics`` owns its own ``CollectorRegistry`` (plus the process
and platform collectors), never the global one: tests and several runners in
one process stay independent. ``forget`` drops every series of a finished or
deleted search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

try:
    VERSION = version("kubenas")
except PackageNotFoundError:
    VERSION = "0.0.0+unknown"

TRIAL_OUTCOMES = ("succeeded", "failed", "retried", "cancelled")
EARLY_STOPPING_RULES = ("median", "successive-halving")
"""The ``rule`` label of ``kubenas_trials_early_stopped_total``."""
INFEASIBLE_LIMITS = ("maxParams", "maxFlops", "both", "uncountable")
"""The ``limit`` label of ``kubenas_trials_infeasible_total``: which of objective.constraints
a refused proposal broke (``both``; ``uncountable``: its size could not be counted)."""
REPORT_RESULTS = (
    "accepted", "duplicate", "bad_request", "unauthorized", "forbidden", "not_found", "conflict",
    "unavailable",
)  # fmt: skip
"""``unavailable``: a 503 for a search still loading after a restart (the trainer retries)."""
SEARCH_PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
REWARD_BUCKETS = tuple(round(0.05 * i, 2) for i in range(0, 21)) + (float("inf"),)
"""Rewards of the papers' transforms lie in [0, 1] (cube of an accuracy, 80/ppl^2 for ppl > 9)."""
DURATION_BUCKETS = (
    1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400, float("inf"),
)  # fmt: skip
UPDATE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))

METRIC_FAMILIES: tuple[str, ...] = (
    "kubenas_trials_total",
    "kubenas_trials_running",
    "kubenas_trials_pending",
    "kubenas_trial_duration_seconds",
    "kubenas_reward",
    "kubenas_best_reward",
    "kubenas_front_size",
    "kubenas_front_hypervolume",
    "kubenas_controller_updates_total",
    "kubenas_controller_entropy",
    "kubenas_controller_baseline",
    "kubenas_controller_update_duration_seconds",
    "kubenas_checkpoint_size_bytes",
    "kubenas_status_api_reports_total",
    "kubenas_searches",
    "kubenas_build_info",
    "kubenas_trials_early_stopped_total",
    "kubenas_epochs_saved_total",
    "kubenas_trials_infeasible_total",
)
HISTOGRAMS = (
    "kubenas_trial_duration_seconds",
    "kubenas_reward",
    "kubenas_controller_update_duration_seconds",
)


def metric_family_names() -> list[str]:
    """The metric names as PromQL sees them (histograms: the base of _bucket/_sum/_count)."""
    return list(METRIC_FAMILIES)


def metric_series_names() -> list[str]:
    """Every sample name the exposition can contain (histogram and counter suffixes included)."""
    names: list[str] = []
    for name in METRIC_FAMILIES:
        if name in HISTOGRAMS:
            names += [f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"]
        elif name.endswith("_total"):
            names += [name, name[: -len("_total")] + "_created"]
        else:
            names.append(name)
    return names


SEARCH_LABELS = ("namespace", "search")


class SearchMetrics:
    """The series of one search, bound to its labels (what a loop writes to)."""

    def __init__(self, parent: OperatorMetrics, namespace: str, search: str):
        self.parent = parent
        self.labels = (namespace, search)
        self._updates_seen = 0
        # Counters and histograms start at zero so rate() works from the first scrape;
        # best reward, entropy, baseline stay absent until there is a value.
        for outcome in TRIAL_OUTCOMES:
            parent.trials_total.labels(*self.labels, outcome)
        for rule in EARLY_STOPPING_RULES:
            parent.early_stopped.labels(*self.labels, rule)
        for limit in INFEASIBLE_LIMITS:
            parent.infeasible.labels(*self.labels, limit)
        for metric in (parent.controller_updates, parent.trial_duration, parent.reward,
                       parent.controller_update_duration, parent.epochs_saved):
            metric.labels(*self.labels)
        self.set_counts(0, 0)

    def trial_outcome(self, outcome: str) -> None:
        self.parent.trials_total.labels(*self.labels, outcome).inc()

    def trial_infeasible(self, limit: str) -> None:
        """A proposal refused by objective.constraints, by what it broke."""
        if limit not in INFEASIBLE_LIMITS:
            raise ValueError(f"unknown limit {limit!r}; one of {INFEASIBLE_LIMITS}")
        self.parent.infeasible.labels(*self.labels, limit).inc()

    def set_counts(self, running: int, pending: int) -> None:
        self.parent.trials_running.labels(*self.labels).set(running)
        self.parent.trials_pending.labels(*self.labels).set(pending)

    def observe_duration(self, seconds: float) -> None:
        self.parent.trial_duration.labels(*self.labels).observe(max(0.0, seconds))

    def observe_reward(self, reward: float) -> None:
        self.parent.reward.labels(*self.labels).observe(reward)

    def set_best(self, reward: float) -> None:
        self.parent.best_reward.labels(*self.labels).set(reward)

    def set_front(self, size: int, hypervolume: float) -> None:
        """Multi-objective form: the Pareto front's size and hypervolume (absent otherwise)."""
        self.parent.front_size.labels(*self.labels).set(size)
        self.parent.front_hypervolume.labels(*self.labels).set(hypervolume)

    def controller(
        self, updates: int | None, entropy: float | None, baseline: float | None
    ) -> None:
        """Record a strategy summary; the updates counter advances by the change since last time."""
        if updates is not None and updates > self._updates_seen:
            self.parent.controller_updates.labels(*self.labels).inc(updates - self._updates_seen)
            self._updates_seen = updates
        if entropy is not None:
            self.parent.controller_entropy.labels(*self.labels).set(entropy)
        if baseline is not None:
            self.parent.controller_baseline.labels(*self.labels).set(baseline)

    def resume_updates(self, updates: int) -> None:
        """After a restore: the counter continues from here without counting old updates again."""
        self._updates_seen = updates

    def observe_update_duration(self, seconds: float) -> None:
        self.parent.controller_update_duration.labels(*self.labels).observe(seconds)

    def set_checkpoint_size(self, size: int) -> None:
        self.parent.checkpoint_size.labels(*self.labels).set(size)

    def early_stopped(self, rule: str, epochs_saved: int) -> None:
        """A trial stopped early by ``rule``, ``epochs_saved`` epochs before its last."""
        self.parent.early_stopped.labels(*self.labels, rule).inc()
        self.parent.epochs_saved.labels(*self.labels).inc(epochs_saved)


class OperatorMetrics:
    """Every metric family of one process, on a dedicated registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        version: str = VERSION,
        process_collectors: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        sl = SEARCH_LABELS
        self.trials_total = Counter(
            "kubenas_trials_total", "Trials (or attempts, for retried) by outcome.",
            [*sl, "outcome"], registry=r,
        )  # fmt: skip
        self.trials_running = Gauge("kubenas_trials_running", "Trials running now.", sl, registry=r)
        self.trials_pending = Gauge(
            "kubenas_trials_pending", "Trials waiting for a slot or for their pod.", sl, registry=r
        )
        self.trial_duration = Histogram(
            "kubenas_trial_duration_seconds", "Wall time of finished trial attempts.", sl,
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.reward = Histogram(
            "kubenas_reward", "Rewards of succeeded trials.", sl, buckets=REWARD_BUCKETS, registry=r
        )
        self.best_reward = Gauge("kubenas_best_reward", "Best reward so far.", sl, registry=r)
        self.front_size = Gauge(
            "kubenas_front_size", "Multi-objective search: trials on the Pareto front.", sl,
            registry=r,
        )
        self.front_hypervolume = Gauge(
            "kubenas_front_hypervolume", "Multi-objective search: hypervolume of the Pareto "
            "front against the reference point of status.front.referencePoint.", sl, registry=r,
        )
        self.controller_updates = Counter(
            "kubenas_controller_updates_total", "Controller (policy) updates.", sl, registry=r
        )
        self.controller_entropy = Gauge(
            "kubenas_controller_entropy", "Controller policy entropy (nats).", sl, registry=r
        )
        self.controller_baseline = Gauge(
            "kubenas_controller_baseline", "Controller reward baseline.", sl, registry=r
        )
        self.controller_update_duration = Histogram(
            "kubenas_controller_update_duration_seconds",
            "Time the strategy spends learning from results and proposing (off the event loop).",
            sl, buckets=UPDATE_BUCKETS, registry=r,
        )  # fmt: skip
        self.checkpoint_size = Gauge(
            "kubenas_checkpoint_size_bytes", "Size of the last checkpoint.", sl, registry=r
        )
        self.early_stopped = Counter(
            "kubenas_trials_early_stopped_total", "Trials stopped by spec.earlyStopping, by rule.",
            [*sl, "rule"], registry=r,
        )  # fmt: skip
        self.epochs_saved = Counter(
            "kubenas_epochs_saved_total", "Training epochs not run because trials were stopped "
            "early (GPU-epochs, one trial on one device).", sl, registry=r,
        )  # fmt: skip
        self.infeasible = Counter(
            "kubenas_trials_infeasible_total", "Proposals never trained because they broke "
            "spec.objective.constraints, by limit (they take no maxTrials budget).",
            [*sl, "limit"], registry=r,
        )  # fmt: skip
        self.reports_total = Counter(
            "kubenas_status_api_reports_total", "Trainer reports by result.", ["result"], registry=r
        )
        self.searches = Gauge("kubenas_searches", "Searches by phase.", ["phase"], registry=r)
        self.build_info = Gauge("kubenas_build_info", "Build information.", ["version"], registry=r)
        self.build_info.labels(version).set(1)
        for phase in SEARCH_PHASES:
            self.searches.labels(phase).set(0)
        for result in REPORT_RESULTS:
            self.reports_total.labels(result)

    def for_search(self, namespace: str, search: str) -> SearchMetrics:
        return SearchMetrics(self, namespace, search)

    def report(self, result: str) -> None:
        if result not in REPORT_RESULTS:
            raise ValueError(f"unknown report result {result!r}; one of {REPORT_RESULTS}")
        self.reports_total.labels(result).inc()

    def set_search_phases(self, phases: Iterable[str]) -> None:
        """Set ``kubenas_searches`` from the phases of every live search."""
        counts = dict.fromkeys(SEARCH_PHASES, 0)
        for phase in phases:
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            self.searches.labels(phase).set(n)

    def forget(self, namespace: str, search: str) -> None:
        """Remove every series of one search (it finished long ago or was deleted)."""
        labels = (namespace, search)
        for outcome in TRIAL_OUTCOMES:
            with contextlib.suppress(KeyError):
                self.trials_total.remove(*labels, outcome)
        for rule in EARLY_STOPPING_RULES:
            with contextlib.suppress(KeyError):
                self.early_stopped.remove(*labels, rule)
        for limit in INFEASIBLE_LIMITS:
            with contextlib.suppress(KeyError):
                self.infeasible.remove(*labels, limit)
        for metric in (
            self.trials_running, self.trials_pending, self.trial_duration, self.reward,
            self.best_reward, self.front_size, self.front_hypervolume, self.controller_updates, self.controller_entropy,
            self.controller_baseline, self.controller_update_duration, self.checkpoint_size,
            self.epochs_saved,
        ):  # fmt: skip
            with contextlib.suppress(KeyError):
                metric.remove(*labels)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of a ``/metrics`` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
