"""The kubenas Grafana dashboard, as code (Grafana's ``grafana-foundation-sdk`` builders).

This module is the only source of the dashboard: ``make dashboards`` writes its JSON to
``helm/dashboards/kubenas.json`` and to the chart's copy, and a test keeps both equal to
``render()``. Every panel's PromQL is evaluated against a real Prometheus scraping a real
search in tests/monitoring/test_prometheus_dashboard.py; why this library, in docs/monitoring.md.

Pure: no Kubernetes, no network; the metric names are those of ``nas_operator.metrics``.

    python -m nas_operator.monitoring.dashboard [FILE ...]   (no FILE: print the JSON)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import heatmap, stat, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    IntervalVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    LineInterpolation,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DynamicConfigValue,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "kubenas-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEARCH = 'namespace=~"$namespace", search=~"$search"'
"""The selector every per-search query carries (the dashboard's two search variables)."""
JOB = 'job=~"$job"'
WINDOWS = ("10m", "30m", "1h", "3h", "12h")
DEFAULT_WINDOW = "30m"
DASHBOARD_FILES = (Path("helm/dashboards/kubenas.json"),
                   Path("helm/kubenas/dashboards/kubenas.json"))
"""Where ``make dashboards`` writes the JSON (the chart ships the second one)."""


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """One panel: what it shows and where; ``style`` adds the panel type's own options."""

    title: str
    kind: str  # "stat", "timeseries" or "heatmap"
    width: int
    height: int
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    style: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...] = field(default_factory=tuple)


def _q(expr: str, legend: str) -> Query:
    return Query(expr, legend)


def _by_search(metric: str, agg: str = "max") -> str:
    return f"{agg} by (namespace, search) ({metric}{{{SEARCH}}})"


def _quantile(q: float, metric: str, window: str = "$window") -> str:
    return (f"histogram_quantile({q}, sum by (le, namespace, search) "
            f"(rate({metric}_bucket{{{SEARCH}}}[{window}])))")


def _up_down(panel: Any) -> Any:
    """Operator status: the scrape reads UP/DOWN, the build info 'running'."""
    up = ValueMap({"0": ValueMappingResult(text="DOWN", color="red", index=0),
                   "1": ValueMappingResult(text="UP", color="green", index=1)})
    running = ValueMap({"1": ValueMappingResult(text="running", index=0)})
    return (panel.override_by_query("A", [DynamicConfigValue(id_val="mappings", value=[up]),
                                          DynamicConfigValue(id_val="displayName",
                                                             value="scrape")])
            .override_by_query("B", [DynamicConfigValue(id_val="mappings", value=[running])]))


def _four_decimals(panel: Any) -> Any:
    return panel.decimals(4)


def _bars_per_minute(panel: Any) -> Any:
    return (panel.draw_style(GraphDrawStyle.BARS).fill_opacity(60)
            .stacking(StackingConfig().mode(StackingMode.NORMAL).group("A"))
            .axis_label("trials / min"))


def _reports_per_minute(panel: Any) -> Any:
    return panel.axis_label("reports / min")


def _update_time_right(panel: Any) -> Any:
    return panel.override_by_query("B", [
        DynamicConfigValue(id_val="unit", value="s"),
        DynamicConfigValue(id_val="custom.axisPlacement", value="right")])


def _zero_one_steps(panel: Any) -> Any:
    return panel.min(0).max(1).line_width(2).fill_opacity(0).line_interpolation(
        LineInterpolation.STEP_AFTER)


