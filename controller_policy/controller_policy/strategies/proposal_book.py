"""Who was asked, who answered: the bookkeeping every strategy shares.

Ids are handed out in order and never reused, so an id below ``next_id`` that is
no longer pending was already told (or failed): that gives a precise error
message without keeping every id ever told. ``check`` never changes state, so a
bad ``tell`` can be rejected before anything moves.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from controller_policy.strategies.base import StrategyError


@dataclass
class Pending:
    """What a strategy keeps about an outstanding proposal (plain, JSON-able data)."""

    tokens: list[int]
    extras: dict[str, Any] = field(default_factory=dict)


class ProposalBook:
    """Outstanding proposals, counts and the best reward seen so far."""

    def __init__(self) -> None:
        self.next_id = 0
        self.pending: dict[int, Pending] = {}
        self.told = 0
        self.failed = 0
        self.best_reward: float | None = None
        self.best_id: int | None = None
        self.best_tokens: list[int] | None = None

    def open(self, tokens: list[int], extras: dict[str, Any] | None = None) -> int:
        """Register a new proposal and return its id."""
        pid = self.next_id
        self.next_id += 1
        self.pending[pid] = Pending(list(tokens), dict(extras or {}))
        return pid

    def check(self, proposal_id: Any) -> Pending:
        """The pending record for this id, or ``StrategyError`` saying why not (no state change)."""
        if isinstance(proposal_id, bool) or not isinstance(proposal_id, int):
            raise StrategyError(f"proposal id must be an integer, got {proposal_id!r}")
        rec = self.pending.get(proposal_id)
        if rec is not None:
            return rec
        if 0 <= proposal_id < self.next_id:
            raise StrategyError(f"proposal {proposal_id} was already told (or reported failed)")
        raise StrategyError(
            f"proposal {proposal_id} is unknown: this strategy has issued ids 0..{self.next_id - 1}"
        )

    def close(self, proposal_id: int, reward: float | None) -> Pending:
        """Resolve a checked proposal; ``reward=None`` means the trial failed."""
        rec = self.pending.pop(proposal_id)
        if reward is None:
            self.failed += 1
            return rec
        self.told += 1
        if self.best_reward is None or reward > self.best_reward:
            self.best_reward, self.best_id, self.best_tokens = reward, proposal_id, list(rec.tokens)
        return rec

    def withdraw(self, proposal_id: int) -> None:
        """Forget a pending proposal, neither told nor failed (its trial teaches nothing)."""
        self.check(proposal_id)
        del self.pending[proposal_id]

    def summary(self) -> dict[str, Any]:
        return {
            "asked": self.next_id,
            "told": self.told,
            "failed": self.failed,
            "pending": len(self.pending),
            "best_reward": self.best_reward,
            "best_id": self.best_id,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_id": self.next_id,
            "pending": [[pid, list(r.tokens), copy.deepcopy(r.extras) if r.extras else {}]
                        for pid, r in self.pending.items()],
            "told": self.told,
            "failed": self.failed,
            "best_reward": self.best_reward,
            "best_id": self.best_id,
            "best_tokens": None if self.best_tokens is None else list(self.best_tokens),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        self.pending = {
            int(pid): Pending(list(toks), copy.deepcopy(extras)) for pid, toks, extras in state["pending"]
        }
        self.told = int(state["told"])
        self.failed = int(state["failed"])
        self.best_reward = state["best_reward"]
        self.best_id = state["best_id"]
        self.best_tokens = None if state["best_tokens"] is None else list(state["best_tokens"])
