"""Deliver a trial's reports: HTTP POSTs to the status API plus the termination message.

Why this shape:
* Training never waits on the network: reports go through one background
  worker, which also keeps them in order.
* Delivery retries connection errors, 429 and 5xx with exponential backoff and
  jitter within a bounded time per report (``KUBENAS_REPORT_RETRY_SECONDS``);
  any other 4xx is final (the server has judged the report) and is logged.
* After a report gave up, later epoch reports get one try each and are skipped
  when a newer report is waiting: the final report carries every epoch anyway,
  so a dead server costs about two retry budgets, not one per epoch.
* The terminal report (final/interrupted/failed) is also written to the
  termination-message file, trimmed to Kubernetes' 4096 bytes by dropping the
  oldest epochs first, so the operator still gets the reward if HTTP failed.

Only the standard library (and the contract's pydantic ``Report``) is used, so any
training script can ship it: the built-in trainer (``nas_trainer``), a user's own script
through ``kubenas_trial.Trial`` and the ``kubenas-report`` command all deliver through
this one ``Reporter``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from controller_policy.contract import (
    DEFAULT_TERMINATION_FILE,
    ENV_REPORT_TOKEN,
    ENV_REPORT_URL,
    ENV_TERMINATION_FILE,
    TERMINATION_MESSAGE_LIMIT,
    Report,
)

log = logging.getLogger("kubenas_trial")

ENV_REPORT_RETRY_SECONDS = "KUBENAS_REPORT_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
TERMINAL_KINDS = frozenset({"final", "interrupted", "failed"})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by ``budget_s`` per report."""

    budget_s: float = DEFAULT_RETRY_SECONDS
    base_delay_s: float = 0.25
    max_delay_s: float = 10.0
    request_timeout_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-range jitter on the doubled delay, so restarted trainers do not retry in lockstep."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return rng.uniform(ceiling / 2, ceiling)


def retry_policy_from_env() -> RetryPolicy:
    raw = os.environ.get(ENV_REPORT_RETRY_SECONDS)
    if raw is None:
        return RetryPolicy()
    try:
        budget = float(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_REPORT_RETRY_SECONDS}={raw!r} is not a number of seconds (e.g. 60)"
        ) from None
    if budget < 0:
        raise ValueError(f"{ENV_REPORT_RETRY_SECONDS}={raw!r} must be >= 0")
    return RetryPolicy(budget_s=budget, request_timeout_s=max(1.0, min(10.0, budget)))


