"""The ask/tell contract every multi-trial strategy follows.

Hundreds of children train at once, so rewards come back in any order, much
later, and some never: ``ask`` hands out a ``Proposal`` with a unique id and
whatever the strategy needs to learn from it later (e.g. the log-probabilities
recorded at sampling time for PPO); ``tell`` takes a reward for exactly that
proposal, once; ``tell_failure`` says the trial failed for good.

``state_dict`` captures everything (network weights, optimizer state, baseline,
counters, RNG states, pending proposals) as plain Python/torch objects that
``torch.save`` can write; ``to_bytes``/``load_bytes`` wrap that (``codec``) so the
state survives a process restart, and a restored strategy continues bit-for-bit.
Checkpoints live in a ConfigMap that anyone with edit rights can change, so
``load_bytes`` reads tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller_policy.spaces.base import Architecture, SearchSpace
from controller_policy.strategies.codec import StateCodecError, decode_state, encode_state
from controller_policy.strict import Strict

MAX_ABS_REWARD = 1e18
"""Largest reward magnitude a strategy learns from (squared gradients stay within float32)."""


class StrategyError(ValueError):
    """Bad use of a strategy (unknown or already-told proposal, non-finite reward, bad config)."""


class Proposal(Strict):
    """One architecture handed out by ``ask``; ``id`` is unique within the strategy's life."""

    id: int
    architecture: Architecture
    extras: dict[str, Any] = Field(
        default_factory=dict,
        description="What the strategy needs to learn from this proposal (JSON-able).",
    )


