"""The reporter against a real aiohttp server on loopback: order, token, retries, give-up.

The server runs in its own thread and event loop, the way the operator's status
API is a separate process for the trainer; the end-to-end tests run the real
``python -m nas_trainer`` as a subprocess on a tiny child and bundled data.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller_policy.contract import Report
from controller_policy.spaces import make_space
from nas_trainer.reporter import Reporter, RetryPolicy, fit_termination_message

FAST = RetryPolicy(budget_s=5.0, base_delay_s=0.02, max_delay_s=0.2, request_timeout_s=2.0)


class ReportServer:
    """A status-API stand-in that records every call and can fail the first N of them."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503, status_for: dict[str, int] | None = None):
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.status_for = status_for or {}
        self.calls: list[tuple[str | None, dict[str, Any]]] = []
        self.accepted: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/trials/t/report"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append((request.headers.get("Authorization"), body))
        if len(self.calls) <= self.fail_first:
            headers = {"Retry-After": "0.05"} if self.fail_status == 429 else {}
            return web.Response(status=self.fail_status, text="not now", headers=headers)
        status = self.status_for.get(body["kind"], 200)
        if status != 200:
            return web.Response(status=status, text=f"{body['kind']} refused")
        self.accepted.append(body)
        return web.json_response({"ok": True})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/v1/trials/t/report", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> ReportServer:
        self._thread.start()
        assert self._ready.wait(10), "report server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def epoch_report(i: int) -> Report:
    return Report(kind="epoch", trial="t", epoch=i, metrics={"val_accuracy": min(0.1 * i, 1.0)})


def final_report(n: int) -> Report:
    epochs = [{"val_accuracy": min(0.1 * i, 1.0)} for i in range(n)]  # accuracies: at most 1
    return Report(kind="final", trial="t", metrics=epochs[-1], epochs=epochs)


def test_reports_arrive_in_order_with_the_bearer_token(tmp_path: Path) -> None:
    with ReportServer() as server:
        reporter = Reporter(server.url, "s3cret", tmp_path / "term", FAST)
        for i in range(3):
            reporter.send(epoch_report(i))
        reporter.finish(final_report(3))
    assert [(c["kind"], c.get("epoch")) for c in server.accepted] == [
        ("epoch", 0), ("epoch", 1), ("epoch", 2), ("final", None),
    ]
    assert {auth for auth, _ in server.calls} == {"Bearer s3cret"}
    assert json.loads((tmp_path / "term").read_text())["metrics"] == {"val_accuracy": 0.2}


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_failing_the_first_calls_still_gets_every_report(tmp_path: Path, status: int) -> None:
    with ReportServer(fail_first=4, fail_status=status) as server:
        reporter = Reporter(server.url, "tok", tmp_path / "term", FAST)
        for i in range(2):
            reporter.send(epoch_report(i))
        reporter.finish(final_report(2))
    assert [c["kind"] for c in server.accepted] == ["epoch", "epoch", "final"]
    assert [c.get("epoch") for c in server.accepted] == [0, 1, None]
    assert len(server.calls) == 4 + 3


def test_client_errors_are_not_retried_and_later_reports_still_go(tmp_path: Path) -> None:
    with ReportServer(status_for={"epoch": 400}) as server:
        reporter = Reporter(server.url, "tok", tmp_path / "term", FAST)
        started = time.monotonic()
        reporter.send(epoch_report(0))
        reporter.send(epoch_report(1))
        reporter.finish(final_report(2))
        elapsed = time.monotonic() - started
    assert [c["kind"] for _, c in server.calls] == ["epoch", "epoch", "final"]  # one call each
    assert [c["kind"] for c in server.accepted] == ["final"]
    assert elapsed < FAST.budget_s


def test_a_dead_server_costs_a_bounded_time_and_the_termination_file_still_holds_the_result(
    tmp_path: Path,
) -> None:
    policy = RetryPolicy(budget_s=1.0, base_delay_s=0.05, max_delay_s=0.2, request_timeout_s=1.0)
    reporter = Reporter(f"http://127.0.0.1:{closed_port()}/report", "tok", tmp_path / "term", policy)
    started = time.monotonic()
    for i in range(20):
        reporter.send(epoch_report(i))
    reporter.finish(final_report(20))
    elapsed = time.monotonic() - started
    assert elapsed < 2 * policy.budget_s + 2, f"gave up after {elapsed:.1f}s"
    assert reporter.delivered == []
    term = json.loads((tmp_path / "term").read_text())
    assert term["kind"] == "final" and len(term["epochs"]) == 20