ROWS: tuple[RowSpec, ...] = (
    RowSpec("Overview", (
        PanelSpec("Searches by phase", "stat", 8, 4,
                  "NASSearch objects per phase, all namespaces (kubenas_searches).",
                  (_q("sum by (phase) (kubenas_searches)", "{{phase}}"),)),
        PanelSpec("Best reward", "stat", 4, 4,
                  "Highest reward reached by any selected search (kubenas_best_reward).",
                  (_q(f"max(kubenas_best_reward{{{SEARCH}}})", "best"),), style=_four_decimals),
        PanelSpec("Trials running / pending", "stat", 6, 4,
                  "Trial pods running and waiting (kubenas_trials_running, "
                  "kubenas_trials_pending).",
                  (_q(f"sum(kubenas_trials_running{{{SEARCH}}})", "running"),
                   _q(f"sum(kubenas_trials_pending{{{SEARCH}}})", "pending"))),
        PanelSpec("Operator status", "stat", 6, 4,
                  "Whether Prometheus scrapes the operator (up) and the version it reports "
                  "(kubenas_build_info).",
                  (_q(f"min(up{{{JOB}}})", "up"),
                   _q(f"max by (version) (kubenas_build_info{{{JOB}}})", "{{version}}")),
                  style=_up_down),
    )),
    RowSpec("Search progress", (
        PanelSpec("Best reward per search", "timeseries", 12, 8,
                  "Best reward so far of each search (kubenas_best_reward): the search's "
                  "learning curve.",
                  (_q(_by_search("kubenas_best_reward"), "{{namespace}}/{{search}}"),)),
        PanelSpec("Reward distribution", "heatmap", 12, 8,
                  "Rewards of finished trials per time slot (kubenas_reward histogram). A "
                  "controller that learns moves the mass upwards.",
                  (_q(f"sum by (le) (increase(kubenas_reward_bucket{{{SEARCH}}}[$__interval]))",
                      "{{le}}"),)),
    )),
    RowSpec("Multi-objective", (
        PanelSpec("Pareto front size", "timeseries", 12, 8,
                  "Trials on the Pareto front of each multi-objective search "
                  "(kubenas_front_size): the trials no other trial beats on every objective.",
                  (_q(_by_search("kubenas_front_size"), "{{namespace}}/{{search}}"),)),
        PanelSpec("Front hypervolume", "timeseries", 12, 8,
                  "Hypervolume of each search's Pareto front against the reference point in "
                  "status.front.referencePoint (kubenas_front_hypervolume; default: 0 for a "
                  "maximized metric, twice the target of a minimized one). It only grows.",
                  (_q(_by_search("kubenas_front_hypervolume"), "{{namespace}}/{{search}}"),),
                  style=_four_decimals),
    )),
    RowSpec("Trials", (
        PanelSpec("Trials finished by outcome", "timeseries", 12, 8,
                  "Finished trials per minute by outcome: succeeded, failed, retried, "
                  "cancelled (kubenas_trials_total).",
                  (_q(f"60 * sum by (outcome) (rate(kubenas_trials_total{{{SEARCH}}}"
                      "[$__rate_interval]))", "{{outcome}}"),), style=_bars_per_minute),
        PanelSpec("Running vs pending trials (GPU starvation)", "timeseries", 12, 8,
                  "Trial pods running and pending per search (kubenas_trials_running, "
                  "kubenas_trials_pending). Pending staying high while running stays below "
                  "the search's parallelism means trials wait for GPUs or quota.",
                  (_q(_by_search("kubenas_trials_running", "sum"),
                      "running {{namespace}}/{{search}}"),
                   _q(_by_search("kubenas_trials_pending", "sum"),
                      "pending {{namespace}}/{{search}}"))),
        PanelSpec("Trial duration p50 / p95", "timeseries", 12, 8,
                  "Wall-clock duration of finished trials, quantiles over the $window window "
                  "(kubenas_trial_duration_seconds).",
                  (_q(_quantile(0.5, "kubenas_trial_duration_seconds"),
                      "p50 {{namespace}}/{{search}}"),
                   _q(_quantile(0.95, "kubenas_trial_duration_seconds"),
                      "p95 {{namespace}}/{{search}}")), unit="s"),
        PanelSpec("Mean trial duration", "timeseries", 12, 8,
                  "Average duration of the trials that finished in the $window window "
                  "(kubenas_trial_duration_seconds_sum / _count).",
                  (_q(f"sum by (namespace, search) (rate(kubenas_trial_duration_seconds_sum"
                      f"{{{SEARCH}}}[$window])) / sum by (namespace, search) (rate("
                      f"kubenas_trial_duration_seconds_count{{{SEARCH}}}[$window]))",
                      "{{namespace}}/{{search}}"),), unit="s"),
        PanelSpec("Trials stopped early by rule", "timeseries", 12, 8,
                  "Trials spec.earlyStopping ended before their last epoch, so far, by rule "
                  "(kubenas_trials_early_stopped_total). Stopped trials count toward maxTrials "
                  "and never as failed.",
                  (_q(f"sum by (rule) (kubenas_trials_early_stopped_total{{{SEARCH}}})",
                      "{{rule}}"),)),
        PanelSpec("GPU-epochs saved by early stopping", "timeseries", 12, 8,
                  "Training epochs the stopped trials did not run, so far, per search "
                  "(kubenas_epochs_saved_total): one epoch of one trial on its device.",
                  (_q(_by_search("kubenas_epochs_saved_total", "sum"),
                      "{{namespace}}/{{search}}"),)),
        PanelSpec("Proposals refused by constraints", "timeseries", 12, 8,
                  "Proposed architectures never trained because they broke "
                  "spec.objective.constraints, so far, by limit: maxParams, maxFlops, both, or "
                  "uncountable (kubenas_trials_infeasible_total). They take no maxTrials "
                  "budget; the strategy learns the penalty reward.",
                  (_q(f"sum by (limit) (kubenas_trials_infeasible_total{{{SEARCH}}})",
                      "{{limit}}"),)),
    )),
    RowSpec("Controller", (
        PanelSpec("Controller entropy", "timeseries", 8, 8,
                  "Entropy of the controller's sampling policy (kubenas_controller_entropy). "
                  "It falls as the policy converges; a collapse to ~0 early means premature "
                  "convergence.",
                  (_q(_by_search("kubenas_controller_entropy"), "{{namespace}}/{{search}}"),)),
        PanelSpec("Controller baseline", "timeseries", 8, 8,
                  "Moving-average reward baseline of REINFORCE / PPO "
                  "(kubenas_controller_baseline).",
                  (_q(_by_search("kubenas_controller_baseline"), "{{namespace}}/{{search}}"),)),
        PanelSpec("Controller updates", "timeseries", 8, 8,
                  "Controller policy updates per $window (kubenas_controller_updates_total) "
                  "and the p95 time one update takes "
                  "(kubenas_controller_update_duration_seconds, right axis).",
                  (_q(f"sum by (namespace, search) (increase(kubenas_controller_updates_total"
                      f"{{{SEARCH}}}[$window]))", "updates {{namespace}}/{{search}}"),
                   _q(_quantile(0.95, "kubenas_controller_update_duration_seconds"),
                      "p95 update time {{namespace}}/{{search}}")), style=_update_time_right),
    )),
    RowSpec("Status API and checkpoints", (
        PanelSpec("Status API reports by result", "timeseries", 12, 8,
                  "Reports trial pods POSTed to the operator's status API per minute, by "
                  "result, all searches together (kubenas_status_api_reports_total is "
                  "labelled by result only). accepted and duplicate are fine; bad_request, "
                  "unauthorized, forbidden, not_found and conflict are rejections, and those "
                  "trials' rewards then come from the termination-message fallback.",
                  (_q(f"60 * sum by (result) (rate(kubenas_status_api_reports_total{{{JOB}}}"
                      "[$__rate_interval]))", "{{result}}"),), style=_reports_per_minute),
        PanelSpec("Controller checkpoint size", "timeseries", 12, 8,
                  "Size of each search's serialized controller checkpoint "
                  "(kubenas_checkpoint_size_bytes); stored in ConfigMap chunks.",
                  (_q(_by_search("kubenas_checkpoint_size_bytes"), "{{namespace}}/{{search}}"),),
                  unit="bytes"),
    )),
    RowSpec("Operator", (
        PanelSpec("Operator memory", "timeseries", 8, 8,
                  "Resident memory of the operator process (process_resident_memory_bytes).",
                  (_q(f"process_resident_memory_bytes{{{JOB}}}", "{{pod}}"),), unit="bytes"),
        PanelSpec("Operator CPU", "timeseries", 8, 8,
                  "CPU used by the operator process, in cores (process_cpu_seconds_total).",
                  (_q(f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])", "{{pod}}"),)),
        PanelSpec("Operator scrape health", "timeseries", 8, 8,
                  "1 when Prometheus scraped the operator successfully (up).",
                  (_q(f"up{{{JOB}}}", "{{pod}}"),), style=_zero_one_steps),
    )),
)


def panel_specs() -> list[PanelSpec]:
    """Every panel that shows data, in dashboard order (rows excluded)."""
    return [panel for row in ROWS for panel in row.panels]


def _target(query: Query, ref: str, kind: str) -> Dataquery:
    target = (Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
              .datasource(DATASOURCE))
    if kind == "stat":
        target = target.instant()
    else:
        target = target.range()
    if kind == "heatmap":
        target = target.format(PromQueryFormat.HEATMAP)
    return target


def _panel(spec: PanelSpec, panel_id: int) -> Any:
    if spec.kind == "stat":
        panel: Any = (stat.Panel().reduce_options(ReduceDataOptions().calcs(["lastNotNull"])
                                                  .values(False))
                      .color_mode(BigValueColorMode.VALUE).graph_mode(BigValueGraphMode.NONE)
                      .text_mode(BigValueTextMode.VALUE if len(spec.queries) == 1
                                 and "{{" not in spec.queries[0].legend
                                 else BigValueTextMode.VALUE_AND_NAME))
    elif spec.kind == "timeseries":
        panel = (timeseries.Panel().line_width(1).fill_opacity(10)
                 .show_points(VisibilityMode.NEVER).span_nulls(True)
                 .legend(VizLegendOptions().display_mode(LegendDisplayMode.LIST)
                         .placement(LegendPlacement.BOTTOM).show_legend(True))
                 .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI)
                          .sort(SortOrder.DESCENDING)))
    elif spec.kind == "heatmap":
        panel = heatmap.Panel().calculate(False).cell_gap(1).show_legend().show_y_histogram()
    else:
        raise ValueError(f"panel {spec.title!r}: unknown kind {spec.kind!r}")
    panel = (panel.id(panel_id).title(spec.title).description(spec.description)
             .datasource(DATASOURCE).span(spec.width).height(spec.height).unit(spec.unit))
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        panel = panel.with_target(_target(query, ref, spec.kind))
    return spec.style(panel) if spec.style is not None else panel


