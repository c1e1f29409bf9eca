"""``searchSpace.type: custom``: a user's own decisions (options in ``custom_options``).

Why it fits the papers' strategies unchanged: the decisions expand, block by
repeat, into the same fixed sequence of steps the built-in spaces have. A choice
or range is one ``Choice`` (the repeats of a block share one controller head per
decision, as Zoph & Le's layers share theirs); an input selection in repeat r is
an ``Anchor`` with one skip bit per earlier repeat 0..r-1 of the same block, so
the controller attends over those repeats exactly as over Zoph & Le's layers.

Tokens: every position exists in every token list. A decision whose condition
does not hold is *inactive*, and its tokens must be 0 (all bits 0), so a genotype
has exactly one token list and back. A draw that breaks a rule (an inactive
position not 0, more inputs than ``maxInputs``) is not a member of the space; the
strategies draw again (``strategies.sampling``). Uniform sampling here never
breaks one (each active decision is drawn uniformly, in order), and the controller
never proposes an inactive decision with a value: each step carries its condition
(``when``) and the controller emits 0 there, so only ``maxInputs`` can make a
controller draw again.

Genotype: ``{"space": "custom", name: value, block: [{name: value, ...}, ...]}``,
inactive decisions absent, an input selection a sorted list of earlier repeats.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from math import comb
from typing import Any, ClassVar

from controller_policy.spaces.base import (
    Anchor,
    Choice,
    Condition,
    InvalidArchitecture,
    SearchSpace,
    Slot,
    SpaceOptions,
    Step,
)
from controller_policy.spaces.custom_count import member, subsets
from controller_policy.spaces.custom_options import CustomOptions, Decision
from controller_policy.spaces.graph import Graph
from controller_policy.spaces.registry import register


@dataclass(frozen=True)
class Unit:
    """One decision of the expanded space: a top-level decision, or one repeat's."""

    path: str
    """Where it sits in a genotype: ``stem`` or ``stage[1].kernel``."""
    name: str
    block: str | None
    repeat: int | None
    values: tuple[Any, ...]
    """The values of a choice or range; empty for an input selection."""
    max_inputs: int | None
    position: int
    """Its first token position."""
    num_tokens: int
    conds: tuple[tuple[int, frozenset[int]], ...]
    """(unit index, allowed token values): all must hold, each on an active unit."""
    when: str
    """The condition in words, for messages."""

    @property
    def is_inputs(self) -> bool:
        return not self.values


def _expand(decisions: Sequence[Decision]) -> list[Unit]:
    units: list[Unit] = []
    top: dict[str, int] = {}
    position = 0

    def add(d: Decision, path: str, block: str | None, r: int | None, local: dict[str, int]) -> None:
        nonlocal position
        conds = []
        for ref, allowed in (d.when or {}).items():
            j = local.get(ref, top.get(ref))
            assert j is not None  # references were checked by the options
            picked = frozenset(k for k, v in enumerate(units[j].values) if member(v, allowed))
            conds.append((j, picked))
        when = " and ".join(f"{ref} in {list(v)}" for ref, v in (d.when or {}).items())
        values = () if d.inputs is not None else d.values()
        n = (r or 0) if d.inputs is not None else 1
        max_inputs = d.inputs.maxInputs if d.inputs is not None else None
        units.append(Unit(path, d.name, block, r, values, max_inputs, position, n,
                          tuple(conds), when))
        position += n

    for d in decisions:
        if d.decisions is None:
            add(d, d.name, None, None, {})
            top[d.name] = len(units) - 1
            continue
        assert d.repeat is not None
        for r in range(d.repeat):
            local: dict[str, int] = {}
            for e in d.decisions:
                add(e, f"{d.name}[{r}].{e.name}", d.name, r, local)
                local[e.name] = len(units) - 1
    return units


