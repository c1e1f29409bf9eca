"""The contract every search space follows.

A search space is a *declarative* list of steps. Each step emits tokens, and the
concatenation of all tokens is the architecture's token list: exactly the
decision sequence an RL controller emits (docs/papers.md §5). Two kinds of step:

* ``Choice`` - one categorical token, sampled from a softmax. Choices that share
  a ``group`` share the controller's softmax head and embedding (e.g. every
  "filter height" decision); a choice may allow fewer values than the largest
  member of its group (e.g. "which earlier node" grows with the node index), so
  the controller masks logits ``>= len(values)``.
* Either kind may carry ``when``: (token position, allowed tokens) pairs that must all
  hold for the step to exist (a custom space's conditions, flattened so that a
  step's own conditions include those of the steps it reads). An absent step's
  tokens are 0; the controller then emits 0 with probability 1 and scores nothing
  there, so it never proposes an absent decision with a value.
* ``Anchor`` - a layer's anchor point (Zoph & Le skip connections, ENAS macro).
  The controller takes one LSTM step here and records the hidden state as this
  anchor; then it emits one *binary* token per entry of ``sources`` (earlier
  anchor indices), each sampled independently from
  sigmoid(v^T tanh(W_prev h_source + W_curr h_this)). An anchor with no sources
  emits no token but still records its state for later layers.

Spaces are pure Python: they sample, validate, encode/decode and count; they
never import torch. Models are built from genotypes by ``nas_trainer.models``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from pydantic import ConfigDict

from controller_policy.objective import Objective, default_objective
from controller_policy.spaces.graph import Graph, UnknownGenotype
from controller_policy.strict import Strict


class InvalidArchitecture(ValueError):
    """A token list or genotype that is not a member of its search space.

    The message always names the position (token index and decision name) or the
    genotype field, and what is allowed there.
    """


Condition = tuple[tuple[int, frozenset[int]], ...]
"""(token position, allowed tokens) pairs that must all hold for a step to exist."""


@dataclass(frozen=True)
class Choice:
    """One categorical decision: a token in ``range(len(values))``."""

    name: str
    group: str
    values: tuple[Any, ...]
    when: Condition = ()

    @property
    def num_tokens(self) -> int:
        return 1


@dataclass(frozen=True)
class Anchor:
    """A layer's anchor point: one binary skip token per earlier anchor in ``sources``."""

    name: str
    index: int
    sources: tuple[int, ...]
    when: Condition = ()

    @property
    def num_tokens(self) -> int:
        return len(self.sources)


Step = Choice | Anchor


@dataclass(frozen=True)
class Slot:
    """One token position, flattened from the steps; used for validation and uniform sampling."""

    position: int
    name: str
    num_values: int
    step_index: int


