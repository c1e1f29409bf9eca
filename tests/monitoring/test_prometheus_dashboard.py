"""Every dashboard panel's PromQL, evaluated by a real Prometheus that scraped a real search.

`kubenas run tests/monitoring/prometheus/tiny-search.yaml --metrics-port P` (real trainer processes,
the real REINFORCE controller) is scraped every 0.5 s; then each panel's queries go through
``/api/v1/query`` and ``/api/v1/query_range`` with Grafana's variables substituted, and the
answers are compared with what the run left on disk: best.json, the trial journal, the
checkpoint. ``CHECKS`` maps every panel title to its check; a panel without one fails
``test_every_panel_has_a_check``. See docs/monitoring.md.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
import yaml

from nas_operator.metrics import DURATION_BUCKETS, REWARD_BUCKETS, UPDATE_BUCKETS, VERSION
from nas_operator.monitoring.prometheus import Series
from nas_operator.monitoring.scraped_run import JOB
from tests.support.prometheus import (
    SCRAPE_INTERVAL,
    Scraped,
    dashboard,
    data_panels,
    finite,
    grafana_query,
)


@dataclass
class Panel:
    """One panel's answers on the scraped run, and the facts of the run to compare with."""

    scraped: Scraped
    panel: dict[str, Any]

    def exprs(self, **intervals: str) -> list[str]:
        s = self.scraped
        values = {"window": s.window, "rate_interval": s.window, "interval": s.window,
                  **intervals}
        return [grafana_query(t["expr"], **values) for t in self.panel["targets"]]

    def instant(self, ref: int = 0) -> list[Series]:
        """Target ``ref`` at the last scrape, every window covering the whole run."""
        return self.scraped.prometheus.query(self.exprs()[ref], at=self.scraped.at)

    def value(self, ref: int = 0) -> float:
        [series] = self.instant(ref)
        return series.last

    def by(self, label: str, ref: int = 0) -> dict[str, float]:
        return {s.labels[label]: s.last for s in self.instant(ref)}

    def whole_run_count(self, rate_per_minute: float) -> float:
        """A ``60 * rate(x[W])`` answer back to the count it was computed from."""
        return rate_per_minute * self.scraped.window_seconds / 60

    def range(self, ref: int = 0, step: float = 1.0) -> list[Series]:
        """Target ``ref`` over the run as a Grafana panel asks: step 1 s, $__interval = step,
        $__rate_interval = 4 scrape intervals."""
        s = self.scraped
        expr = self.exprs(interval=f"{int(step)}s",
                          rate_interval=f"{int(4 * SCRAPE_INTERVAL * 1000)}ms")[ref]
        return s.prometheus.query_range(expr, s.run.first_scrape, s.at, step)

    # -- what the run left -------------------------------------------------------------
    @cached_property
    def spec(self) -> dict[str, Any]:
        """The NASSearch spec as the user wrote it (the run folder's copy)."""
        return yaml.safe_load((self.scraped.run.folder / "search.yaml").read_text())["spec"]

    @property
    def parallelism(self) -> int:
        return int(self.spec["budget"]["parallelism"])

    @property
    def max_trials(self) -> int:
        return int(self.spec["budget"]["maxTrials"])

    @cached_property
    def trials(self) -> list[dict[str, Any]]:
        """The trial journal, last line per trial (as trials.csv is built)."""
        rows: dict[str, dict[str, Any]] = {}
        for line in (self.scraped.run.folder / "trials.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows[row["trial"]] = row
        return list(rows.values())

    @cached_property
    def best(self) -> dict[str, Any]:
        return json.loads((self.scraped.run.folder / "best.json").read_text())

    @cached_property
    def controller(self) -> dict[str, Any]:
        from nas_operator.checkpoint import decode_checkpoint

        blob = (self.scraped.run.folder / "checkpoint" / "search.ckpt").read_bytes()
        return dict(decode_checkpoint(blob).state["controller"])

    @property
    def labels(self) -> dict[str, str]:
        return {"namespace": self.best["namespace"], "search": self.best["search"]}


def _bucket_bounds(values: list[float], buckets: tuple[float, ...]) -> tuple[float, float]:
    """The histogram bucket edges enclosing ``values``: where histogram_quantile can land."""
    low = max([0.0, *(b for b in buckets if b < min(values))])
    high = min(b for b in buckets if b >= max(values))
    return low, high


# -- one check per panel -------------------------------------------------------------------
def check_searches_by_phase(p: Panel) -> None:
    phases = p.by("phase")
    assert phases == {"Pending": 0, "Running": 0, "Suspended": 0, "Succeeded": 1, "Failed": 0}
    running = [s for s in p.range() if s.labels["phase"] == "Running"]
    assert running and max(x.v for x in running[0].samples) == 1  # while it ran


def check_best_reward(p: Panel) -> None:
    assert p.value() == pytest.approx(p.best["reward"], rel=1e-12)


def _running_pending(p: Panel, refs: tuple[int, int]) -> None:
    assert p.value(refs[0]) == 0 and p.value(refs[1]) == 0  # the finished search
    parallelism = p.parallelism
    running = finite(p.range(refs[0]))
    pending = finite(p.range(refs[1]))
    assert running and pending
    assert max(running) == parallelism, running  # the runner filled its slots...
    assert min(running) >= 0 and min(pending) >= 0
    total = [r + q for r, q in zip(running, pending, strict=True)]
    assert max(total) <= p.max_trials  # ...and never overfilled them


def check_trials_running_pending(p: Panel) -> None:
    _running_pending(p, (0, 1))


def check_operator_status(p: Panel) -> None:
    assert p.value(0) == 1
    assert p.by("version", 1) == {VERSION: 1}


def check_best_reward_per_search(p: Panel) -> None:
    [series] = p.instant()
    assert series.labels == p.labels
    assert series.last == pytest.approx(p.best["reward"], rel=1e-12)
    [curve] = p.range()
    values = [s.v for s in curve.samples]
    assert values == sorted(values), "the best reward never decreases"
    rewards = {t["reward"] for t in p.trials}
    assert all(min(abs(v - r) for r in rewards) < 1e-12 for v in values), "each is a reward"


def check_reward_distribution(p: Panel) -> None:
    counts = p.by("le")
    rewards = [t["reward"] for t in p.trials if t["phase"] == "Succeeded"]
    expected = {b: sum(r <= b for r in rewards) for b in REWARD_BUCKETS}
    got = {float(le): v for le, v in counts.items()}
    assert got.keys() == expected.keys()
    for le, n in expected.items():
        assert got[le] == pytest.approx(n, abs=1e-9), (le, got[le], n)
    assert finite(p.range()), "the heatmap has cells"


def check_trials_by_outcome(p: Panel) -> None:
    phases = Counter(t["phase"] for t in p.trials)
    expected = {"succeeded": phases["Succeeded"], "failed": phases["Failed"],
                "cancelled": phases["Cancelled"], "retried": sum(t["attempt"] for t in p.trials)}
    got = {k: p.whole_run_count(v) for k, v in p.by("outcome").items()}
    assert got == pytest.approx(expected, abs=1e-6)
    assert expected["succeeded"] == p.max_trials
    assert max(finite(p.range())) > 0, "bars while trials finished"


def check_running_vs_pending(p: Panel) -> None:
    for ref in (0, 1):
        assert {tuple(s.labels.items()) for s in p.instant(ref)} == {tuple(p.labels.items())}
    _running_pending(p, (0, 1))


def _durations(p: Panel) -> list[float]:
    return [t["seconds"] for t in p.trials]


def histogram_quantile(q: float, values: list[float], buckets: tuple[float, ...]) -> float:
    """What Prometheus' histogram_quantile answers for these observations in these buckets
    (linear interpolation inside the bucket that holds the rank; +Inf: the last finite bound),
    computed here from the trial journal to compare with its answer."""
    counts = [sum(v <= b for v in values) for b in buckets]
    rank = q * counts[-1]
    b = next((i for i in range(len(buckets) - 1) if counts[i] >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:
        return buckets[-2]
    start = buckets[b - 1] if b else 0.0
    below = counts[b - 1] if b else 0
    return start + (buckets[b] - start) * (rank - below) / (counts[b] - below)


def check_trial_duration_quantiles(p: Panel) -> None:
    durations = _durations(p)
    for ref, q in ((0, 0.5), (1, 0.95)):
        expected = histogram_quantile(q, durations, DURATION_BUCKETS)
        assert p.value(ref) == pytest.approx(expected, rel=1e-6), (q, durations)
        low, high = _bucket_bounds(durations, DURATION_BUCKETS)
        assert low <= p.value(ref) <= high  # within the buckets of the measured range
    assert finite(p.range(0)) and finite(p.range(1))


def check_mean_trial_duration(p: Panel) -> None:
    durations = _durations(p)
    assert p.value() == pytest.approx(sum(durations) / len(durations), rel=1e-9)
    assert min(durations) <= p.value() <= max(durations)
    assert finite(p.range())


def check_controller_entropy(p: Panel) -> None:
    assert p.value() == pytest.approx(p.controller["entropy"], rel=1e-12)
    assert p.value() > 0


def check_controller_baseline(p: Panel) -> None:
    assert p.value() == pytest.approx(p.controller["baseline"], rel=1e-12)


def check_controller_updates(p: Panel) -> None:
    updates = p.controller["updates"]
    assert updates == p.max_trials // p.spec["strategy"]["batchSize"]
    assert p.value(0) == pytest.approx(updates, abs=1e-6)
    p95 = p.value(1)
    assert 0 < p95 <= max(b for b in UPDATE_BUCKETS if math.isfinite(b))
    assert finite(p.range(0)) and finite(p.range(1))


def check_status_api_reports(p: Panel) -> None:
    got = {k: p.whole_run_count(v) for k, v in p.by("result").items()}
    accepted = got.pop("accepted")
    trials = len(p.trials)
    epochs = p.spec["trial"]["training"]["epochs"]
    # Each trainer reports every epoch and once at the end (the trial contract, docs/design.md §4).
    assert accepted == pytest.approx(trials * (epochs + 1), abs=1e-6)
    assert all(v == pytest.approx(0, abs=1e-9) for v in got.values()), got
    assert finite(p.range())


def check_checkpoint_size(p: Panel) -> None:
    """The last checkpoint's size, or the one before (recorded inside the last): the loop
    writes its final checkpoint after the phase change, which a loaded machine may not get
    to scrape before the runner stops answering."""
    size = (p.scraped.run.folder / "checkpoint" / "search.ckpt").stat().st_size
    assert p.value() in (size, p.controller["checkpointBytes"]), (p.value(), size)
    assert finite(p.range())


def check_operator_memory(p: Panel) -> None:
    assert 50e6 < p.value() < 8e9  # a Python process with torch loaded
    assert finite(p.range())


def check_operator_cpu(p: Panel) -> None:
    assert 0 < p.value() <= (os.cpu_count() or 1)
    assert finite(p.range())


def check_scrape_health(p: Panel) -> None:
    [series] = p.instant()
    assert series.last == 1 and series.labels["job"] == JOB
    values = [s.v for s in p.range()[0].samples]
    assert set(values) <= {0.0, 1.0} and values[-1] == 1
    # A scrape may time out (0.45 s) on a loaded 2-core machine; nearly all succeed.
    assert values.count(1.0) >= 0.9 * len(values), values


def _front(p: Panel) -> dict[str, Any]:
    return json.loads((p.scraped.run.folder / "front.json").read_text())


def check_front_size(p: Panel) -> None:
    front = _front(p)
    assert p.value() == front["size"] == len(front["members"]) >= 1
    assert all(s.v >= 1 for s in p.range()[0].samples)


def check_front_hypervolume(p: Panel) -> None:
    assert p.value() == pytest.approx(_front(p)["hypervolume"], rel=1e-12)
    values = [s.v for s in p.range()[0].samples]
    assert values == sorted(values) and values[-1] > 0, "the hypervolume never shrinks"


def check_trials_stopped_early(p: Panel) -> None:
    # the scraped search has no spec.earlyStopping: every rule's series is there, at the number
    # of trials the run stopped early (none), over the whole run
    stopped = sum(1 for t in p.trials if t["phase"] == "EarlyStopped")
    assert "earlyStopping" not in p.spec and stopped == 0
    by_rule = p.by("rule")
    assert by_rule and sum(by_rule.values()) == stopped
    assert all(s.v == stopped for s in p.range()[0].samples)


def check_epochs_saved(p: Panel) -> None:
    # one series for the search, at the epochs early stopping saved (none in this run)
    [series] = p.instant()
    assert series.labels.get("search", p.labels["search"]) == p.labels["search"]
    assert p.value() == 0 and all(s.v == 0 for s in p.range()[0].samples)


def check_proposals_refused(p: Panel) -> None:
    # the scraped search has no objective.constraints: every limit's series is there, at the
    # number of proposals refused (none), over the whole run
    refused = sum(1 for t in p.trials if t["phase"] == "Infeasible")
    assert "constraints" not in p.spec.get("objective", {}) and refused == 0
    by_limit = p.by("limit")
    assert set(by_limit) == {"maxParams", "maxFlops", "both", "uncountable"}
    assert sum(by_limit.values()) == refused
    assert all(s.v == refused for series in p.range() for s in series.samples)


CHECKS: dict[str, Callable[[Panel], None]] = {
    "Proposals refused by constraints": check_proposals_refused,
    "Pareto front size": check_front_size,
    "Trials stopped early by rule": check_trials_stopped_early,
    "GPU-epochs saved by early stopping": check_epochs_saved,
    "Front hypervolume": check_front_hypervolume,
    "Searches by phase": check_searches_by_phase,
    "Best reward": check_best_reward,
    "Trials running / pending": check_trials_running_pending,
    "Operator status": check_operator_status,
    "Best reward per search": check_best_reward_per_search,
    "Reward distribution": check_reward_distribution,
    "Trials finished by outcome": check_trials_by_outcome,
    "Running vs pending trials (GPU starvation)": check_running_vs_pending,
    "Trial duration p50 / p95": check_trial_duration_quantiles,
    "Mean trial duration": check_mean_trial_duration,
    "Controller entropy": check_controller_entropy,
    "Controller baseline": check_controller_baseline,
    "Controller updates": check_controller_updates,
    "Status API reports by result": check_status_api_reports,
    "Controller checkpoint size": check_checkpoint_size,
    "Operator memory": check_operator_memory,
    "Operator CPU": check_operator_cpu,
    "Operator scrape health": check_scrape_health,
}
TITLES = [p["title"] for p in data_panels()]


def test_every_panel_has_a_check() -> None:
    missing = sorted(set(TITLES) - set(CHECKS))
    assert not missing, f"panels without a check against real data: {missing}; add one to CHECKS"
    assert not set(CHECKS) - set(TITLES), f"checks of no panel: {sorted(set(CHECKS) - set(TITLES))}"


@pytest.mark.parametrize("title", TITLES)
def test_panel_shows_what_the_run_did(scraped_search: Scraped, title: str) -> None:
    panel = next(p for p in data_panels() if p["title"] == title)
    view = Panel(scraped_search, panel)
    for ref, expr in enumerate(view.exprs()):
        assert view.instant(ref), f"{title!r} target {ref} returns no series: {expr}"
        assert view.range(ref), f"{title!r} target {ref} returns no series over the run: {expr}"
    CHECKS[title](view)


def test_template_variables_list_the_scraped_search(scraped_search: Scraped) -> None:
    best = json.loads((scraped_search.run.folder / "best.json").read_text())
    expected = {"namespace": [best["namespace"]], "search": [best["search"]], "job": [JOB]}
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"]
        selector, label = query[len("label_values("):-1].rsplit(",", 1)
        selector = grafana_query(selector, window="1m", rate_interval="1m", interval="1m")
        assert scraped_search.prometheus.label_values(label.strip(), selector) == expected[
            var["name"]], var["name"]


def test_the_scrapes_cover_the_whole_run(scraped_search: Scraped) -> None:
    """The first scrape saw the search before any trial ended, the last one after the end."""
    run = scraped_search.run
    prom = scraped_search.prometheus
    first = prom.query('sum(kubenas_trials_total{outcome="succeeded"})', at=run.first_scrape)
    assert first[0].last == 0
    assert run.scrapes >= (run.last_scrape - run.first_scrape) / SCRAPE_INTERVAL * 0.8
    after = prom.query("kubenas_best_reward", at=run.ended + 5 * SCRAPE_INTERVAL)
    assert after == [], "series of a stopped runner go stale"


def test_the_dashboard_picture_draws_every_panel(scraped_search: Scraped, tmp_path) -> None:
    """What `make dashboard-png` draws, on this run: every panel placed, every one with data."""
    from nas_operator.monitoring import picture

    lines = picture.grid_lines(dashboard())
    assert [p["title"] for _, panels in lines for p in panels] == TITLES
    s = scraped_search
    for _, panels in lines:
        for panel in panels:
            assert picture.panel_data(s.prometheus, panel, s.run.first_scrape, s.at), panel["title"]
    updates = next(p for p in data_panels() if p["title"] == "Controller updates")
    assert picture.right_axis_refs(updates) == {"B"}
    out = tmp_path / "dashboard.png"
    picture.render(s.prometheus, s.run.first_scrape, s.at, out, "test")
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.stat().st_size > 50_000
