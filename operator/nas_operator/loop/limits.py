"""``objective.constraints``: every proposal is counted before launch; one over a limit is
never trained.

Counting needs the trainer's model builders, which the operator package never imports
(docs/design.md §9): one counting process per driver (``python -m
nas_trainer.count_server``, shipped in both images) builds each child on the ``meta``
device and answers its parameters and multiply-adds. ``LimitGate.screen`` runs in the
worker thread with the strategy calls: an infeasible proposal is told to the strategy
with the penalty and replaced by a new one, up to ``maxConsecutiveInfeasible`` in a row.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller_policy.strategies.registry import is_weight_sharing

if TYPE_CHECKING:
    from nas_operator.api import NASSearchSpec
    from nas_operator.loop.proposals import NewTrial, ProposalSource

COUNT_COMMAND = (sys.executable, "-m", "nas_trainer.count_server")


class LimitsError(Exception):
    """The search cannot go on under its constraints; ``reason`` is the condition's reason,
    ``rejected`` the proposals refused (and told) before it gave up, still to be recorded."""

    def __init__(self, reason: str, message: str, rejected: list[Rejected] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.rejected = rejected or []


class CountingProcess:
    """One ``nas_trainer.count_server`` child, shared by every search of a driver; requests
    are serialised (each search's worker thread asks in turn)."""

    def __init__(self, command: tuple[str, ...] = COUNT_COMMAND) -> None:
        self.command = command
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _spawn(self) -> subprocess.Popen[str]:
        """The running child, started if there is none (call with the lock held)."""
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._proc = subprocess.Popen(
                    self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    bufsize=1)
            except OSError as exc:
                raise LimitsError("ConstraintsUnusable", "spec.objective.constraints: the "
                                  f"counting process cannot start ({exc})") from exc
        return self._proc

    def start(self) -> None:
        """Start the child now, without waiting for it: importing torch takes it seconds,
        better spent while the driver builds the strategy than before the first count."""
        with self._lock, contextlib.suppress(LimitsError):  # ``ask`` reports it then
            self._spawn()

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._proc = self._spawn()
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except OSError:
                line = ""
            if not line:
                raise LimitsError("ConstraintsUnusable", "spec.objective.constraints: the "
                                  "counting process (python -m nas_trainer.count_server) ended; "
                                  "is the trainer package installed beside the operator?")
            return json.loads(line)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


SHARED = CountingProcess()
"""The driver's counting process (started by ``prestart`` or on first use)."""


def prestart(spec: NASSearchSpec, process: CountingProcess = SHARED) -> bool:
    """Start the counting process if ``spec`` will count its proposals (constraints, and a
    strategy that proposes: weight-sharing searches are not checked); True if it does."""
    if spec.effective_objective().constraints is None or is_weight_sharing(
            spec.strategy.type or ""):
        return False
    process.start()
    return True


@dataclass
class Rejected:
    """An infeasible proposal and its figures; ``limit`` is what it broke, as the
    ``kubenas_trials_infeasible_total`` label says it (``metrics.INFEASIBLE_LIMITS``)."""

    proposal: NewTrial
    figures: dict[str, float]
    reason: str
    limit: str = "uncountable"


def limit_label(broken: list[str]) -> str:
    """One label per refused proposal: the field it broke, ``both``, or ``uncountable``."""
    if not broken:
        return "uncountable"
    return broken[0] if len(broken) == 1 else "both"


@dataclass
class LimitGate:
    """Counts one search's proposals and keeps those within ``objective.constraints``."""

    spec: NASSearchSpec
    process: CountingProcess = field(default_factory=lambda: SHARED)
    consecutive: int = 0
    _key: int | None = None
    _cache: dict[tuple[int, ...], tuple[int, int]] = field(default_factory=dict)

    @property
    def constraints(self) -> Any:
        return self.spec.effective_objective().constraints

    def _setup(self) -> int:
        if self._key is None:
            training = self.spec.trial.training
            reply = self.process.ask({"setup": {
                "space": self.spec.searchSpace.type,
                "spaceOptions": dict(self.spec.searchSpace.options),
                "dataset": self.spec.dataset_for("search").trainer_spec().model_dump(mode="json"),
                "model": training.model.model_dump(mode="json"),
            }})
            if "error" in reply:
                raise LimitsError("ConstraintsUnusable", str(reply["error"]))
            self._key = int(reply["key"])
        return self._key

    def figures(self, tokens: list[int]) -> tuple[int, int] | str:
        """(params, multiply-adds) of ``tokens``, or why they cannot be counted."""
        key = tuple(tokens)
        if key not in self._cache:
            reply = self.process.ask({"key": self._setup(), "tokens": list(tokens)})
            if "error" in reply:
                return str(reply["error"])
            self._cache[key] = (int(reply["params"]), int(reply["flops"]))
        return self._cache[key]

    def screen(self, source: ProposalSource, n: int, penalty: float
               ) -> tuple[list[NewTrial], list[Rejected]]:
        """``n`` proposals within the limits (fewer if the source runs dry), and those
        rejected on the way, each already told to the source with ``penalty``."""
        limits = self.constraints
        kept: list[NewTrial] = []
        rejected: list[Rejected] = []
        while len(kept) < n:
            batch = source.propose(n - len(kept))
            if not batch:
                break
            for proposal in batch:
                counted = self.figures(list(proposal.tokens or []))
                if isinstance(counted, str):
                    figures, reason, broken = {}, counted, []
                else:
                    figures = {"params": float(counted[0]), "flops": float(counted[1])}
                    reason, broken = limits.over(*counted), limits.broken(*counted)
                if reason is None:
                    kept.append(proposal)
                    self.consecutive = 0
                    continue
                source.reject(proposal, penalty)
                rejected.append(Rejected(proposal, figures, reason, limit_label(broken)))
                self.consecutive += 1
                if self.consecutive >= limits.maxConsecutiveInfeasible:
                    raise LimitsError("NothingFeasible", (
                        f"{self.consecutive} proposals in a row broke spec.objective.constraints "
                        f"(last: {reason}); raise the limit "
                        f"(maxParams {limits.maxParams}, maxFlops {limits.maxFlops}) or make "
                        "the space or spec.trial.training.model smaller"), rejected)
        return kept, rejected