def test_a_stopping_trainer_drops_pending_epoch_reports_and_caps_the_last_one(tmp_path: Path) -> None:
    """SIGTERM: Kubernetes kills the pod after its grace period, so finishing must be quick."""
    slow = RetryPolicy(budget_s=30.0, base_delay_s=0.5, max_delay_s=5.0, request_timeout_s=2.0)
    reporter = Reporter(f"http://127.0.0.1:{closed_port()}/report", "tok", tmp_path / "term", slow)
    for i in range(5):
        reporter.send(epoch_report(i))
    time.sleep(0.2)  # the first epoch report is now retrying
    started = time.monotonic()
    reporter.finish(Report(kind="interrupted", trial="t", reason="SIGTERM"), budget_s=1.0)
    assert time.monotonic() - started < 4.0
    assert json.loads((tmp_path / "term").read_text())["kind"] == "interrupted"


def test_without_a_url_reports_go_to_stdout_and_the_termination_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reporter = Reporter(None, None, tmp_path / "term")
    reporter.send(epoch_report(0))
    reporter.finish(final_report(1))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["epoch", "final"]
    assert json.loads((tmp_path / "term").read_text())["kind"] == "final"


def test_termination_message_keeps_the_newest_epochs_under_4096_bytes() -> None:
    epochs = [
        {"epoch_index": float(i), "val_accuracy": i / 1000, "val_loss": 1.0 / (i + 1), "lr": 0.1}
        for i in range(600)
    ]
    report = Report(kind="final", trial="t", metrics={"val_accuracy": 0.599, "best": 0.6}, epochs=epochs)
    text = fit_termination_message(report)
    assert len(text.encode()) <= 4096
    body = json.loads(text)
    assert body["metrics"] == {"val_accuracy": 0.599, "best": 0.6}
    kept = body["epochs"]
    assert 10 < len(kept) < 600
    assert kept == epochs[-len(kept):], "the newest epochs are kept, oldest first"


def test_small_reports_are_kept_whole() -> None:
    report = final_report(5)
    assert json.loads(fit_termination_message(report))["epochs"] == report.epochs


def test_bad_retry_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENAS_REPORT_RETRY_SECONDS", "soon")
    with pytest.raises(ValueError, match="KUBENAS_REPORT_RETRY_SECONDS='soon' is not a number"):
        Reporter.from_env()


# --- end to end: the real trainer process -------------------------------------------------------
def tiny_trial(tmp_path: Path, epochs: int = 2) -> Path:
    space = make_space("enas-micro", {"nodes": 1})
    doc = {
        "search": "s", "trial": "t", "seed": 1,
        "architecture": space.architecture(space.sample(0)).model_dump(),
        "spaceOptions": {"nodes": 1},
        "dataset": {"name": "digits", "maxTrainExamples": 128, "validationSize": 64},
        "training": {"epochs": epochs, "batchSize": 32, "learningRate": 0.05, "threads": 1,
                     "model": {"filters": 4, "cellsPerStage": 1, "stemMultiplier": 1}},
    }
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(doc))
    return path


def run_trainer(trial: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nas_trainer", "--trial", str(trial)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_trainer_reports_every_epoch_then_final_through_a_flaky_server(tmp_path: Path) -> None:
    with ReportServer(fail_first=2, fail_status=503) as server:
        proc = run_trainer(tiny_trial(tmp_path), {
            "KUBENAS_REPORT_URL": server.url, "KUBENAS_REPORT_TOKEN": "per-trial-token",
            "KUBENAS_TERMINATION_FILE": str(tmp_path / "term"),
            "KUBENAS_REPORT_RETRY_SECONDS": "10",
        })
    assert proc.returncode == 0, proc.stderr
    assert [(c["kind"], c.get("epoch")) for c in server.accepted] == [
        ("epoch", 0), ("epoch", 1), ("final", None),
    ]
    assert {auth for auth, _ in server.calls} == {"Bearer per-trial-token"}
    final = server.accepted[-1]
    assert final["epochs"] == [c["metrics"] for c in server.accepted[:2]]
    assert 0.0 <= final["metrics"]["val_accuracy"] <= 1.0


def test_trainer_with_a_dead_server_finishes_and_leaves_the_result_in_the_termination_file(
    tmp_path: Path,
) -> None:
    proc = run_trainer(tiny_trial(tmp_path), {
        "KUBENAS_REPORT_URL": f"http://127.0.0.1:{closed_port()}/report",
        "KUBENAS_REPORT_TOKEN": "tok",
        "KUBENAS_TERMINATION_FILE": str(tmp_path / "term"),
        "KUBENAS_REPORT_RETRY_SECONDS": "1",
    })
    assert proc.returncode == 0, proc.stderr
    term = json.loads((tmp_path / "term").read_text())
    assert term["kind"] == "final" and term["trial"] == "t"
    assert len(term["epochs"]) == 2 and "val_accuracy" in term["metrics"]
    assert "giving up" in proc.stderr
