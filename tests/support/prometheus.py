"""A real Prometheus for the tests: binaries found or a clear skip, the scraped local search
as a module-scoped fixture, and the dashboard's queries as Grafana would send them.

tests/monitoring/conftest.py imports the fixture for that layer's tests.

The server is the Debian ``prometheus`` package (see docs/monitoring.md); `make test`
installs it when it runs as root (.ci/system-packages.sh), elsewhere these tests skip.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nas_operator.monitoring.prometheus import INSTALL_HINT, Prometheus, Series, find_binary
from nas_operator.monitoring.scraped_run import ScrapedRun
from nas_operator.monitoring.scraped_run import scraped_search as start_scraped_search
from tests.support import REPO

DASHBOARD = REPO / "helm" / "dashboards" / "kubenas.json"
SEARCH_FILE = Path("tests/monitoring/prometheus/tiny-search.yaml")
"""Relative to the repository root, as a user types it (the runner starts there)."""
SCRAPE_INTERVAL = 0.5


def binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``, or skip the test saying how to get it."""
    found = find_binary(name)
    if found is None:
        pytest.skip(f"{name} is not installed: {INSTALL_HINT}")
    return found


@dataclass(frozen=True)
class Scraped:
    """A finished local search and the Prometheus that scraped it (still running)."""

    prometheus: Prometheus
    run: ScrapedRun

    @property
    def at(self) -> float:
        """When to evaluate instant queries: the last scrape that saw the runner up."""
        return self.run.last_scrape

    @property
    def window(self) -> str:
        """A PromQL range that reaches back before the run started (whole-run totals)."""
        return f"{math.ceil(self.at - self.run.started) + 5}s"

    @property
    def window_seconds(self) -> float:
        return float(self.window[:-1])


@pytest.fixture(scope="module")
def scraped_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """tests/monitoring/prometheus/tiny-search.yaml run by `kubenas run --metrics-port` with real trainers,
    scraped every 0.5 s by a real Prometheus that stays up for the module's queries."""
    server = binary("prometheus")
    workdir = tmp_path_factory.mktemp("scraped")
    with start_scraped_search(server, SEARCH_FILE, workdir, interval=SCRAPE_INTERVAL,
                              timeout=240, cwd=REPO) as (prometheus, run):
        assert run.exit_code == 0, run.output
        ended = prometheus.query('kubenas_searches{phase="Succeeded"}', at=run.last_scrape)
        assert [s.last for s in ended] == [1], (
            "the last successful scrape did not see the finished search: the runner stopped "
            f"answering /metrics early ({run.scrapes} scrapes; {prometheus.log})")
        yield Scraped(prometheus, run)


# -- the dashboard as Grafana sends it --------------------------------------------------------
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def data_panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel that queries (rows excluded), nested rows included."""
    board = board or dashboard()
    out = []
    for panel in board["panels"]:
        out += [panel, *panel.get("panels", [])]
    return [p for p in out if p["type"] != "row"]


def rows_of(board: dict[str, Any] | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
    """(row title, its data panels) in dashboard order."""
    board = board or dashboard()
    rows: list[tuple[str, list[dict[str, Any]]]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            rows.append((panel["title"], list(panel.get("panels", []))))
        elif rows:
            rows[-1][1].append(panel)
    return rows


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def grafana_query(expr: str, *, window: str, rate_interval: str, interval: str) -> str:
    """The expression with the dashboard's variables as Grafana substitutes them when every
    namespace, search and job is selected ('All' = the regex ``.*``)."""
    values = {"namespace": ".*", "search": ".*", "job": ".*", "window": window,
              "__rate_interval": rate_interval, "__interval": interval, "__range": window}

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def finite(series: list[Series]) -> list[float]:
    return [s.v for one in series for s in one.samples if math.isfinite(s.v)]


# -- the chart's alert rules ------------------------------------------------------------------
def helm_binary() -> str:
    """bin/helm from `make tools` (as `make test` sets up), else a helm on the PATH, else skip."""
    local = REPO / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if found is None:
        pytest.skip("bin/helm is absent: run `make tools` (make test does it) to unpack helm")
    return found


def rendered_rule_groups(*values: str) -> list[dict[str, Any]]:
    """``spec.groups`` of the chart's PrometheusRule, rendered by the real helm with the given
    values files (relative to tests/helm_values) — what the Prometheus Operator loads."""
    args = [a for name in values for a in ("-f", str(REPO / "tests" / "helm_values" / name))]
    env = dict(os.environ, KUBECONFIG=os.devnull, HELM_CACHE_HOME="/tmp/kubenas-helm-cache",
               HELM_CONFIG_HOME="/tmp/kubenas-helm-config", HELM_DATA_HOME="/tmp/kubenas-helm-data")
    proc = subprocess.run(
        [helm_binary(), "template", "kubenas", str(REPO / "helm" / "kubenas"), "--namespace",
         "kubenas-system", *args, "--set", "monitoring.prometheusRule.enabled=true",
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return list(yaml.safe_load(proc.stdout)["spec"]["groups"])
