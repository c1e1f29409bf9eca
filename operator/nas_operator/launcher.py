"""How the search loop starts and stops trials, without knowing where they run.

The loop hands a ``LaunchRequest`` (trial document, names, token) to a
``Launcher``: Kubernetes Jobs in the operator, local processes in ``kubenas
run``, simulated trials in tests and benchmarks. Launchers never decide
anything; they push what they observe back to the loop through a
``TrialObserver`` (``SearchLoop`` is one): the attempt started, exited with a
code and a termination message, or was lost. The trainer's HTTP reports go to
the loop through the status API.

The simulated launcher of tests and benchmarks is in ``nas_operator.testing``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from controller_policy.contract import TrialDocument
from nas_operator.api import DatasetClaim, ModelOutput, TrialSpec

REPORT_PATH = "/v1/namespaces/{namespace}/searches/{search}/trials/{trial}/reports"
"""The status API route a trainer POSTs its reports to."""


def report_url(base: str | None, namespace: str, search: str, trial: str) -> str | None:
    """Full report URL of one trial under the status API's base URL (None without a base)."""
    if not base:
        return None
    return base.rstrip("/") + REPORT_PATH.format(namespace=namespace, search=search, trial=trial)


@dataclass(frozen=True)
class LaunchRequest:
    """One attempt of one trial, with everything a launcher needs to run it."""

    namespace: str
    search: str
    trial: str
    """Deterministic trial name, ``<search>-t<index>`` (``-f<index>`` for final training)."""
    attempt: int
    job_name: str
    """Deterministic name of this attempt's Job/process: ``<trial>-a<attempt>``."""
    document: TrialDocument
    token: str
    """Per-trial bearer token for the status API (HMAC, see ``tokens``)."""
    report_url: str | None = None
    """Full URL of this trial's report endpoint, when the loop knows the status API address."""
    active_deadline_seconds: int | None = None
    dataset_claim: DatasetClaim | None = None
    """The PersistentVolumeClaim of the attempt's dataset: pod launchers mount it at
    ``document.dataset.path``; local processes read that path directly."""
    pod: TrialSpec | None = None
    """``spec.trial`` as it was when the attempt launched: pod launchers build its pod from it
    (image, resources, nodeSelector, tolerations, queue)."""
    model_output: ModelOutput | None = None
    """A final attempt's ``finalTraining.output``: pod launchers mount its claim."""

    @property
    def stage(self) -> str:
        """``search``, or ``final`` (retraining): a final attempt saves its trained model
        (``document.outputDir``, which each launcher points at a folder of its own)."""
        return trial_stage(self.trial)


def trial_stage(trial: str) -> str:
    """``search`` or ``final`` from a trial name (``<search>-t0007`` / ``<search>-f0001``)."""
    return "final" if trial.rsplit("-", 1)[-1].startswith("f") else "search"


class TrialObserver(Protocol):
    """What a launcher tells the loop; each call is idempotent and never raises on stale input."""

    def on_trial_started(self, trial: str, attempt: int) -> Any: ...

    def on_trial_exit(
        self, trial: str, attempt: int, exit_code: int | None, termination_message: str | None
    ) -> Any: ...

    def on_trial_lost(self, trial: str, attempt: int, reason: str) -> Any: ...

    def is_current(self, trial: str, attempt: int) -> bool:
        """Whether ``attempt`` is the trial's launched, unfinished attempt."""
        ...


class Launcher(ABC):
    """Starts, stops and re-adopts trial attempts."""

    def attach(self, observer: TrialObserver) -> None:  # noqa: B027 - optional hook
        """Called once by the loop before any launch; launchers that report to a loop keep it."""

    @abstractmethod
    async def launch(self, request: LaunchRequest) -> None:
        """Start the attempt. Launching an attempt that already exists is a no-op (adoption).

        Raise to say it could not be started; the loop counts a failed attempt.
        """

    @abstractmethod
    async def cancel(self, trial: str, attempt: int) -> None:
        """Stop the attempt if it runs; no-op if it is unknown or finished. No exit is reported."""

    async def adopt(self, request: LaunchRequest) -> bool:
        """After a restart: re-attach to an attempt launched before it.

        Return True if the attempt exists (the launcher will report its exit,
        even if it already ended), False if it is gone (the loop retries it).
        The default knows nothing, so every attempt counts as gone.
        """
        return False
