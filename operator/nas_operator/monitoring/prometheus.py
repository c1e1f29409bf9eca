"""A real Prometheus server on loopback, for the tests and for the dashboard picture.

The Debian ``prometheus`` binary (2.42) runs with a temporary data directory and a short
scrape interval, scraping the ``/metrics`` of a local search or of the operator; its HTTP
API answers the dashboard's queries exactly as it would for Grafana (docs/monitoring.md).
Only the standard library is used, so nothing here needs the operator's extras.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
INSTALL_HINT = ("install it with `apt-get install -y prometheus` (Debian; `make test` does it "
                "when run as root)")


class PrometheusError(RuntimeError):
    """The server did not start, or a query failed; the message says which and why."""


def find_binary(name: str) -> str | None:
    """``prometheus`` or ``promtool``: $KUBENAS_<NAME> if set, else the PATH, else /usr/bin."""
    override = os.environ.get(f"KUBENAS_{name.upper()}")
    if override:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    fallback = Path("/usr/bin") / name
    return str(fallback) if os.access(fallback, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    """One point of a series: Unix time in seconds and its value."""

    t: float
    v: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    samples: tuple[Sample, ...]

    @property
    def last(self) -> float:
        return self.samples[-1].v


def _series(result: dict[str, Any]) -> Series:
    if "value" in result:
        points = [result["value"]]
    else:
        points = result.get("values", [])
    return Series(dict(result["metric"]), tuple(Sample(float(t), float(v)) for t, v in points))


class Prometheus:
    """One server process: config written to ``workdir``, data in ``workdir/data``."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, Sequence[str]], *,
                 interval: float = 0.5, rule_files: Sequence[Path] = (),
                 target_labels: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.interval = interval
        self.rule_files = list(rule_files)
        self.target_labels = dict(target_labels or {})
        """Labels every target gets, as a ServiceMonitor adds ``namespace`` and ``pod``; the
        scraped series keep their own (``honor_labels``, like the chart's ServiceMonitor)."""
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        ms = max(100, int(self.interval * 1000))
        return {
            "global": {"scrape_interval": f"{ms}ms", "scrape_timeout": f"{int(ms * 0.9)}ms",
                       "evaluation_interval": f"{ms}ms"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "honor_labels": True, "static_configs": [
                    {"targets": addresses, "labels": self.target_labels}]}
                for job, addresses in self.targets.items()],
        }  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps(self.config(), indent=1))  # JSON is YAML
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={config}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address={LOOPBACK}:{self.port}",
                 "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}: "
                                      f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise PrometheusError(f"prometheus on {self.url} not ready after {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); safe to call twice."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    # -- HTTP API ------------------------------------------------------------------------
    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None},
                                       doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query (``/api/v1/query``) at Unix time ``at`` (default: now)."""
        data = self.api("query", query=expr, time=at)
        if data["resultType"] == "scalar":
            return [Series({}, (Sample(float(data["result"][0]), float(data["result"][1])),))]
        return [_series(r) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query (``/api/v1/query_range``), as a Grafana time series panel sends it."""
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return [_series(r) for r in data["result"]]

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's ``label_values(match, label)`` variable query lists."""
        return list(self.api(f"label/{label}/values", **{"match[]": match}))

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])

    def wait_for_targets(self, timeout: float = 30.0) -> None:
        """Service discovery hands targets to the scrapers only every 5 s: wait for them."""
        wanted = sum(len(a) for a in self.targets.values())
        deadline = time.monotonic() + timeout
        while len(self.active_targets()) < wanted:
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus lists no scrape targets after {timeout:.0f} s")
            time.sleep(0.1)

    def scrape_times(self, job: str, since: float, until: float | None = None) -> list[Sample]:
        """The raw ``up`` samples of ``job`` (their real timestamps) between two times."""
        until = time.time() if until is None else until
        window = max(1, int(until - since) + 2)
        series = self.query(f'up{{job="{job}"}}[{window}s]', at=until)
        return sorted((s for one in series for s in one.samples if s.t >= since),
                      key=lambda s: s.t)


@contextmanager
def running(binary: str, workdir: Path, targets: dict[str, Sequence[str]], *,
            interval: float = 0.5, rule_files: Sequence[Path] = ()) -> Iterator[Prometheus]:
    """A started server whose targets are being scraped; stopped on exit, whatever happens."""
    server = Prometheus(binary, workdir, targets, interval=interval, rule_files=rule_files)
    server.start()
    try:
        server.wait_for_targets()
        yield server
    finally:
        server.stop()
