"""The trial ledger: every trial of one search, its attempts, state and result.

Pure bookkeeping (no asyncio, no I/O) so that every transition is easy to test
and to checkpoint. Names are deterministic (``<search>-t0007``, final
retraining ``<search>-f0001``; attempts ``<trial>-a2``), so a restarted loop
finds its Jobs again and a repeated launch is recognised as the same one.

Memory stays flat over long searches: a trial that has finished and been told
to the strategy shrinks to a ``FinishedTrial`` (state, attempt, reward, digest
of its final report); architectures of the best ``TOP_K_LIMIT`` are kept in
``topk``. The full history lives where the driver writes it (NASTrial objects,
the local output folder), never here.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nas_operator.api import EPOCHS_IN_STATUS, TOP_K_LIMIT, TrialResult
from nas_operator.front import FrontMember, ParetoArchive

MAX_EPOCHS_KEPT = 1000
"""Epoch reports kept per running attempt (``objective.lastEpochs`` is at most 1000)."""
STAGE_LETTER = {"search": "t", "final": "f"}
BLOCK = 1024
"""Trials per checkpoint block (see ``Ledger.snapshot``)."""


class TrialState(StrEnum):
    QUEUED = "Queued"
    """Waiting for a slot (new, retried, or requeued by suspend)."""
    PENDING = "Pending"
    """Launched; its pod/process has not started yet."""
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    INFEASIBLE = "Infeasible"
    """Over ``objective.constraints``: counted, told to the strategy, never launched."""
    EARLY_STOPPED = "EarlyStopped"
    """Stopped by the early-stopping rule (``spec.earlyStopping``): ended, never failed."""

    @property
    def active(self) -> bool:
        return self in (TrialState.PENDING, TrialState.RUNNING)

    @property
    def terminal(self) -> bool:
        return self in (TrialState.SUCCEEDED, TrialState.FAILED, TrialState.CANCELLED,
                        TrialState.INFEASIBLE, TrialState.EARLY_STOPPED)


def trial_name(search: str, stage: str, index: int) -> str:
    return f"{search}-{STAGE_LETTER[stage]}{index:04d}"


def job_name(trial: str, attempt: int) -> str:
    return f"{trial}-a{attempt}"


def report_digest(body: Any) -> str:
    """Stable short digest of a report (to recognise a repeated final report)."""
    text = body if isinstance(body, str) else repr(body)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(slots=True)
class Trial:
    """A trial that is queued, running, or finished but not yet compacted."""

    index: int
    stage: str
    name: str
    seed: int
    proposal_id: int | None
    space: str | None
    tokens: list[int] | None
    """The architecture's tokens (None: an enas trial before its derived architecture)."""
    genotype: dict[str, Any] | None = None
    """Cached readable form of ``tokens`` (not checkpointed: derived again when needed)."""
    state: TrialState = TrialState.QUEUED
    attempt: int = 0
    launched: bool = False
    """Whether ``attempt`` has been handed to the launcher (False: launch it next)."""
    failures: int = 0
    epochs: list[dict[str, float]] = field(default_factory=list)
    epoch_count: int = 0
    """Epochs this attempt has reported (by report or in its final report)."""
    metrics: dict[str, float] = field(default_factory=dict)
    reward: float | None = None
    told: bool = False
    final_digest: str | None = None
    failure_reason: str | None = None
    start_time: float | None = None
    attempt_start: float | None = None
    completion_time: float | None = None
    point: list[float] | None = None
    """Multi-objective form: the objective values, oriented larger-is-better (a success)."""
    device: str | None = None
    """What the final report names as the device its latency was measured on (a success)."""

    @property
    def job_name(self) -> str:
        return job_name(self.name, self.attempt)

    def to_state(self) -> dict[str, Any]:
        return {
            "index": self.index, "stage": self.stage, "name": self.name, "seed": self.seed,
            "proposal_id": self.proposal_id, "space": self.space, "tokens": self.tokens,
            "state": self.state.value, "attempt": self.attempt,
            "launched": self.launched, "failures": self.failures, "epochs": list(self.epochs),
            "epoch_count": self.epoch_count,
            "metrics": dict(self.metrics), "reward": self.reward, "told": self.told,
            "final_digest": self.final_digest, "failure_reason": self.failure_reason,
            "start_time": self.start_time, "attempt_start": self.attempt_start,
            "completion_time": self.completion_time,
            **({"point": list(self.point)} if self.point is not None else {}),
            **({"device": self.device} if self.device is not None else {}),
        }  # fmt: skip

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Trial:
        data = dict(data)
        data["state"] = TrialState(data["state"])
        return cls(**data)


