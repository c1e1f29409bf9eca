"""Early stopping in the loop: the curves a rule decides on, its decisions, and their record.

Why a module of its own: the rules (``controller_policy.early_stopping``) are pure;
this keeps what they need from one search (every search trial's per-epoch score,
which trials completed) and what they decided, all of it in the checkpoint. The
ledger forgets a finished trial's epochs (it compacts), a rule must not.

Cheap to checkpoint: every search trial's curve is in each checkpoint, so each curve's
JSON text is kept until that curve changes (one trial's epoch report changes one curve)
and a checkpoint joins the texts (``to_json``), as the ledger does with its entries.

Restart-exact: a decision is taken once per (trial, attempt, epoch), from the curves
as they are when that epoch report is accepted, and recorded here at once: the trial
is ``EarlyStopped`` in the ledger and waits in ``to_cancel`` until a checkpoint holding
the decision has been written; only then is its process stopped (``flush``). A loop
restarted in between reads the decision back and stops the process itself; it never
decides again on an epoch it decided on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller_policy.early_stopping import Curve, Decision, EarlyStopping, Rule, oriented
from controller_policy.objective import RewardError, compute_reward
from nas_operator.ledger import Trial
from nas_operator.loop.events import EventReason

if TYPE_CHECKING:
    from nas_operator.api import NASSearchSpec
    from nas_operator.ledger import Ledger
    from nas_operator.loop.timers import Timers
    from nas_operator.metrics import SearchMetrics


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a trial was stopped early (its NASTrial status and events say this)."""

    rule: str
    epoch: int
    """Epochs it had run when stopped (1-based: the rung or epoch the rule acted at)."""
    reason: str
    budget: int
    """Epochs it would have run: ``budget - epoch`` were saved."""

    @property
    def saved(self) -> int:
        return max(0, self.budget - self.epoch)

    def to_state(self) -> list[Any]:
        return [self.rule, self.epoch, self.reason, self.budget]

    @classmethod
    def from_state(cls, data: list[Any]) -> Stop:
        rule, epoch, reason, budget = data
        return cls(rule, int(epoch), reason, int(budget))


def scores(metric: str, epochs: list[dict[str, float]]) -> tuple[float, ...]:
    """The metric of the contiguous epochs 0, 1, ... of one attempt, oriented (higher is
    better); it ends at the first gap or the first epoch without the metric."""
    values: list[float] = []
    for i, entry in enumerate(epochs):
        if int(entry.get("epoch", i)) != i or metric not in entry:
            break
        values.append(entry[metric])
    return oriented(metric, values)