def _variables(board: Dashboard) -> Dashboard:
    board = board.with_variable(DatasourceVariable("datasource").label("Data source")
                                .type("prometheus"))
    selectors = {"namespace": ("Namespace", "kubenas_trials_running"),
                 "search": ("Search", 'kubenas_trials_running{namespace=~"$namespace"}'),
                 "job": ("Operator job", "kubenas_build_info")}
    for name, (label, selector) in selectors.items():
        query = f"label_values({selector}, {name})"
        board = board.with_variable(
            QueryVariable(name).label(label).datasource(DATASOURCE)
            .query({"qryType": 1, "query": query,
                    "refId": f"PrometheusVariableQueryEditor-{name}"})
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .include_all(True).multi(True).all_value(".*")
            .current(VariableOption(selected=True, text=["All"], value=["$__all"])))
    options = [VariableOption(selected=w == DEFAULT_WINDOW, text=w, value=w) for w in WINDOWS]
    return board.with_variable(
        IntervalVariable("window").label("Window")
        .description("Window for quantiles and counts of slow events (trials finish minutes "
                     "apart).")
        .values(",".join(WINDOWS)).options(options)
        .current(VariableOption(selected=True, text=DEFAULT_WINDOW, value=DEFAULT_WINDOW)))


def build() -> Dashboard:
    board = (Dashboard("kubenas: Neural Architecture Search").uid(UID)
             .description("Searches, trials, controllers and the kubenas operator. Metrics "
                          "from the operator's /metrics (ServiceMonitor of the kubenas chart).")
             .tags(["kubenas", "automl", "nas"]).timezone("browser").editable()
             .tooltip(DashboardCursorSync.CROSSHAIR).refresh("30s").time("now-6h", "now"))
    board = _variables(board)
    panel_id = 0
    for row in ROWS:
        panel_id += 1
        board = board.with_row(Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            board = board.with_panel(_panel(spec, panel_id))
    return board


def render() -> str:
    """The dashboard JSON, exactly as the repository keeps it (sorted keys, newline at end)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    files = sys.argv[1:] if argv is None else argv
    text = render()
    if not files:
        sys.stdout.write(text)
    for name in files:
        Path(name).write_text(text)
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
