"""The Grafana dashboard and the chart's alert rules: structure, and PromQL that
parses and names only metrics the operator really exports.

The dashboard is generated (nas_operator.monitoring.dashboard, `make dashboards`); both
files must be the generator's output byte for byte. What its queries return on real data
is tested against a real Prometheus in test_prometheus_dashboard.py.

No offline Grafana linter exists, so the checks are the ones a reviewer would
do by hand: unique uid and panel ids, a Prometheus datasource variable used by
every query, every `$variable` defined, every expression parsed by
promql-parser after Grafana's variables are substituted, every metric name in
the operator's registry (nas_operator.metrics) and every kubenas metric shown.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import subprocess

import promql_parser
import pytest
import yaml

from tests.support import REPO
from tests.support.helm import helm_bin

DASHBOARD = REPO / "helm" / "dashboards" / "kubenas.json"
CHART = REPO / "helm" / "kubenas"

# The metric contract as agreed with the operator (names as PromQL sees them,
# histograms as their base name). Used as is only while nas_operator.metrics
# cannot be imported; otherwise it must match the real registry.
CONTRACT = {
    "kubenas_trials_total": "counter",
    "kubenas_trials_running": "gauge",
    "kubenas_trials_pending": "gauge",
    "kubenas_trial_duration_seconds": "histogram",
    "kubenas_reward": "histogram",
    "kubenas_best_reward": "gauge",
    "kubenas_front_size": "gauge",
    "kubenas_front_hypervolume": "gauge",
    "kubenas_controller_updates_total": "counter",
    "kubenas_controller_entropy": "gauge",
    "kubenas_controller_baseline": "gauge",
    "kubenas_controller_update_duration_seconds": "histogram",
    "kubenas_checkpoint_size_bytes": "gauge",
    "kubenas_status_api_reports_total": "counter",
    "kubenas_searches": "gauge",
    "kubenas_build_info": "gauge",
    "kubenas_trials_early_stopped_total": "counter",
    "kubenas_epochs_saved_total": "counter",
    "kubenas_trials_infeasible_total": "counter",
}
# prometheus-client's process collector (Linux), used for the operator's health.
PROCESS_SERIES = {
    "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_cpu_seconds_total",
    "process_open_fds", "process_max_fds", "process_start_time_seconds",
}
# Series Prometheus itself attaches to every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "6h"}
# Values substituted for the dashboard's own variables, by variable type.
SAMPLE_BY_TYPE = {"query": "default", "datasource": "prometheus", "interval": "30m", "custom": "x"}


def _series_of(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def _contract_series() -> set[str]:
    return set().union(*(_series_of(n, k) for n, k in CONTRACT.items()))


@functools.cache
def _registry_series() -> set[str] | None:
    """Sample names the operator's real registry can expose, or None while the
    module does not exist yet. Any other import failure is an error."""
    try:
        metrics = importlib.import_module("nas_operator.metrics")
    except ModuleNotFoundError as exc:
        if exc.name in {"nas_operator", "nas_operator.metrics"}:
            return None
        raise
    registry = metrics.OperatorMetrics().registry
    series: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            series |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            series |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        elif family.type == "info":
            series.add(f"{family.name}_info")
        elif family.type == "summary":
            series |= {f"{family.name}_{s}" for s in ("sum", "count", "created")}
        else:
            series.add(family.name)
    return series


def known_series() -> set[str]:
    real = _registry_series()
    return (real if real is not None else _contract_series() | PROCESS_SERIES) | SCRAPE_SERIES


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep theirs inside
    return out


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, defined: dict[str, dict]) -> str:
    """Replace Grafana variables as Grafana would before sending the query."""

    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name not in defined:
            raise AssertionError(f"undefined Grafana variable ${name} in {expr!r}")
        return SAMPLE_BY_TYPE[defined[name]["type"]]

    return _VAR.sub(one, expr)


def metric_names(expr: str) -> set[str]:
    """Every metric name an expression selects (by name or by __name__=)."""
    ast = promql_parser.parse(expr)
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    assert matcher.op == promql_parser.MatchOp.Equal, f"regex metric name in {expr!r}"
                    names.add(matcher.value)
            assert names, f"selector without a metric name in {expr!r}"

    promql_parser.walk(ast, visit)
    return names


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        assert m, f"variable {var['name']}: expected label_values(selector, label), got {query!r}"
        out.append((f"variable {var['name']}", m.group(1)))
    return out


# --------------------------------------------------------------------------- generated


def test_both_dashboard_files_are_the_generator_output() -> None:
    from nas_operator.monitoring.dashboard import DASHBOARD_FILES, render

    text = render()
    for relative in DASHBOARD_FILES:
        assert (REPO / relative).read_text() == text, (
            f"{relative} is not what nas_operator/monitoring/dashboard.py generates: edit the "
            "generator, then run `make dashboards`")
    assert DASHBOARD.relative_to(REPO) in DASHBOARD_FILES


def test_generator_lists_exactly_the_dashboard_panels() -> None:
    from nas_operator.monitoring.dashboard import panel_specs

    shown = [p["title"] for p in all_panels(load_dashboard()) if p["type"] != "row"]
    assert shown == [spec.title for spec in panel_specs()]


# --------------------------------------------------------------------------- structure


def test_dashboard_identity_and_unique_panel_ids() -> None:
    dashboard = load_dashboard()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), dashboard.get("uid")
    assert dashboard["title"]
    assert dashboard.get("id") is None, "an exported numeric id would clash on import"
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    titles = [p["title"] for p in all_panels(dashboard)]
    assert len(titles) == len(set(titles)), "two panels share a title"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in all_panels(load_dashboard()):
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {panel['id']} leaves the 24-column grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]


def test_template_variables() -> None:
    defined = variables(load_dashboard())
    ds = defined["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for name in ("namespace", "search"):
        var = defined[name]
        assert var["type"] == "query"
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert query.startswith("label_values(") and query.rstrip(")").endswith(name)
        assert var["includeAll"] and var["multi"] and var["allValue"] == ".*"
    # The search list follows the chosen namespaces.
    assert "$namespace" in defined["search"]["query"]["query"]


def test_every_query_uses_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    ds = {"type": "prometheus", "uid": "${datasource}"}
    with_queries = [p for p in all_panels(dashboard) if p.get("targets")]
    assert len(with_queries) >= 15
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            assert not panel.get("targets"), f"row {panel['id']} has queries"
            continue
        assert panel.get("targets"), f"panel {panel['id']} {panel['title']!r} shows nothing"
        assert panel["datasource"] == ds, f"panel {panel['id']} {panel['title']!r}"
        for target in panel["targets"]:
            assert target["datasource"] == ds, f"panel {panel['id']} target {target['refId']}"
    text = DASHBOARD.read_text()
    # No data source pinned by name or uid anywhere.
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {load_dashboard()["uid"]}
    assert uids == {"${datasource}"}, uids


# --------------------------------------------------------------------------- PromQL


def test_every_dashboard_expression_parses_and_uses_exported_metrics() -> None:
    dashboard = load_dashboard()
    defined = variables(dashboard)
    known = known_series()
    queries = dashboard_queries(dashboard)
    for where, expr in queries:
        concrete = substitute(expr, defined)
        try:
            names = metric_names(concrete)
        except ValueError as exc:  # promql_parser reports syntax errors as ValueError
            pytest.fail(f"{where}: {concrete!r} does not parse: {exc}")
        unknown = names - known
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the operator"


def test_dashboard_shows_every_kubenas_metric() -> None:
    used = set()
    dashboard = load_dashboard()
    for _, expr in dashboard_queries(dashboard):
        used |= metric_names(substitute(expr, variables(dashboard)))
    for name, kind in CONTRACT.items():
        assert _series_of(name, kind) & used, f"no panel shows {name}"
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "up"} <= used


def test_metric_contract_matches_the_operator_registry() -> None:
    """Nothing dropped silently: each contract name the dashboard relies on must
    be in the real registry, with the same type."""
    real = _registry_series()
    if real is None:
        pytest.skip("nas_operator.metrics does not exist yet: the contract list above is used")
    missing = sorted(s for s in _contract_series() if s not in real)
    assert not missing, f"the operator no longer exports {missing}"
    metrics = importlib.import_module("nas_operator.metrics")
    if hasattr(metrics, "metric_family_names"):
        assert set(metrics.metric_family_names()) == set(CONTRACT), (
            "nas_operator.metrics.metric_family_names() and this test's CONTRACT differ: "
            f"{sorted(set(metrics.metric_family_names()) ^ set(CONTRACT))}")
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= real


def test_metric_name_check_catches_a_misspelt_metric() -> None:
    """The checker itself: a wrong name or a bad expression is reported."""
    assert metric_names('histogram_quantile(0.9, sum by (le) (rate(kubenas_reward_bucket[5m])))') == {
        "kubenas_reward_bucket"}
    assert metric_names('{__name__="kubenas_best_reward", search="x"}') == {"kubenas_best_reward"}
    assert "kubenas_trial_total" not in known_series()
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(kubenas_trials_total[5m])")
    with pytest.raises(AssertionError, match="undefined Grafana variable"):
        substitute('kubenas_best_reward{search=~"$serach"}', variables(load_dashboard()))


# --------------------------------------------------------------------------- alert rules


def _helm() -> str:
    return helm_bin()


def test_alert_rule_expressions_parse_and_use_exported_metrics() -> None:
    env = dict(os.environ, KUBECONFIG=os.devnull)
    proc = subprocess.run(
        [_helm(), "template", "kubenas", str(CHART), "--namespace", "kubenas-system",
         "-f", str(REPO / "tests" / "helm_values" / "monitoring.yaml"),
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    rule = yaml.safe_load(proc.stdout)
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(rules) >= 4
    known = known_series()
    for r in rules:
        names = metric_names(r["expr"])
        assert names <= known, f"{r['alert']}: {sorted(names - known)} not exported"
        assert re.fullmatch(r"\d+[smh]", r.get("for", "0s")), r["alert"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    # Rejected reports are every result but the two good ones the operator counts.
    real = importlib.import_module("nas_operator.metrics") if _registry_series() is not None else None
    if real is not None and hasattr(real, "REPORT_RESULTS"):
        assert {"accepted", "duplicate"} <= set(real.REPORT_RESULTS)
    assert 'result!~"accepted|duplicate"' in exprs["KubenasStatusAPIReportErrors"]