class EarlyStopper:
    """One search's early-stopping state: curves by trial index, decisions, pending stops."""

    def __init__(self, settings: EarlyStopping, metric: str) -> None:
        self.settings = settings
        self.rule: Rule = settings.rule()
        self.metric = metric
        self.curves: dict[int, tuple[float, ...]] = {}
        self._texts: dict[int, str] = {}
        """Per trial index: the JSON text of its curve (kept in step with ``curves``)."""
        self.completed: set[int] = set()
        self.decided: dict[int, tuple[int, int]] = {}
        """Per trial index: (attempt, epoch) of the last decision taken (never taken twice)."""
        self.stopped: dict[int, Stop] = {}
        self.to_cancel: dict[str, int] = {}
        """Stopped trials whose process may still run: trial name -> attempt."""

    # --- inputs from the loop ------------------------------------------------------------
    def on_epoch(self, rec: Trial, budget: int) -> Decision | None:
        """An epoch report of ``rec`` was accepted: update its curve and decide on it.
        A stop is returned (and recorded); a decision to continue is only recorded."""
        if rec.stage != "search":
            return None
        curve = scores(self.metric, rec.epochs)
        self._set_curve(rec.index, curve)
        epoch = len(curve)
        if epoch == 0 or self.decided.get(rec.index, (-1, 0)) >= (rec.attempt, epoch):
            return None
        others = [Curve(i, c, i in self.completed) for i, c in self.curves.items()
                  if i != rec.index]
        decision = self.rule.decide(Curve(rec.index, curve), others, budget)
        if decision is None:
            return None
        self.decided[rec.index] = (rec.attempt, epoch)
        if not decision.stop:
            return None
        self.stopped[rec.index] = Stop(decision.rule, decision.epoch, decision.reason, budget)
        self.to_cancel[rec.name] = rec.attempt
        return decision

    def on_success(self, rec: Trial, epochs: list[dict[str, float]]) -> None:
        """A search trial completed: its whole curve is a peer for the median rule."""
        if rec.stage != "search":
            return
        self._set_curve(rec.index, scores(self.metric, epochs))
        self.completed.add(rec.index)

    def _set_curve(self, index: int, curve: tuple[float, ...]) -> None:
        if self.curves.get(index) != curve or index not in self._texts:
            self.curves[index] = curve
            self._texts[index] = json.dumps(list(curve), separators=(",", ":"))

    # --- what the status shows -----------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Stopped trials by rule."""
        out: dict[str, int] = {}
        for stop in self.stopped.values():
            out[stop.rule] = out.get(stop.rule, 0) + 1
        return out

    def epochs_saved(self) -> int:
        return sum(s.saved for s in self.stopped.values())

    # --- checkpoint ----------------------------------------------------------------------
    def to_state(self, curves: bool = True) -> dict[str, Any]:
        return {
            **({"curves": {str(i): list(c) for i, c in self.curves.items()}} if curves else {}),
            "completed": sorted(self.completed),
            "decided": {str(i): list(d) for i, d in self.decided.items()},
            "stopped": {str(i): s.to_state() for i, s in self.stopped.items()},
            "to_cancel": dict(self.to_cancel),
        }

    def to_json(self) -> str:
        """``to_state`` as JSON text, the curves joined from their kept texts."""
        curves = ",".join(f'"{i}":{text}' for i, text in self._texts.items())
        rest = json.dumps(self.to_state(curves=False), separators=(",", ":"))
        return f'{{"curves":{{{curves}}},{rest[1:]}'

    def load(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        self.curves = {int(i): tuple(float(v) for v in c) for i, c in data["curves"].items()}
        self._texts = {i: json.dumps(list(c), separators=(",", ":"))
                       for i, c in self.curves.items()}
        self.completed = {int(i) for i in data["completed"]}
        self.decided = {int(i): (int(d[0]), int(d[1])) for i, d in data["decided"].items()}
        self.stopped = {int(i): Stop.from_state(s) for i, s in data["stopped"].items()}
        self.to_cancel = {str(k): int(v) for k, v in data["to_cancel"].items()}


class StopsEarly:
    """The early-stopping half of ``SearchLoop`` (attributes set by ``SearchLoop.__init__``):
    decide on an accepted epoch report, end the trial, stop its process after the checkpoint."""

    stopper: EarlyStopper | None
    spec: NASSearchSpec
    ledger: Ledger
    metrics: SearchMetrics | None
    timers: Timers
    _emit: Callable[..., None]
    _metric: Callable[..., None]
    _observe_duration: Callable[[Trial, float], None]
    _changed: Callable[[], None]
    _checkpoint: Callable[[], Awaitable[None]]
    _cancel_quietly: Callable[[str, int], Awaitable[None]]
    _dirty: bool

    def _early_stop(self, rec: Trial) -> None:
        """An epoch of ``rec`` was recorded: stop it now if the rule says so."""
        if self.stopper is None:
            return
        decision = self.stopper.on_epoch(rec, self.spec.trial.training.epochs)
        if decision is None:
            return
        reward = None
        if self.stopper.settings.stoppedReward == "partial":
            with contextlib.suppress(RewardError):  # no metric to score: nothing to tell
                reward = compute_reward(self.spec.effective_objective(), rec.epochs)
        now = time.time()
        self.timers.clear(rec.name)
        self._observe_duration(rec, now)
        reason = f"stopped early by {decision.rule} at epoch {decision.epoch}: {decision.reason}"
        self.ledger.stop_early(rec, reward, reason, now)
        stop = self.stopper.stopped[rec.index]
        if self.metrics is not None:
            self.metrics.early_stopped(decision.rule, stop.saved)
        told = ("partial reward " + f"{reward:.6g}" if reward is not None
                else "not told to the strategy")
        self._emit(EventReason.TRIAL_EARLY_STOPPED, f"trial {rec.name} {reason} ({told}; "
                   f"{stop.saved} epochs saved)", rec.name, rule=decision.rule,
                   epoch=decision.epoch, reward=reward, saved=stop.saved)
        self._changed()  # the worker stops the attempt at its next step (``_cancel_stopped``)

    async def _cancel_stopped(self) -> None:
        """Stop the processes of early-stopped trials, once a checkpoint holds the decision."""
        if self.stopper is None or not self.stopper.to_cancel:
            return
        await self._checkpoint()
        pending = dict(self.stopper.to_cancel)
        await asyncio.gather(*(self._cancel_quietly(name, a) for name, a in pending.items()))
        for name in pending:
            self.stopper.to_cancel.pop(name, None)
        self._dirty = True