def fit_termination_message(report: Report, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The report as JSON within ``limit`` bytes, dropping the oldest epochs first."""
    body = report.model_dump(mode="json", exclude_none=True)
    text = json.dumps(body, separators=(",", ":"))
    if len(text.encode()) <= limit:
        return text
    epochs = list(body.get("epochs", []))
    lo, hi = 0, len(epochs)  # binary search for the most recent epochs that fit
    while lo < hi:
        keep = (lo + hi + 1) // 2
        body["epochs"] = epochs[len(epochs) - keep :]
        if len(json.dumps(body, separators=(",", ":")).encode()) <= limit:
            lo = keep
        else:
            hi = keep - 1
    body["epochs"] = epochs[len(epochs) - lo :] if lo else []
    text = json.dumps(body, separators=(",", ":"))
    if len(text.encode()) <= limit:
        return text
    # Still too large: the metrics are what the operator needs; drop the extras.
    for key in ("architecture", "epochs", "reason"):
        body.pop(key, None)
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) <= limit:
            return text
    minimal = {"kind": report.kind, "trial": report.trial, "attempt": report.attempt}
    return json.dumps(minimal, separators=(",", ":"))


class Reporter:
    """Reports one trial attempt's progress; safe to use from the training thread only."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        termination_file: str | os.PathLike[str] | None = DEFAULT_TERMINATION_FILE,
        policy: RetryPolicy | None = None,
        echo_stdout: bool | None = None,
    ) -> None:
        self.url = url or None
        self.token = token
        self.termination_file = Path(termination_file) if termination_file else None
        self.policy = policy or RetryPolicy()
        self.echo_stdout = self.url is None if echo_stdout is None else echo_stdout
        self.delivered: list[Report] = []
        """Reports the server accepted (2xx), in order."""
        self.last_problem: str | None = None
        """Why the last report that was not delivered was not (the server's answer or the
        connection error), for a caller that reports it (``kubenas-report``)."""
        self.refused: list[tuple[Report, str]] = []
        """Reports the server judged and refused (a 4xx other than 429), with its answer."""
        self._queue: queue.Queue[tuple[Report, float | None] | None] = queue.Queue()
        self._degraded = False
        self._hurry = threading.Event()
        self._rng = random.Random()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._worker: threading.Thread | None = None
        if self.url is not None:
            self._worker = threading.Thread(target=self._run, name="reporter", daemon=True)
            self._worker.start()

    @classmethod
    def from_env(cls) -> Reporter:
        """Configured by the trial's environment (see ``controller_policy.contract``)."""
        return cls(
            url=os.environ.get(ENV_REPORT_URL),
            token=os.environ.get(ENV_REPORT_TOKEN),
            termination_file=os.environ.get(ENV_TERMINATION_FILE, DEFAULT_TERMINATION_FILE),
            policy=retry_policy_from_env(),
        )

    # --- public -------------------------------------------------------------------------------
    def send(self, report: Report, budget_s: float | None = None) -> None:
        """Queue ``report`` for delivery and return at once (``budget_s`` caps the retry time)."""
        if self.echo_stdout:
            print(report.model_dump_json(exclude_none=True), flush=True)
        if self._worker is not None:
            self._queue.put((report, budget_s))

    def finish(self, report: Report, budget_s: float | None = None) -> None:
        """Send the terminal ``report``, write it to the termination file, wait for delivery (bounded).

        A SIGTERMed trainer passes a short ``budget_s``: Kubernetes kills it when the
        grace period ends, and the termination message already holds the report. Epoch
        reports still pending are then dropped (the terminal report carries their metrics).
        """
        if report.kind not in TERMINAL_KINDS:
            raise ValueError(f"finish() takes a final/interrupted/failed report, got {report.kind}")
        if budget_s is not None:
            self._hurry.set()
        self.write_termination_message(report)
        self.send(report, budget_s)
        self.close()

    def close(self) -> None:
        """Stop the worker after the queued reports; waits at most about two retry budgets."""
        if self._worker is None:
            return
        self._queue.put(None)
        wait = 2 * self.policy.budget_s + 3 * self.policy.request_timeout_s
        self._worker.join(timeout=wait)
        if self._worker.is_alive():
            log.warning("report delivery still pending after its time budget; giving up")
        self._worker = None

    def write_termination_message(self, report: Report) -> None:
        if self.termination_file is None:
            return
        try:
            self.termination_file.write_text(fit_termination_message(report))
        except OSError as exc:
            log.warning("could not write termination message %s: %s", self.termination_file, exc)

    # --- worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            report, budget_s = item
            superseded = not self._queue.empty()
            if report.kind == "epoch" and (self._hurry.is_set() or (self._degraded and superseded)):
                log.info("skipping epoch %s report: the terminal report carries it", report.epoch)
                continue
            single_try = self._degraded and report.kind == "epoch"
            if budget_s is None:
                budget_s = self.policy.budget_s
            ok = self._deliver(report, 0.0 if single_try else min(budget_s, self.policy.budget_s))
            if ok:
                self.delivered.append(report)
                self._degraded = False

    def _deliver(self, report: Report, budget_s: float) -> bool:
        body = report.model_dump_json(exclude_none=True).encode()
        deadline = time.monotonic() + budget_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            timeout = max(0.5, min(self.policy.request_timeout_s, remaining))
            status, detail, retry_after = self._post(body, timeout)
            if status is not None and 200 <= status < 300:
                return True
            if report.kind == "epoch" and self._hurry.is_set():
                return False  # stopping: the terminal report carries this epoch
            self.last_problem = detail
            if status is not None and 400 <= status < 500 and status != 429:
                log.error(
                    "status API refused the %s report with HTTP %s: %s", report.kind, status, detail
                )
                self.refused.append((report, detail))
                return False  # the server judged it; resending will not change that
            delay = max(self.policy.delay(attempt, self._rng), retry_after or 0.0)
            if time.monotonic() + delay > deadline:
                log.warning(
                    "giving up on the %s report after %d attempt(s): %s",
                    report.kind,
                    attempt + 1,
                    detail,
                )
                self._degraded = True
                return False
            log.info("report %s failed (%s); retrying in %.2fs", report.kind, detail, delay)
            if report.kind == "epoch":
                self._hurry.wait(delay)  # wakes at once when the trainer is stopping
            else:
                time.sleep(delay)
            attempt += 1

    def _post(self, body: bytes, timeout: float) -> tuple[int | None, str, float | None]:
        """One POST -> (HTTP status or None on a connection error, detail, Retry-After seconds)."""
        assert self.url is not None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return resp.status, "ok", None
        except urllib.error.HTTPError as exc:
            text = exc.read(512).decode("utf-8", "replace") if exc.fp else ""
            return exc.code, f"HTTP {exc.code} {text}".strip(), _retry_after(exc.headers)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"connection error: {reason}", None


def _retry_after(headers: object) -> float | None:
    value = getattr(headers, "get", lambda _k: None)("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