class SpaceOptions(Strict):
    """Base of every space's options; unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(frozen=True)


class SearchSpace(ABC):
    """A search space: steps, uniform sampling, tokens <-> genotype, validation, size."""

    type_name: ClassVar[str]
    """The ``searchSpace.type`` string of the NASSearch spec, e.g. ``"nasnet"``."""
    options_model: ClassVar[type[SpaceOptions]]
    kind: ClassVar[str]
    """``"image"`` (classification) or ``"language"`` (language modelling)."""
    paper_strategy: ClassVar[str] = "random"
    """The default ``strategy.type``: the strategy of the space's paper."""
    controller_defaults: ClassVar[Mapping[str, Any]] = {}
    """The paper's controller settings (``PolicyConfig`` field names, batch size m included),
    laid under the user's by strategies that use a controller."""
    builtin_trainer: ClassVar[bool] = True
    """Whether kubenas's own trainer builds and trains this space's models (a custom space
    needs the user's own training code)."""
    enas_steps_per_epoch: ClassVar[int | None] = None
    """Controller steps per epoch of weight sharing; None: no supernet, so no ``enas``."""

    def __init__(self, options: SpaceOptions | dict[str, Any] | None = None) -> None:
        if options is None:
            options = self.options_model()
        elif isinstance(options, dict):
            options = self.options_model.model_validate(options)
        elif not isinstance(options, self.options_model):
            raise TypeError(f"{type(self).__name__} expects {self.options_model.__name__}")
        self.options = options

    # --- structure -----------------------------------------------------------
    @cached_property
    def steps(self) -> tuple[Step, ...]:
        return tuple(self.build_steps())

    @abstractmethod
    def build_steps(self) -> list[Step]:
        """The decision steps in the order a controller emits them."""

    @cached_property
    def slots(self) -> tuple[Slot, ...]:
        out: list[Slot] = []
        for step_index, step in enumerate(self.steps):
            if isinstance(step, Choice):
                out.append(Slot(len(out), step.name, len(step.values), step_index))
            else:
                for src in step.sources:
                    out.append(Slot(len(out), f"{step.name}.skip_from_{src}", 2, step_index))
        return tuple(out)

    @property
    def num_tokens(self) -> int:
        return len(self.slots)

    # --- sampling, validation ---------------------------------------------------
    def sample(self, rng: random.Random | int | None = None) -> list[int]:
        """A uniformly random token list (every position independently uniform)."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        return [rng.randrange(slot.num_values) for slot in self.slots]

    def validate_tokens(self, tokens: Sequence[int]) -> list[int]:
        """Return the tokens as a list of ints, or raise ``InvalidArchitecture`` naming the position."""
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise InvalidArchitecture(
                f"{self.type_name}: tokens must be a list of {self.num_tokens} integers, "
                f"got {type(tokens).__name__}"
            )
        if len(tokens) != self.num_tokens:
            raise InvalidArchitecture(
                f"{self.type_name}: expected {self.num_tokens} tokens, got {len(tokens)}"
            )
        out: list[int] = []
        for slot, tok in zip(self.slots, tokens, strict=True):
            if isinstance(tok, bool) or not isinstance(tok, int):
                raise InvalidArchitecture(
                    f"{self.type_name}: token {slot.position} ({slot.name}) must be an integer "
                    f"in 0..{slot.num_values - 1}, got {tok!r}"
                )
            if not 0 <= tok < slot.num_values:
                raise InvalidArchitecture(
                    f"{self.type_name}: token {slot.position} ({slot.name}) = {tok} is out of "
                    f"range; allowed 0..{slot.num_values - 1}"
                )
            out.append(int(tok))
        self.check_semantics(out)
        return out

    def check_semantics(self, tokens: list[int]) -> None:  # noqa: B027 - optional hook
        """Extra rules beyond per-position ranges (none by default). Raise ``InvalidArchitecture``."""

    # --- encoding ---------------------------------------------------------------
    def decode(self, tokens: Sequence[int]) -> dict[str, Any]:
        """Token list -> readable, JSON-able genotype (validates first)."""
        return self.to_genotype(self.validate_tokens(tokens))

    def encode(self, genotype: dict[str, Any]) -> list[int]:
        """Readable genotype -> token list (validates; errors name the genotype field)."""
        if not isinstance(genotype, dict):
            raise InvalidArchitecture(f"{self.type_name}: genotype must be a JSON object")
        if genotype.get("space") != self.type_name:
            raise InvalidArchitecture(
                f"genotype.space must be {self.type_name!r}, got {genotype.get('space')!r}"
            )
        return self.validate_tokens(self.from_genotype(genotype))

    @abstractmethod
    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        """Valid tokens -> genotype. Must include ``space`` and ``vocabulary``."""

    @abstractmethod
    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        """Genotype -> tokens; raise ``InvalidArchitecture`` naming the field on bad input."""

    # --- size --------------------------------------------------------------------
    def size(self) -> int:
        """Exact number of distinct token lists (ordered encoding, docs/papers.md §6)."""
        total = 1
        for slot in self.slots:
            total *= slot.num_values
        return total

    # --- declarations the spec and the drawings read ------------------------------
    @classmethod
    def default_objective(cls) -> Objective:
        """The paper's objective for this space: by kind, unless the space says otherwise."""
        return default_objective(cls.kind)

    @classmethod
    def weight_sharing(cls) -> bool:
        """Whether the space has a supernet (``strategy.type: enas``)."""
        return cls.enas_steps_per_epoch is not None

    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        """The genotype as labelled graphs, one per cell (or one for a whole network)."""
        raise UnknownGenotype(f"space {cls.type_name!r} does not draw its genotypes")

    def architecture(self, tokens: Sequence[int]) -> Architecture:
        """Build the docs/design.md architecture record for a token list."""
        valid = self.validate_tokens(tokens)
        return Architecture(space=self.type_name, tokens=valid, genotype=self.to_genotype(valid))


class Architecture(Strict):
    """docs/design.md contract: ``{space, tokens, genotype}``; decoding is deterministic."""

    space: str
    tokens: list[int]
    genotype: dict[str, Any]
