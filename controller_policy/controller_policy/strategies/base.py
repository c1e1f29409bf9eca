"""The ask/tell contract every multi-trial strategy follows.

Hundreds of children train at once, so rewards come back in any order, much
later, and some never: ``ask`` hands out a ``Proposal`` with a unique id and
whatever the strategy needs to learn from it later (e.g. the log-probabilities
recorded at sampling time for PPO); ``tell`` takes a reward for exactly that
proposal, once; ``tell_failure`` says the trial failed for good.

``state_dict`` captures everything (network weights, optimizer state, baseline,
counters, RNG states, pending proposals) as plain Python/torch objects that
``torch.save`` can write; ``to_bytes``/``from_bytes`` wrap that so the state
survives a process restart, and a restored strategy continues bit-for-bit.
"""

from __future__ import annotations

import io
import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from controller_policy.spaces.base import Architecture, SearchSpace


class StrategyError(ValueError):
    """Bad use of a strategy (unknown or already-told proposal, non-finite reward, bad config)."""


class Proposal(BaseModel):
    """One architecture handed out by ``ask``; ``id`` is unique within the strategy's life."""

    model_config = ConfigDict(extra="forbid")

    id: int
    architecture: Architecture
    extras: dict[str, Any] = Field(
        default_factory=dict,
        description="What the strategy needs to learn from this proposal (JSON-able).",
    )


class StrategyConfig(BaseModel):
    """Base of every strategy's hyper-parameters; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    seed: int = 0
    failure_reward: float | None = Field(
        default=None,
        description="If set, a failed trial is learned from as this reward; if null it is "
        "dropped from learning (but still counted).",
    )


class Strategy(ABC):
    """ask()/tell() over one search space."""

    type_name: str
    config_model: type[StrategyConfig] = StrategyConfig

    def __init__(self, space: SearchSpace, config: StrategyConfig | dict[str, Any] | None = None):
        self.space = space
        if config is None:
            config = self.config_model()
        elif isinstance(config, dict):
            config = self.config_model.model_validate(config)
        self.config = config

    @abstractmethod
    def ask(self) -> Proposal:
        """A new proposal; never blocks on outstanding rewards."""

    @abstractmethod
    def tell(self, proposal_id: int, reward: float) -> None:
        """Learn from the reward of one earlier proposal (once per proposal)."""

    @abstractmethod
    def tell_failure(self, proposal_id: int) -> None:
        """The proposal's trial failed for good (learned from as ``failure_reward`` if set)."""

    @property
    @abstractmethod
    def pending(self) -> list[int]:
        """Ids of proposals asked but not yet told."""

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary for status/metrics (updates, baseline, entropy, ...)."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; ``torch.save``-able."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict``; the next asks and updates equal an uninterrupted run."""

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        return buf.getvalue()

    def load_bytes(self, data: bytes) -> None:
        state = torch.load(io.BytesIO(data), weights_only=False)
        self.load_state_dict(state)

    @staticmethod
    def check_reward(reward: float) -> float:
        """Reject NaN/inf/non-numbers with a clear error before any state changes."""
        if isinstance(reward, bool) or not isinstance(reward, (int, float)):
            raise StrategyError(f"reward must be a finite number, got {reward!r}")
        if not math.isfinite(reward):
            raise StrategyError(f"reward must be finite, got {reward!r}")
        return float(reward)
