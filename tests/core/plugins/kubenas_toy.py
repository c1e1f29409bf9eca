"""A toy search space and a toy strategy, added only through the registration path.

Named in ``KUBENAS_PLUGINS`` by ``tests/core/test_registration.py``: nothing in the
project lists them (docs/design.md, "Module layout").
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from controller_policy.spaces.base import Choice, SearchSpace, SpaceOptions, Step
from controller_policy.spaces.graph import Graph
from controller_policy.spaces.registry import register
from controller_policy.strategies.base import Proposal, Strategy, StrategyConfig, StrategyError
from controller_policy.strategies.registry import register_strategy

ACTIVATIONS = ("relu", "tanh")


class ToyOptions(SpaceOptions):
    widths: list[int] = Field(default=[4, 8, 16], min_length=1, description="Hidden widths.")


@register
class ToyMlpSpace(SearchSpace):
    """One hidden layer: its width and its activation."""

    type_name: ClassVar[str] = "toy-mlp"
    options_model: ClassVar[type[SpaceOptions]] = ToyOptions
    kind: ClassVar[str] = "image"
    paper_strategy: ClassVar[str] = "toy-sweep"
    options: ToyOptions

    def build_steps(self) -> list[Step]:
        return [Choice("width", "width", tuple(self.options.widths)),
                Choice("activation", "activation", ACTIVATIONS)]

    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        return {"space": self.type_name, "vocabulary": {"activation": list(ACTIVATIONS)},
                "width": self.options.widths[tokens[0]], "activation": ACTIVATIONS[tokens[1]]}

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        return [self.options.widths.index(genotype["width"]),
                ACTIVATIONS.index(genotype["activation"])]

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        graph = Graph("network")
        graph.node("image", "image", "input")
        graph.node("h", f"h: {genotype['width']} {genotype['activation']}")
        graph.edge("image", "h")
        graph.close("softmax")
        return [graph]


class SweepConfig(StrategyConfig):
    start: int = Field(default=0, ge=0, description="Index of the first token list proposed.")


@register_strategy
class SweepStrategy(Strategy):
    """Proposes every token list in order, from ``start``; learns only which was best."""

    type_name: ClassVar[str] = "toy-sweep"
    config_model: ClassVar[type[StrategyConfig]] = SweepConfig
    config: SweepConfig

    def __init__(self, space: SearchSpace, config: Any = None) -> None:
        super().__init__(space, config)
        self.next_index = self.config.start
        self.asked: dict[int, list[int]] = {}
        self.best: tuple[float, list[int]] | None = None

    def _tokens(self, index: int) -> list[int]:
        out = []
        for slot in reversed(self.space.slots):
            index, digit = divmod(index, slot.num_values)
            out.append(digit)
        return out[::-1]

    def ask(self) -> Proposal:
        tokens = self._tokens(self.next_index % self.space.size())
        proposal = Proposal(id=self.next_index, architecture=self.space.architecture(tokens))
        self.asked[proposal.id] = tokens
        self.next_index += 1
        return proposal

    def tell(self, proposal_id: int, reward: float) -> None:
        reward = self.check_reward(reward)
        tokens = self.asked.pop(proposal_id, None)
        if tokens is None:
            raise StrategyError(f"proposal {proposal_id} is unknown or already told")
        if self.best is None or reward > self.best[0]:
            self.best = (reward, tokens)

    def tell_failure(self, proposal_id: int) -> None:
        if self.asked.pop(proposal_id, None) is None:
            raise StrategyError(f"proposal {proposal_id} is unknown or already told")

    @property
    def pending(self) -> list[int]:
        return sorted(self.asked)

    def summary(self) -> dict[str, Any]:
        return {"strategy": self.type_name, "asked": self.next_index}

    def state_dict(self) -> dict[str, Any]:
        return {**self.state_header(), "next_index": self.next_index,
                "asked": {str(k): v for k, v in self.asked.items()},
                "best": list(self.best) if self.best else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_header(state)
        self.next_index = int(state["next_index"])
        self.asked = {int(k): list(v) for k, v in state["asked"].items()}
        self.best = (float(state["best"][0]), list(state["best"][1])) if state["best"] else None