@dataclass(slots=True)
class FinishedTrial:
    """What is left of a finished, told trial: enough to answer late or repeated reports."""

    state: TrialState
    attempt: int
    reward: float | None
    final_digest: str | None
    epochs: int

    def to_state(self) -> list[Any]:
        return [self.state.value, self.attempt, self.reward, self.final_digest, self.epochs]

    @classmethod
    def from_state(cls, data: list[Any]) -> FinishedTrial:
        state, attempt, reward, digest, epochs = data
        return cls(TrialState(state), attempt, reward, digest, epochs)


@dataclass(slots=True)
class Ranked:
    """An entry of the top-k: a succeeded trial with its architecture."""

    name: str
    index: int
    stage: str
    reward: float
    metrics: dict[str, float]
    space: str | None
    tokens: list[int]
    device: str | None = None

    def result(self, genotype: dict[str, Any] | None = None) -> TrialResult:
        return TrialResult(
            trial=self.name, reward=self.reward, metrics=dict(self.metrics),
            tokens=list(self.tokens), genotype=genotype, device=self.device,
        )  # fmt: skip

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name, "index": self.index, "stage": self.stage, "reward": self.reward,
            "metrics": self.metrics, "space": self.space, "tokens": self.tokens,
            **({"device": self.device} if self.device is not None else {}),
        }  # fmt: skip