class StrategyConfig(Strict):
    """Base of every strategy's hyper-parameters; unknown fields are an error.

    Fields are snake_case in Python and camelCase in the NASSearch spec
    (``batchSize``); both spellings are accepted.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, allow_inf_nan=False
    )

    seed: int = 0
    failure_reward: float | None = Field(
        default=None,
        description="If set, a failed trial is learned from as this reward; if null it is "
        "dropped from learning (but still counted).",
    )


class Strategy(ABC):
    """ask()/tell() over one search space."""

    type_name: ClassVar[str]
    """The ``strategy.type`` string of the NASSearch spec."""
    config_model: ClassVar[type[StrategyConfig]] = StrategyConfig
    default_batch_size: ClassVar[int] = 1
    """m where neither the spec nor the space's controller defaults give one."""
    uses_controller_defaults: ClassVar[bool] = False
    """Whether the space's ``controller_defaults`` lie under the user's settings."""

    def __init__(self, space: SearchSpace, config: StrategyConfig | dict[str, Any] | None = None):
        self.space = space
        if config is None:
            config = self.config_model()
        elif isinstance(config, dict):
            config = self.config_model.model_validate(config)
        elif not isinstance(config, self.config_model):
            raise StrategyError(
                f"{type(self).__name__} expects {self.config_model.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    @abstractmethod
    def ask(self) -> Proposal:
        """A new proposal; never blocks on outstanding rewards."""

    def ask_batch(self, n: int) -> list[Proposal]:
        """``n`` proposals at once (filling parallel trial slots); strategies may batch the work."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise StrategyError(f"ask_batch needs a count >= 0, got {n!r}")
        return [self.ask() for _ in range(n)]

    @abstractmethod
    def tell(self, proposal_id: int, reward: float) -> None:
        """Learn from the reward of one earlier proposal (once per proposal)."""

    def tell_objectives(self, proposal_id: int, reward: float, point: Sequence[float]) -> None:
        """Learn from a multi-objective trial: its scalar reward and its objective values
        oriented larger-is-better (``controller_policy.pareto.orient``). A strategy that selects
        on the Pareto front (evolution with ``selection: pareto``) reads the point; every other
        learns from the reward alone."""
        self.check_point(point)
        self.tell(proposal_id, reward)

    @staticmethod
    def check_point(point: Sequence[float]) -> list[float]:
        """A point of finite numbers, refused before any state changes otherwise."""
        if isinstance(point, (str, bytes)) or not isinstance(point, Sequence) or not point:
            raise StrategyError(f"objective point must be a non-empty list of numbers, got "
                                f"{point!r}")
        out = []
        for v in point:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise StrategyError(f"objective point must hold finite numbers, got {v!r}")
            out.append(float(v))
        return out

    @abstractmethod
    def tell_failure(self, proposal_id: int) -> None:
        """The proposal's trial failed for good (learned from as ``failure_reward`` if set)."""

    def withdraw(self, proposal_id: int) -> None:
        """Close a proposal without learning from it at all (not even as a failure): an
        early-stopped trial under ``stoppedReward: exclude``. Strategies keep their
        proposals in a ``ProposalBook`` named ``ledger``; one that does not must override."""
        book = getattr(self, "ledger", None)
        if book is None or not hasattr(book, "withdraw"):
            raise StrategyError(f"{type(self).__name__} cannot withdraw a proposal")
        book.withdraw(proposal_id)

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
        """``state_dict`` as bytes (``codec``: tensors by torch, the rest as plain data)."""
        return encode_state(self.state_dict())

    def load_bytes(self, data: bytes) -> None:
        """Restore from ``to_bytes`` output; a corrupt or foreign blob raises ``StrategyError``."""
        try:
            state = decode_state(data)
        except StateCodecError as exc:
            raise StrategyError(f"checkpoint is not a readable strategy state: {exc}") from exc
        if not isinstance(state, dict):
            raise StrategyError("checkpoint is not a readable strategy state: not a mapping")
        self.load_state_dict(state)

    def check_state_header(self, state: dict[str, Any]) -> None:
        """Refuse a state written by another strategy, space or configuration (before any change)."""
        if not isinstance(state, dict):
            raise StrategyError("strategy state must be a mapping")
        if state.get("type") != self.type_name:
            raise StrategyError(
                f"checkpoint belongs to strategy {state.get('type')!r}, not {self.type_name!r}"
            )
        sizes = [slot.num_values for slot in self.space.slots]
        if state.get("space") != self.space.type_name or state.get("slot_sizes") != sizes:
            raise StrategyError(
                f"checkpoint was written for another search space ({state.get('space')!r}, "
                f"{len(state.get('slot_sizes') or [])} tokens); this strategy searches "
                f"{self.space.type_name!r} with {len(sizes)} tokens and its own options"
            )
        mine = self.config.model_dump()
        theirs = state.get("config")
        if theirs != mine:
            fields = type(self.config).model_fields
            diff = sorted(
                (fields[k].alias or k) if k in fields else k
                for k in set(mine) | set(theirs or {})
                if (theirs or {}).get(k) != mine.get(k)
            )
            raise StrategyError(
                f"checkpoint was written with different strategy settings: {', '.join(diff)}"
            )

    def state_header(self) -> dict[str, Any]:
        """The identifying part of every state dict (checked by ``check_state_header``)."""
        return {
            "type": self.type_name,
            "space": self.space.type_name,
            "slot_sizes": [slot.num_values for slot in self.space.slots],
            "config": self.config.model_dump(),
        }

    @staticmethod
    def check_reward(reward: float) -> float:
        """Reject NaN/inf/non-numbers and magnitudes a float32 controller cannot learn from
        (they overflow its loss to inf, then NaN) with a clear error before any state changes."""
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
            raise StrategyError(f"reward must be a finite number, got {reward!r}")
        reward = float(reward)
        if not math.isfinite(reward):
            raise StrategyError(f"reward must be finite, got {reward!r}")
        if abs(reward) > MAX_ABS_REWARD:
            raise StrategyError(f"reward {reward:.6g} is beyond +-{MAX_ABS_REWARD:g}: controllers "
                                "learn in float32, whose loss would overflow")
        return reward
