"""Uniform random search: the baseline every learned strategy must beat.

Each position is drawn uniformly (docs/papers.md §5) from a seeded private
``random.Random``; rewards only feed the best-so-far bookkeeping.
"""

from __future__ import annotations

import random
from typing import Any

from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies.base import Proposal, Strategy, StrategyConfig, StrategyError
from controller_policy.strategies.proposal_book import ProposalBook
from controller_policy.strategies.sampling import restore_rng, uniform


class RandomSearch(Strategy):
    """Seeded uniform sampling behind the ask/tell interface."""

    type_name = "random"

    def __init__(self, space: SearchSpace, config: StrategyConfig | dict[str, Any] | None = None):
        super().__init__(space, config)
        self.rng = random.Random(self.config.seed)
        self.ledger = ProposalBook()

    def ask(self) -> Proposal:
        arch = uniform(self.space, self.rng)
        pid = self.ledger.open(arch.tokens)
        return Proposal(id=pid, architecture=arch)

    def tell(self, proposal_id: int, reward: float) -> None:
        reward = self.check_reward(reward)
        self.ledger.check(proposal_id)
        self.ledger.close(proposal_id, reward)

    def tell_failure(self, proposal_id: int) -> None:
        self.ledger.check(proposal_id)
        self.ledger.close(proposal_id, None)

    @property
    def pending(self) -> list[int]:
        return sorted(self.ledger.pending)

    def summary(self) -> dict[str, Any]:
        return {"strategy": self.type_name, **self.ledger.summary()}

    def state_dict(self) -> dict[str, Any]:
        return {**self.state_header(), "rng": self.rng.getstate(), "ledger": self.ledger.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_header(state)
        try:
            rng = restore_rng(state["rng"])
            ledger = ProposalBook()
            ledger.load_state_dict(state["ledger"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StrategyError(f"strategy state is incomplete or corrupt: {exc!r}") from exc
        self.rng, self.ledger = rng, ledger