class Ledger:
    """Trials of both stages, queues of work for the loop, counters and the top-k."""

    def __init__(self, search: str) -> None:
        self.search = search
        self.trials: dict[str, list[Trial | FinishedTrial]] = {"search": [], "final": []}
        self.queue: deque[str] = deque()
        """Trials waiting for a slot, in launch order."""
        self.untold: deque[str] = deque()
        """Search trials that ended and whose result the strategy has not been told."""
        self.active: set[str] = set()
        self.live: dict[str, Trial] = {}
        """Trials not yet compacted, by name (the hot path of every report)."""
        self._blocks: dict[tuple[str, int], str] = {}
        """JSON text of checkpoint blocks whose trials are all compacted (they never change)."""
        self._texts: dict[tuple[str, int], list[str]] = {}
        """Per open block: the JSON text of each entry as of the last snapshot."""
        self._stale: dict[tuple[str, int], set[int]] = {}
        """Per open block: offsets of the entries changed since the last snapshot."""
        self._compacted: dict[tuple[str, int], int] = {}
        """Per block: how many of its trials are compacted (all: the block is closed)."""
        self.counts: dict[str, dict[str, int]] = {
            stage: {"succeeded": 0, "failed": 0, "cancelled": 0, "retried": 0, "running": 0,
                    "infeasible": 0, "stopped": 0}
            for stage in STAGE_LETTER
        }
        """Per stage: trials by outcome, attempts retried, attempts running now."""
        self.topk: list[Ranked] = []
        self.final_results: list[Ranked] = []
        self.front = ParetoArchive()
        """Multi-objective form: the non-dominated search trials (``nas_operator.front``)."""
        self.compactions = 0
        """Trials compacted so far: a snapshot taken when this was n holds the first n
        compactions, so a driver knows which finished trials a saved checkpoint covers."""

    # --- lookup -------------------------------------------------------------------
    def parse(self, name: str) -> tuple[str, int] | None:
        """(stage, index) of a well-formed trial name of this search, else None."""
        prefix = self.search + "-"
        if not name.startswith(prefix) or len(name) < len(prefix) + 5:
            return None
        letter, digits = name[len(prefix)], name[len(prefix) + 1 :]
        stage = {"t": "search", "f": "final"}.get(letter)
        if stage is None or not digits.isdigit() or trial_name(self.search, stage, int(digits)) != name:
            return None
        return stage, int(digits)

    def get(self, name: str) -> Trial | FinishedTrial | None:
        rec = self.live.get(name)
        if rec is not None:
            return rec
        parsed = self.parse(name)
        if parsed is None:
            return None
        stage, index = parsed
        items = self.trials[stage]
        return items[index] if index < len(items) else None

    def touch(self, trial: Trial) -> None:
        """``trial`` changed: its checkpoint entry is encoded again by the next snapshot."""
        self._stale.setdefault((trial.stage, trial.index // BLOCK), set()).add(trial.index % BLOCK)

    def live_trial(self, name: str) -> Trial:
        return self.live[name]

    def created(self, stage: str = "search") -> int:
        return len(self.trials[stage])

    def trained(self, stage: str = "search") -> int:
        """Trials created for training: infeasible proposals take no budget."""
        return len(self.trials[stage]) - self.counts[stage].get("infeasible", 0)

    def iter_live(self) -> Iterator[Trial]:
        yield from sorted(self.live.values(), key=lambda t: (t.stage != "search", t.index))

    # --- transitions --------------------------------------------------------------
    def add(self, stage: str, seed: int, proposal_id: int | None, space: str | None,
            tokens: list[int] | None, genotype: dict[str, Any] | None = None) -> Trial:
        """A new trial, queued for launch."""
        index = len(self.trials[stage])
        trial = Trial(index=index, stage=stage, name=trial_name(self.search, stage, index),
                      seed=seed, proposal_id=proposal_id, space=space, tokens=tokens,
                      genotype=genotype)  # fmt: skip
        self.trials[stage].append(trial)
        self.live[trial.name] = trial
        self.queue.append(trial.name)
        return trial

    def add_infeasible(self, seed: int, proposal_id: int | None, space: str | None,
                       tokens: list[int], figures: dict[str, float], penalty: float, reason: str,
                       now: float) -> Trial:
        """A search proposal over a limit: recorded with its figures and the penalty it was
        told, never queued (the caller compacts it once it has been announced)."""
        trial = self.add("search", seed, proposal_id, space, tokens)
        self.queue.pop()
        trial.state = TrialState.INFEASIBLE
        trial.metrics = dict(figures)
        trial.reward = penalty
        trial.told = True
        trial.failure_reason = reason
        trial.start_time = trial.completion_time = now
        self.counts["search"]["infeasible"] = self.counts["search"].get("infeasible", 0) + 1
        return trial

    def mark_launched(self, trial: Trial, now: float) -> None:
        self.touch(trial)
        trial.state = TrialState.PENDING
        trial.launched = True
        trial.attempt_start = now
        if trial.start_time is None:
            trial.start_time = now
        self.active.add(trial.name)

    def mark_running(self, trial: Trial) -> bool:
        if trial.state is TrialState.PENDING:
            self.touch(trial)
            trial.state = TrialState.RUNNING
            self.counts[trial.stage]["running"] += 1
            return True
        return False

    def _leave_active(self, trial: Trial) -> None:
        self.touch(trial)
        if trial.name in self.active:
            self.active.discard(trial.name)
            if trial.state is TrialState.RUNNING:
                self.counts[trial.stage]["running"] -= 1

    def succeed(self, trial: Trial, reward: float, metrics: dict[str, float],
                epochs: list[dict[str, float]], digest: str, now: float,
                device: str | None = None) -> None:
        self._leave_active(trial)
        trial.state = TrialState.SUCCEEDED
        trial.reward = reward
        trial.metrics = dict(metrics)
        trial.device = device
        trial.epoch_count = max(trial.epoch_count, len(epochs))
        trial.epochs = epochs[-EPOCHS_IN_STATUS:]
        trial.final_digest = digest
        trial.completion_time = now
        self.counts[trial.stage]["succeeded"] += 1
        ranked = Ranked(trial.name, trial.index, trial.stage, reward, dict(metrics),
                        trial.space, list(trial.tokens or []), device)
        if trial.stage == "search":
            self.untold.append(trial.name)
            self._rank(ranked)
            if trial.point is not None:
                self.front.add(FrontMember(trial.name, trial.index, reward, list(trial.point),
                                           dict(metrics), trial.space, list(trial.tokens or []),
                                           device))
        else:
            self.final_results.append(ranked)
            self.final_results.sort(key=lambda r: (-r.reward, r.index))

    def fail_attempt(self, trial: Trial, reason: str, retries: int, counts: bool = True) -> bool:
        """End the current attempt in failure; True if it will be retried, False if it failed."""
        self._leave_active(trial)
        trial.failure_reason = reason
        if counts:
            trial.failures += 1
        if not counts or trial.failures <= retries:
            trial.attempt += 1
            trial.launched = False
            trial.epochs = []
            trial.epoch_count = 0
            trial.state = TrialState.QUEUED
            self.queue.appendleft(trial.name)
            if counts:
                self.counts[trial.stage]["retried"] += 1
            return True
        return False

    def fail(self, trial: Trial, reason: str, now: float) -> None:
        """The trial failed for good (its attempt already left the active set)."""
        self._leave_active(trial)
        if trial.state is TrialState.QUEUED:
            self._unqueue(trial.name)
        trial.state = TrialState.FAILED
        trial.failure_reason = reason
        trial.completion_time = now
        trial.epochs = trial.epochs[-EPOCHS_IN_STATUS:]
        self.counts[trial.stage]["failed"] += 1
        if trial.stage == "search":
            self.untold.append(trial.name)

    def cancel(self, trial: Trial, reason: str, now: float) -> None:
        self._leave_active(trial)
        if trial.state is TrialState.QUEUED:
            self._unqueue(trial.name)
        trial.state = TrialState.CANCELLED
        trial.failure_reason = reason
        trial.completion_time = now
        self.counts[trial.stage]["cancelled"] += 1

    def stop_early(self, trial: Trial, reward: float | None, reason: str, now: float) -> None:
        """The early-stopping rule stopped the running attempt: the trial ended, with the
        partial ``reward`` its strategy is told (None: it is not told, stoppedReward exclude)."""
        self._leave_active(trial)
        trial.state = TrialState.EARLY_STOPPED
        trial.reward = reward
        trial.failure_reason = reason
        trial.completion_time = now
        trial.epochs = trial.epochs[-EPOCHS_IN_STATUS:]
        self.counts[trial.stage]["stopped"] += 1
        if trial.stage == "search":
            self.untold.append(trial.name)

    def requeue(self, trial: Trial, *, same_attempt: bool = False) -> None:
        """Stop an active attempt without counting a failure (suspend): next attempt later
        (``same_attempt``: this one again, for an attempt that never started)."""
        self._leave_active(trial)
        trial.attempt += 0 if same_attempt else 1
        trial.launched = False
        trial.epochs = []
        trial.epoch_count = 0
        trial.state = TrialState.QUEUED
        self.queue.appendleft(trial.name)

    def _unqueue(self, name: str) -> None:
        try:
            self.queue.remove(name)
        except ValueError:
            pass

    def compact(self, trial: Trial) -> None:
        """Shrink a finished trial whose result the strategy (or nobody) needs any more."""
        assert trial.state.terminal
        self.trials[trial.stage][trial.index] = FinishedTrial(
            trial.state, trial.attempt, trial.reward, trial.final_digest, trial.epoch_count
        )
        del self.live[trial.name]
        self.touch(trial)
        key = (trial.stage, trial.index // BLOCK)
        self._compacted[key] = self._compacted.get(key, 0) + 1
        self.compactions += 1

    def _rank(self, ranked: Ranked) -> None:
        self.topk.append(ranked)
        self.topk.sort(key=lambda r: (-r.reward, r.index))
        del self.topk[TOP_K_LIMIT:]

    # --- summaries ----------------------------------------------------------------
    @property
    def best(self) -> Ranked | None:
        return self.topk[0] if self.topk else None

    def count_state(self, stage: str) -> dict[str, int]:
        """Queued, pending (launched, not started) and running trials of one stage."""
        letter = f"{self.search}-{STAGE_LETTER[stage]}"
        queued = sum(1 for n in self.queue if n.startswith(letter))
        active = sum(1 for n in self.active if n.startswith(letter))
        running = self.counts[stage]["running"]
        return {"queued": queued, "pending": active - running, "running": running}

    # --- checkpoint ----------------------------------------------------------------
    def snapshot(self) -> LedgerSnapshot:
        """A consistent copy, cheap to take on the event loop; encode it anywhere.

        Every entry's JSON text is kept until its trial changes (``touch``), and the
        trials are grouped in blocks of ``BLOCK`` indices: a block whose trials are all
        compacted never changes again and is kept as one text. A checkpoint encodes the
        entries changed since the last one, not O(all trials) nor O(live trials).
        """
        stages: dict[str, list[str]] = {}
        for stage, items in self.trials.items():
            parts: list[str] = []
            for block in range(0, (len(items) + BLOCK - 1) // BLOCK):
                cached = self._blocks.get((stage, block))
                if cached is None:
                    cached = self._block_text(stage, block, items)
                parts.append(cached)
            stages[stage] = parts
        rest = {
            "search": self.search,
            "queue": list(self.queue),
            "untold": list(self.untold),
            "counts": {stage: dict(c) for stage, c in self.counts.items()},
            "topk": [r.to_state() for r in self.topk],
            "final_results": [r.to_state() for r in self.final_results],
        }
        if len(self.front):
            rest["front"] = self.front.to_state()
        return LedgerSnapshot(stages, rest, self.compactions)

    def _block_text(self, stage: str, block: int, items: list[Trial | FinishedTrial]) -> str:
        """One open block's entries as JSON text, encoding only the entries that changed; a
        block of ``BLOCK`` compacted trials is kept as one text from then on."""
        key = (stage, block)
        first = block * BLOCK
        texts = self._texts.setdefault(key, [])
        stale = self._stale.pop(key, set())
        stale.update(range(len(texts), min(BLOCK, len(items) - first)))
        texts.extend([""] * (min(BLOCK, len(items) - first) - len(texts)))
        for offset in stale:
            rec = items[first + offset]
            texts[offset] = _dumps([0 if isinstance(rec, Trial) else 1, rec.to_state()])
        joined = ",".join(texts)
        if self._compacted.get(key, 0) == BLOCK:
            self._blocks[key] = joined
            del self._texts[key]
        return joined

    def to_state(self) -> dict[str, Any]:
        """The snapshot as plain JSON data."""
        return json.loads(self.snapshot().to_json())

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Ledger:
        ledger = cls(data["search"])
        for stage, items in data["trials"].items():
            ledger.trials[stage] = [
                Trial.from_state(body) if tag == 0 else FinishedTrial.from_state(body)
                for tag, body in items
            ]
        ledger.queue = deque(data["queue"])
        ledger.untold = deque(data["untold"])
        ledger.counts = {stage: {"stopped": 0, **c} for stage, c in data["counts"].items()}
        ledger.topk = [Ranked(**r) for r in data["topk"]]
        ledger.final_results = [Ranked(**r) for r in data["final_results"]]
        ledger.front = ParetoArchive.from_state(data.get("front"))
        ledger.live = {t.name: t for items in ledger.trials.values() for t in items
                       if isinstance(t, Trial)}
        for stage, items in ledger.trials.items():
            for index, rec in enumerate(items):
                if isinstance(rec, FinishedTrial):
                    key = (stage, index // BLOCK)
                    ledger._compacted[key] = ledger._compacted.get(key, 0) + 1
                    ledger.compactions += 1
        ledger.active = {t.name for t in ledger.live.values() if t.state.active}
        return ledger


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass
class LedgerSnapshot:
    """Ledger state frozen at one moment: the JSON texts of its entries and the rest."""

    stages: dict[str, list[str]]
    rest: dict[str, Any]
    compactions: int = 0
    """``Ledger.compactions`` at the moment of the snapshot (not part of the JSON)."""

    def to_json(self) -> str:
        stages = []
        for stage, parts in self.stages.items():
            body = ",".join(t for t in parts if t)
            stages.append(f"{json.dumps(stage)}:[{body}]")
        rest = json.dumps(self.rest, separators=(",", ":"))
        return rest[:-1] + ',"trials":{' + ",".join(stages) + "}}"
