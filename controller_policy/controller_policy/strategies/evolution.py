"""Regularized (aging) evolution, Real et al. 2019.

Population of P architectures with their rewards, kept in the order their
rewards arrived. Each ask samples S members uniformly (with replacement, as in
the paper's pseudo-code), takes the best, and mutates exactly one decision: one
token position, chosen uniformly among those with more than one value, set to a
different value chosen uniformly. Each reward adds its architecture to the
population and, once the population holds more than P, removes the *oldest*
member (not the worst), which is what "regularized" means.

Asynchrony: rewards arrive late and out of order, so the population fills only
as they come in. Until it holds P members every ask is uniformly random (the
paper's initial population); with many trials in flight this can hand out up to
P + parallelism random architectures, which only makes the initial population
more diverse. After that, asks always mutate, whatever is still in flight.
A failed trial joins the population with ``failure_reward`` if that is set,
otherwise it is ignored.

Pareto selection (``selection: pareto``, chosen by the loop when the objective
lists several metrics): each member also carries its objective point, and the
tournament's winner is the sampled member best by NSGA-II's crowded comparison
over the population (lower non-domination rank, then larger crowding distance
within its front; ties keep the earlier sample) instead of the highest reward.
Sampling, mutation and aging stay the same, and so does the RNG's use, so the
default ``selection: reward`` is exactly the single-objective algorithm. A member
without a point (a failure learned as ``failure_reward``, a reward told alone)
ranks after every member with one.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from controller_policy.pareto import better, rank_and_crowding
from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies.base import Proposal, Strategy, StrategyConfig, StrategyError
from controller_policy.strategies.proposal_book import ProposalBook
from controller_policy.strategies.sampling import first_valid, restore_rng, uniform


class EvolutionConfig(StrategyConfig):
    """P and S; Real et al. used P = 100, S = 25 for their main CIFAR runs [P, recalled]."""

    population_size: int = Field(default=100, ge=2, le=100_000, description="P.")
    sample_size: int = Field(default=25, ge=1, le=100_000, description="S (tournament size).")
    selection: Literal["reward", "pareto"] = Field(
        default="reward",
        description="reward: the tournament takes the highest reward (Real et al.); pareto: the "
        "best non-domination rank, then crowding distance, of the objective points (NSGA-II's "
        "order; the default when spec.objective lists several objectives).",
    )

    @model_validator(mode="after")
    def _sample_fits_population(self) -> EvolutionConfig:
        if self.sample_size > self.population_size:
            raise ValueError(
                f"sampleSize ({self.sample_size}) must not exceed populationSize "
                f"({self.population_size})"
            )
        return self


class RegularizedEvolution(Strategy):
    """Aging evolution with single-decision mutations."""

    type_name = "evolution"
    config_model = EvolutionConfig
    config: EvolutionConfig

    def __init__(self, space: SearchSpace, config: EvolutionConfig | dict[str, Any] | None = None):
        super().__init__(space, config)
        self.rng = random.Random(self.config.seed)
        self.ledger = ProposalBook()
        self.population: deque[tuple[int, list[int], float]] = deque()
        self.random_asks = 0
        self.mutation_asks = 0
        self._mutable = [s.position for s in space.slots if s.num_values > 1]
        self.points: dict[int, list[float] | None] = {}
        """Pareto selection: each member's objective point, by proposal id."""
        self._keys: list[tuple[int, float]] | None = None
        """Pareto selection: (rank, crowding) per population position, until it changes."""

    @property
    def pareto(self) -> bool:
        return self.config.selection == "pareto"

    def ask(self) -> Proposal:
        if len(self.population) < self.config.population_size or not self._mutable:
            arch = uniform(self.space, self.rng)
            self.random_asks += 1
            extras: dict[str, Any] = {"origin": "random"}
        else:
            parent_id, parent = self._tournament()
            slots: list[int] = []

            def draw() -> list[int]:
                child = list(parent)
                pos = self.rng.choice(self._mutable)
                old = child[pos]
                new = self.rng.randrange(self.space.slots[pos].num_values - 1)
                child[pos] = new + 1 if new >= old else new
                slots.append(pos)
                return child

            arch = first_valid(self.space, draw, "mutation")
            self.mutation_asks += 1
            extras = {"origin": "mutation", "parent": parent_id, "mutated_position": slots[-1]}
        pid = self.ledger.open(arch.tokens, extras)
        return Proposal(id=pid, architecture=arch, extras=dict(extras))

    def _tournament(self) -> tuple[int, list[int]]:
        if self.pareto:
            return self._pareto_tournament()
        best: tuple[int, list[int], float] | None = None
        for _ in range(self.config.sample_size):
            cand = self.population[self.rng.randrange(len(self.population))]
            if best is None or cand[2] > best[2]:
                best = cand
        assert best is not None
        return best[0], best[1]

    def _pareto_tournament(self) -> tuple[int, list[int]]:
        keys = self._selection_keys()
        best: int | None = None
        for _ in range(self.config.sample_size):
            cand = self.rng.randrange(len(self.population))
            if best is None or better(keys[cand], keys[best]):
                best = cand
        assert best is not None
        return self.population[best][0], self.population[best][1]

    def _selection_keys(self) -> list[tuple[int, float]]:
        """(rank, crowding) of every member; members without a point rank last."""
        if self._keys is None:
            with_point = [i for i, m in enumerate(self.population) if self.points.get(m[0])]
            last = (len(self.population) + 1, 0.0)
            keys = [last] * len(self.population)
            ranked = rank_and_crowding([self.points[self.population[i][0]] or []
                                        for i in with_point])
            for i, key in zip(with_point, ranked, strict=True):
                keys[i] = key
            self._keys = keys
        return self._keys

    def tell_objectives(self, proposal_id: int, reward: float, point: Sequence[float]) -> None:
        if not self.pareto:
            super().tell_objectives(proposal_id, reward, point)
            return
        reward = self.check_reward(reward)
        values = self.check_point(point)
        known = next((p for p in self.points.values() if p), None)
        if known is not None and len(known) != len(values):
            raise StrategyError(f"objective point has {len(values)} values, the population's "
                                f"have {len(known)}")
        self.ledger.check(proposal_id)
        rec = self.ledger.close(proposal_id, reward)
        self._add(proposal_id, rec.tokens, reward, values)

    def tell(self, proposal_id: int, reward: float) -> None:
        reward = self.check_reward(reward)
        self.ledger.check(proposal_id)
        rec = self.ledger.close(proposal_id, reward)
        self._add(proposal_id, rec.tokens, reward)

    def tell_failure(self, proposal_id: int) -> None:
        self.ledger.check(proposal_id)
        rec = self.ledger.close(proposal_id, None)
        if self.config.failure_reward is not None:
            self._add(proposal_id, rec.tokens, float(self.config.failure_reward))

    def _add(self, pid: int, tokens: list[int], reward: float,
             point: list[float] | None = None) -> None:
        self.population.append((pid, list(tokens), reward))
        if self.pareto:
            self.points[pid] = point
            self._keys = None
        while len(self.population) > self.config.population_size:
            gone = self.population.popleft()
            self.points.pop(gone[0], None)

    @property
    def pending(self) -> list[int]:
        return sorted(self.ledger.pending)

    def summary(self) -> dict[str, Any]:
        rewards = [r for _, _, r in self.population]
        return {
            "strategy": self.type_name,
            "population_size": len(self.population),
            "population_best": max(rewards) if rewards else None,
            "population_mean": sum(rewards) / len(rewards) if rewards else None,
            "random_asks": self.random_asks,
            "mutation_asks": self.mutation_asks,
            **({"population_front": sum(1 for r, _ in self._selection_keys() if r == 0)}
               if self.pareto else {}),
            **self.ledger.summary(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.state_header(),
            "rng": self.rng.getstate(),
            "ledger": self.ledger.state_dict(),
            "population": [[pid, list(t), r] for pid, t, r in self.population],
            "random_asks": self.random_asks,
            "mutation_asks": self.mutation_asks,
            **({"points": [[pid, self.points.get(pid)] for pid, _, _ in self.population]}
               if self.pareto else {}),
        }

    def check_state_header(self, state: dict[str, Any]) -> None:
        """A state written before ``selection`` existed is one of reward selection."""
        config = state.get("config") if isinstance(state, dict) else None
        if isinstance(config, dict) and "selection" not in config:
            state = {**state, "config": {**config, "selection": "reward"}}
        super().check_state_header(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_header(state)
        try:
            rng = restore_rng(state["rng"])
            ledger = ProposalBook()
            ledger.load_state_dict(state["ledger"])
            population = deque((int(p), list(t), float(r)) for p, t, r in state["population"])
            random_asks, mutation_asks = int(state["random_asks"]), int(state["mutation_asks"])
            points = ({int(pid): None if p is None else [float(v) for v in p]
                       for pid, p in state["points"]} if self.pareto else {})
            if self.pareto and set(points) != {m[0] for m in population}:
                raise ValueError("points do not match the population")
        except (KeyError, TypeError, ValueError) as exc:
            raise StrategyError(f"strategy state is incomplete or corrupt: {exc!r}") from exc
        self.rng, self.ledger, self.population = rng, ledger, population
        self.points, self._keys = points, None
        self.random_asks, self.mutation_asks = random_asks, mutation_asks
