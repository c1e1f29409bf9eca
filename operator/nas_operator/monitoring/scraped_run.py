"""A local search (``kubenas run --metrics-port``) scraped by a real Prometheus from start to end.

The search runs as the user would start it, in its own process with real trainer
subprocesses; Prometheus scrapes its ``/metrics`` every ``interval`` seconds. The runner
serves ``/metrics`` until it exits, after drawing its pictures, so the last successful
scrape sees the finished search; queries are evaluated at that scrape's time (later ones
see the target down and the series stale). See docs/monitoring.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nas_operator.monitoring.prometheus import Prometheus, PrometheusError, free_port, running

JOB = "kubenas-run"
"""The scrape job's name (the dashboard's ``$job`` variable lists it)."""


@dataclass(frozen=True)
class ScrapedRun:
    """What the run left: its folder, exit code, output, and when it was scraped."""

    folder: Path
    exit_code: int
    output: str
    started: float
    ended: float
    first_scrape: float
    last_scrape: float
    """Unix time of the last successful scrape (``up == 1``): the moment to query."""
    scrapes: int


def _kill_leftovers(runner: subprocess.Popen[str], folder: Path) -> None:
    """A runner that did not finish: kill it and every trainer its run folder lists."""
    from nas_operator.local.launcher import process_alive

    if runner.poll() is None:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    for pid_file in folder.glob("trials/*/a*/pid"):
        info = json.loads(pid_file.read_text())
        if process_alive(info["pid"], info.get("start")):
            os.killpg(info["pid"], signal.SIGKILL)


def run_search(server: Prometheus, port: int, search_file: Path, folder: Path, *,
               timeout: float = 600.0, cwd: Path | None = None) -> ScrapedRun:
    """Run ``kubenas run SEARCH --metrics-port PORT`` to its end while ``server`` scrapes it."""
    command = [sys.executable, "-m", "nas_operator.cli", "run", str(search_file), "--out",
               str(folder), "--metrics-port", str(port), "--quiet"]
    started = time.time()
    runner = subprocess.Popen(command, cwd=cwd, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = runner.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_leftovers(runner, folder)
        raise PrometheusError(
            f"kubenas run {search_file} did not finish in {timeout:.0f} s") from None
    except BaseException:
        _kill_leftovers(runner, folder)
        raise
    ended = time.time()
    time.sleep(2 * server.interval)  # the failed scrape after the end marks the series stale
    up = [s for s in server.scrape_times(JOB, started) if s.v == 1]
    if not up:
        raise PrometheusError(f"prometheus never scraped the run ({server.log}):\n{output}")
    return ScrapedRun(folder=folder, exit_code=runner.returncode, output=output,
                      started=started, ended=ended, first_scrape=up[0].t,
                      last_scrape=up[-1].t, scrapes=len(up))


@contextmanager
def scraped_search(binary: str, search_file: Path, workdir: Path, *, interval: float = 0.5,
                   timeout: float = 600.0, cwd: Path | None = None,
                   ) -> Iterator[tuple[Prometheus, ScrapedRun]]:
    """Prometheus up and scraping first, then the search; the server stays up for queries."""
    port = free_port()
    with running(binary, workdir / "prometheus", {JOB: [f"127.0.0.1:{port}"]},
                 interval=interval) as server:
        yield server, run_search(server, port, search_file, workdir / "run", timeout=timeout,
                                 cwd=cwd)
