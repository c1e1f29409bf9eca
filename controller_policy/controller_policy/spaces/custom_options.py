"""The options of ``searchSpace.type: custom``: a user's own list of named decisions.

Why a module of its own: the declarative format (choices, integer ranges, repeated
blocks with input selection, conditions) has many ways to be wrong, and each must
be refused with the field named before anything samples from it. This module
checks the document alone (types, names, references, per-decision bounds); the
whole-space bounds that need the expanded space (size, token count) are checked
by ``custom.CustomSpace`` when the options are validated. Pure pydantic.

A decision is exactly one of::

    {name, choices: [scalar, ...], when?}          categorical over JSON scalars
    {name, range: {low, high, step?}, when?}       integers low, low+step, ..., <= high
    {name, inputs: {maxInputs?}, when?}            in a repeated block only: a subset of
                                                   the earlier repeats of that block
    {name, repeat: N, decisions: [...]}            a block of decisions, N times

``when: {other: [v, ...]}`` makes a decision exist only while each named earlier
decision is active and has one of the listed values. Names resolve in the same
block first, then among the top-level decisions before the block.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from controller_policy.spaces.base import SpaceOptions
from controller_policy.spaces.custom_count import (
    CountTooLong,
    count_space,
    skip_acceptance,
    token_count,
)
from controller_policy.strict import Strict, brief

MAX_CHOICES = 1024
"""Most values one decision may take (a controller head has one logit per value)."""
MAX_REPEAT = 64
"""Most repeats of one block (input selection grows with the square of it)."""
MAX_DECISIONS = 256
"""Most decisions one list (the top level, or a block) may declare."""
MAX_NAME = 63
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_TOKENS = 4096
"""Most token positions the expanded space may have (the controller takes one step each)."""
MAX_SIZE_DIGITS = 1000
"""A space may hold fewer than 10**1000 genotypes: more is a typo, not a search."""
MIN_SKIP_ACCEPTANCE = 0.01
"""Least chance that a controller's independent skip bits meet every ``maxInputs``: a draw
that does not is drawn again, and a search must not spend most of its draws on that."""
RESERVED = frozenset({"space"})
"""Genotype keys the space writes itself."""


def scalar_kind(value: Any) -> str | None:
    """``bool``, ``int``, ``float`` or ``str`` for a JSON scalar a choice may take; else None."""
    for kind in (bool, int, float, str):
        if type(value) is kind:
            return kind.__name__
    return None


class IntRange(Strict):
    """Integers ``low, low + step, ...`` up to and including ``high``."""

    low: int = Field(description="First value.")
    high: int = Field(description="Last value (included when step divides high - low).")
    step: int = Field(default=1, description="Distance between values, at least 1.")

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.step <= 0:
            raise ValueError(f".step: must be at least 1, got {self.step}")
        if self.low > self.high:
            raise ValueError(f".low: {self.low} is above high {self.high}; swap them")
        count = (self.high - self.low) // self.step + 1
        if count > MAX_CHOICES:
            raise ValueError(f"{count:,} values, more than the {MAX_CHOICES} a decision may "
                             "take; raise step or narrow the range")
        return self

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))


class InputsSpec(Strict):
    """Which earlier repeats of the block feed this one (Zoph & Le's anchor skips)."""

    maxInputs: int | None = Field(
        default=None, ge=1, le=MAX_REPEAT,
        description="Most earlier repeats one repeat may read; default: any subset.")


class Decision(Strict):
    """One named decision; exactly one of choices, range, inputs, repeat."""

    name: str = Field(description="Genotype key: letters, digits, '_' and '-'.")
    choices: tuple[Any, ...] | None = Field(
        default=None, description="Values (ints, floats, strings or booleans, one type).")
    range: IntRange | None = Field(default=None, description="An integer range instead.")
    inputs: InputsSpec | None = Field(
        default=None, description="Input selection among earlier repeats (in a block only).")
    repeat: int | None = Field(default=None, description="Repeat the block's decisions N times.")
    decisions: tuple[Decision, ...] | None = Field(
        default=None, description="The decisions of a repeated block.")
    when: dict[str, list[Any]] | None = Field(
        default=None, description="Exists only while these earlier decisions have these values.")

    @property
    def kind(self) -> str:
        for kind in ("choices", "range", "inputs", "repeat"):
            if getattr(self, kind) is not None:
                return kind
        raise AssertionError("validated decisions have a kind")

    def values(self) -> tuple[Any, ...]:
        """The values of a choice or range decision."""
        if self.choices is not None:
            return self.choices
        assert self.range is not None
        return self.range.values()

    @model_validator(mode="after")
    def _one_kind(self) -> Decision:
        if len(self.name) > MAX_NAME or not NAME.match(self.name):
            raise ValueError(f".name: {brief(self.name)} must start with a letter or '_' and use "
                             f"letters, digits, '_' or '-' (at most {MAX_NAME} characters)")
        if self.name in RESERVED:
            raise ValueError(f".name: {self.name!r} is reserved (the genotype's own key); rename it")
        kinds = [k for k in ("choices", "range", "inputs", "repeat") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"decision {self.name!r} needs exactly one of choices, range, "
                             f"inputs or repeat, got {kinds or 'none'}")
        if (self.decisions is not None) != (self.repeat is not None):
            raise ValueError(f".decisions: decision {self.name!r}: 'decisions' goes with 'repeat' "
                             "(a repeated block), and a block needs its decisions")
        if self.choices is not None:
            _check_choices(self.choices)
        if self.repeat is not None:
            if not 1 <= self.repeat <= MAX_REPEAT:
                raise ValueError(f".repeat: must be between 1 and {MAX_REPEAT}, got {self.repeat}")
            if self.when is not None:
                raise ValueError(f".when: a repeated block cannot be conditional; put 'when' on "
                                 f"the decisions inside {self.name!r}")
            assert self.decisions is not None
            for i, inner in enumerate(self.decisions):
                if inner.repeat is not None:
                    raise ValueError(f".decisions[{i}].repeat: repeated blocks do not nest; "
                                     "flatten the inner block into this one")
        return self


def _check_choices(choices: Sequence[Any]) -> None:
    if not choices:
        raise ValueError(".choices: empty; list the values this decision may take")
    if len(choices) > MAX_CHOICES:
        raise ValueError(f".choices: {len(choices):,} values, more than the {MAX_CHOICES} a "
                         "decision may take")
    kinds = []
    for i, value in enumerate(choices):
        kind = scalar_kind(value)
        if kind is None:
            raise ValueError(f".choices[{i}]: {brief(value)} is not a JSON scalar; a choice is an "
                             "int, a float, a string or a boolean")
        kinds.append(kind)
    if len(set(kinds)) > 1:
        raise ValueError(f".choices: mixes {', '.join(sorted(set(kinds)))}; use one type per "
                         "decision (quote the numbers to make them strings, or write 1.0 for a "
                         "float)")
    for i, value in enumerate(choices):
        if value in choices[:i]:
            raise ValueError(f".choices[{i}]: {brief(value)} is listed twice")


class CustomOptions(SpaceOptions):
    """``searchSpace.options`` of a custom space: the ordered decisions."""

    decisions: tuple[Decision, ...] = Field(
        max_length=MAX_DECISIONS,
        description="The decisions, in the order they are taken.")

    @model_validator(mode="after")
    def _references(self) -> CustomOptions:
        if not self.decisions:
            raise ValueError(".decisions: empty; list at least one decision")
        problem = reference_problem(self.decisions) or size_problem(self.decisions)
        if problem is not None:
            raise ValueError(problem)
        return self

    def size(self) -> int:
        """The exact number of distinct genotypes."""
        return count_space(self.decisions)


def size_problem(top: Sequence[Decision]) -> str | None:
    """Whole-space bounds (token count, size, skip acceptance) as ``.field: why``, or None."""
    tokens = token_count(top)
    if tokens > MAX_TOKENS:
        return (f".decisions: the expanded space has {tokens:,} token positions, more than the "
                f"{MAX_TOKENS:,} allowed; lower a repeat or drop decisions")
    try:
        size = count_space(top)
    except CountTooLong as exc:
        return f".decisions{exc}"
    if size < 2:
        return (".decisions: the space holds a single architecture (every decision has one "
                "value); give some decision at least two values, there is nothing to search")
    if math.log10(size) >= MAX_SIZE_DIGITS:
        return (f".decisions: the space holds about 10^{int(math.log10(size))} architectures, more "
                f"than the 10^{MAX_SIZE_DIGITS} allowed; lower a repeat or drop values")
    p, field = skip_acceptance(top)
    if p < MIN_SKIP_ACCEPTANCE:
        return (f"{field}: independent skip bits meet every maxInputs in only {p:.2%} of draws "
                f"(at least {MIN_SKIP_ACCEPTANCE:.0%} needed, a draw that breaks one is drawn "
                "again); raise maxInputs, drop it, or lower the repeat")
    return None


def reference_problem(top: Sequence[Decision]) -> str | None:
    """The first bad name or condition (``.decisions[i]...: why``), or None."""
    seen_top: dict[str, Decision] = {}
    for i, d in enumerate(top):
        where = f".decisions[{i}]"
        if d.name in seen_top:
            return f"{where}.name: {d.name!r} is used twice; decision names must be unique"
        if d.kind == "inputs":
            return (f"{where}.inputs: input selection picks earlier repeats of a block; put "
                    f"{d.name!r} inside a decision with 'repeat'")
        problem = _when_problem(d, where, {}, seen_top)
        if problem is not None:
            return problem
        if d.decisions is not None:
            if len(d.decisions) > MAX_DECISIONS:
                return (f"{where}.decisions: {len(d.decisions)} decisions, more than the "
                        f"{MAX_DECISIONS} a block may declare")
            seen_block: dict[str, Decision] = {}
            for j, inner in enumerate(d.decisions):
                inner_where = f"{where}.decisions[{j}]"
                if inner.name in seen_block:
                    return (f"{inner_where}.name: {inner.name!r} is used twice in block "
                            f"{d.name!r}; decision names must be unique")
                problem = _when_problem(inner, inner_where, seen_block, seen_top)
                if problem is not None:
                    return problem
                seen_block[inner.name] = inner
        seen_top[d.name] = d
    return None


def _when_problem(d: Decision, where: str, block: dict[str, Decision],
                  top: dict[str, Decision]) -> str | None:
    if d.when is None:
        return None
    if not d.when:
        return f"{where}.when: empty; name at least one earlier decision, or drop 'when'"
    for ref, allowed in d.when.items():
        field = f"{where}.when.{ref}"
        target = block.get(ref) or top.get(ref)
        if target is None:
            visible = sorted(set(block) | {n for n, t in top.items() if t.kind != "repeat"})
            return (f"{field}: no earlier decision is named {ref!r} (a condition reads a "
                    f"decision declared before it, in its block or at the top level); "
                    f"known here: {visible or 'none'}")
        if target.kind not in ("choices", "range"):
            what = "an input selection" if target.kind == "inputs" else "a repeated block"
            return (f"{field}: {ref!r} is {what}; a condition reads a choices or range "
                    "decision")
        if not allowed:
            return f"{field}: empty; list the values of {ref!r} for which {d.name!r} exists"
        values = target.values()
        for k, value in enumerate(allowed):
            if not any(type(value) is type(v) and value == v for v in values):
                return (f"{field}[{k}]: {brief(value)} is not a value of {ref!r}; its values "
                        f"are {brief(list(values), 120)}")
    return None