@register
class CustomSpace(SearchSpace):
    """A declarative space: choices, ranges, repeated blocks, input selection, conditions."""

    type_name: ClassVar[str] = "custom"
    options_model: ClassVar[type[SpaceOptions]] = CustomOptions
    kind: ClassVar[str] = "image"
    """Scored like an image space (``val_accuracy``) unless the spec's objective says otherwise."""
    builtin_trainer: ClassVar[bool] = False
    paper_strategy: ClassVar[str] = "reinforce"
    controller_defaults: ClassVar[Mapping[str, Any]] = {
        "lstm_layers": 1,  # ours: one layer suffices for tens of decisions
        "hidden_size": 64,  # ours
        "init_range": 0.1,  # ENAS [C]
        "learning_rate": 1e-3,  # ours: a small space learns in tens of updates
        "batch_size": 8,  # Zoph & Le's m = 8 [P]
        "baseline_decay": 0.95,  # NASNet's 0.95
        "tanh_constant": 2.5,  # ENAS [P]: keeps early samples diverse
        "entropy_weight": 1e-4,  # ENAS [C]: against early collapse on a few values
    }
    """Our controller settings for a user's space (no paper gives any)."""
    options: CustomOptions

    # --- structure -----------------------------------------------------------------
    @cached_property
    def units(self) -> tuple[Unit, ...]:
        return tuple(_expand(self.options.decisions))

    @cached_property
    def gates(self) -> tuple[Condition, ...]:
        """Per unit, its condition on token positions, with the conditions of the decisions
        it reads folded in (so one check says whether it exists)."""
        out: list[dict[int, frozenset[int]]] = []
        for u in self.units:
            gate: dict[int, frozenset[int]] = {}
            for j, allowed in u.conds:
                for pos, ok in [*out[j].items(), (self.units[j].position, allowed)]:
                    gate[pos] = gate[pos] & ok if pos in gate else ok
            out.append(gate)
        return tuple(tuple(sorted(g.items())) for g in out)

    def build_steps(self) -> list[Step]:
        steps: list[Step] = []
        anchors: dict[tuple[str | None, str], list[int]] = {}
        count = 0
        for u, gate in zip(self.units, self.gates, strict=True):
            if not u.is_inputs:
                group = u.name if u.block is None else f"{u.block}.{u.name}"
                steps.append(Choice(u.path, group, u.values, gate))
                continue
            earlier = anchors.setdefault((u.block, u.name), [])
            steps.append(Anchor(u.path, count, tuple(earlier), gate))
            earlier.append(count)
            count += 1
        return steps

    @cached_property
    def slots(self) -> tuple[Slot, ...]:
        out: list[Slot] = []
        for step_index, (u, step) in enumerate(zip(self.units, self.steps, strict=True)):
            if isinstance(step, Choice):
                out.append(Slot(len(out), u.path, len(step.values), step_index))
            else:
                out += [Slot(u.position + j, f"{u.path}.from_{j}", 2, step_index)
                        for j in range(u.num_tokens)]
        return tuple(out)

    def _holds(self, u: Unit, tokens: Sequence[int], active: Sequence[bool]) -> bool:
        """Whether ``u`` exists, given the tokens and presence of the units before it."""
        return all(active[j] and tokens[self.units[j].position] in allowed
                   for j, allowed in u.conds)

    def _active(self, tokens: Sequence[int]) -> list[bool]:
        """Per unit, whether its condition holds for these tokens (in order: one pass)."""
        active: list[bool] = []
        for u in self.units:
            active.append(self._holds(u, tokens, active))
        return active

    # --- sampling, validation --------------------------------------------------------
    def sample(self, rng: random.Random | int | None = None) -> list[int]:
        """Each active decision uniform in order (an input selection uniform over its
        allowed subsets); inactive positions 0. Always a member of the space."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        tokens = [0] * self.num_tokens
        active: list[bool] = []
        for u in self.units:
            on = self._holds(u, tokens, active)
            active.append(on)
            if not on:
                continue
            if not u.is_inputs:
                tokens[u.position] = rng.randrange(len(u.values))
                continue
            r = u.num_tokens
            pick = rng.randrange(subsets(r, u.max_inputs))
            size = 0
            while pick >= comb(r, size):  # the subset's size, weighted by how many there are
                pick -= comb(r, size)
                size += 1
            for j in rng.sample(range(r), size):
                tokens[u.position + j] = 1
        return tokens

    def check_semantics(self, tokens: list[int]) -> None:
        for u, on in zip(self.units, self._active(tokens), strict=True):
            mine = tokens[u.position : u.position + u.num_tokens]
            if not on and any(mine):
                at = next(u.position + k for k, t in enumerate(mine) if t)
                raise InvalidArchitecture(
                    f"{self.type_name}: token {at} ({self.slots[at].name}) = {tokens[at]}, but "
                    f"{u.path} exists only when {u.when}, which does not hold; an absent "
                    "decision's tokens are 0")
            if on and u.max_inputs is not None and sum(mine) > u.max_inputs:
                raise InvalidArchitecture(
                    f"{self.type_name}: tokens {u.position}..{u.position + u.num_tokens - 1} "
                    f"({u.path}) select {sum(mine)} inputs; maxInputs is {u.max_inputs}")

    # --- encoding ----------------------------------------------------------------------
    def to_genotype(self, tokens: list[int]) -> dict[str, Any]:
        genotype: dict[str, Any] = {"space": self.type_name}
        for d in self.options.decisions:
            if d.repeat is not None:
                genotype[d.name] = [{} for _ in range(d.repeat)]
        for u, on in zip(self.units, self._active(tokens), strict=True):
            if not on:
                continue
            mine = tokens[u.position : u.position + u.num_tokens]
            value: Any = [j for j, b in enumerate(mine) if b] if u.is_inputs else u.values[mine[0]]
            if u.block is None:
                genotype[u.name] = value
            else:
                assert u.repeat is not None
                genotype[u.block][u.repeat][u.name] = value
        order = ("space", *(d.name for d in self.options.decisions))
        return {k: genotype[k] for k in order if k in genotype}

    def from_genotype(self, genotype: dict[str, Any]) -> list[int]:
        decisions = self.options.decisions
        known = {"space", *(d.name for d in decisions)}
        unknown = sorted(set(genotype) - known)
        if unknown:
            raise InvalidArchitecture(
                f"genotype.{unknown[0]}: not a decision of this space; its decisions are "
                f"{[d.name for d in decisions]}")
        for d in decisions:
            if d.repeat is None:
                continue
            where = f"genotype.{d.name}"
            entries = genotype.get(d.name)
            if not isinstance(entries, list) or len(entries) != d.repeat:
                got = f"{len(entries)} entries" if isinstance(entries, list) else repr(entries)
                raise InvalidArchitecture(f"{where} must be a list of {d.repeat} objects (one per "
                                          f"repeat), got {got}")
            assert d.decisions is not None
            names = [e.name for e in d.decisions]
            for r, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise InvalidArchitecture(f"{where}[{r}] must be a JSON object, got {entry!r}")
                extra = sorted(set(entry) - set(names))
                if extra:
                    raise InvalidArchitecture(f"{where}[{r}].{extra[0]}: not a decision of block "
                                              f"{d.name!r}; its decisions are {names}")
        tokens = [0] * self.num_tokens
        active: list[bool] = []
        for u in self.units:
            on = self._holds(u, tokens, active)
            active.append(on)
            holder = genotype if u.block is None else genotype[u.block][u.repeat]
            field = f"genotype.{u.path}"
            if not on:
                if u.name in holder:
                    raise InvalidArchitecture(
                        f"{field}: present, but {u.name!r} exists only when {u.when}, which does "
                        "not hold here; remove it")
                continue
            if u.name not in holder:
                raise InvalidArchitecture(f"{field}: missing")
            value = holder[u.name]
            if u.is_inputs:
                for j in _inputs(field, value, u):
                    tokens[u.position + j] = 1
            else:
                tokens[u.position] = _index(field, value, u.values)
        return tokens

    # --- size ------------------------------------------------------------------------------
    def size(self) -> int:
        """The exact number of distinct genotypes, conditions and ``maxInputs`` counted."""
        return self.options.size()

    # --- drawing ---------------------------------------------------------------------------
    @classmethod
    def genotype_graphs(cls, genotype: dict[str, Any]) -> list[Graph]:
        """One network: the top-level values in one node, then each block's repeats in a
        chain, with an edge from each earlier repeat an input selection names."""
        graph = Graph("network")
        graph.node("in", "input", "input")
        last = "in"
        settings = [f"{k}={v}" for k, v in genotype.items()
                    if k != "space" and not isinstance(v, list)]
        if settings:
            graph.node("top", "\n".join(settings))
            graph.edge("in", "top")
            last = "top"
        for name, entries in genotype.items():
            if not isinstance(entries, list):
                continue
            for r, entry in enumerate(entries):
                node = f"{name}{r}"
                values = [f"{k}={v}" for k, v in entry.items() if not isinstance(v, list)]
                graph.node(node, f"{name}[{r}]: " + " ".join(values))
                graph.edge(last, node)
                for key, picked in entry.items():
                    if isinstance(picked, list):
                        for j in picked:
                            if j != r - 1:  # the chain edge already feeds the previous repeat
                                graph.edge(f"{name}{int(j)}", node, key)
                last = node
        graph.close("output")
        return [graph]


def _index(field: str, value: Any, values: tuple[Any, ...]) -> int:
    for i, v in enumerate(values):
        if type(value) is type(v) and value == v:
            return i
    raise InvalidArchitecture(f"{field} = {value!r} is not allowed; allowed {list(values)}")


def _inputs(field: str, value: Any, u: Unit) -> list[int]:
    r = u.num_tokens
    if not isinstance(value, list) or any(isinstance(j, bool) or not isinstance(j, int)
                                          for j in value):
        raise InvalidArchitecture(f"{field} must be a list of earlier repeat numbers, got {value!r}")
    if any(not 0 <= j < r for j in value):
        shown = f"0..{r - 1}" if r else "none (the first repeat has no earlier one)"
        raise InvalidArchitecture(f"{field} = {value}: not all earlier repeats; allowed {shown}")
    if value != sorted(set(value)):
        raise InvalidArchitecture(f"{field} = {value}: list each repeat once, in increasing order")
    if u.max_inputs is not None and len(value) > u.max_inputs:
        raise InvalidArchitecture(f"{field} = {value}: more than maxInputs = {u.max_inputs}")
    return value
