"""Exact size and token count of a custom space, conditions included.

Why not a product of per-position sizes: a conditional decision adds its values
only where its condition holds, so the number of distinct genotypes is a sum over
the values of the decisions that conditions read. Only those are enumerated (the
others multiply in), and each block is counted per repeat once for each
combination of the top-level values it reads, since repeats are independent given
the top level. The enumeration is bounded (``MAX_COUNT_STEPS``) so a space whose
conditions interlock too much is refused instead of hanging the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the options module imports this one to check sizes
    from controller_policy.spaces.custom_options import Decision

MAX_COUNT_STEPS = 200_000
"""Most enumeration steps counting a space may take."""


class CountTooLong(ValueError):
    """The conditions interlock so much that counting would take too long."""


def member(value: Any, allowed: Sequence[Any]) -> bool:
    """``value`` is among ``allowed`` with the same JSON type (``True`` is not ``1``)."""
    return any(type(value) is type(a) and value == a for a in allowed)


def subsets(available: int, most: int | None) -> int:
    """Subsets of ``available`` earlier repeats with at most ``most`` members."""
    if most is None or most >= available:
        return 2**available
    return sum(comb(available, k) for k in range(most + 1))


def holds(when: Mapping[str, list[Any]] | None, block: Mapping[str, Any],
          top: Mapping[str, Any]) -> bool:
    """Whether a condition holds; an inactive decision (None) satisfies none."""
    if not when:
        return True
    for ref, allowed in when.items():
        value = block[ref] if ref in block else top.get(ref)
        if value is None or not member(value, allowed):
            return False
    return True


def token_count(decisions: Sequence[Decision]) -> int:
    """Token positions of the expanded space: one per choice, one bit per earlier repeat."""
    total = 0
    for d in decisions:
        if d.decisions is None:
            total += 1
            continue
        assert d.repeat is not None
        for r in range(d.repeat):
            total += sum(r if e.inputs is not None else 1 for e in d.decisions)
    return total


def _read_names(decisions: Sequence[Decision]) -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """Names conditions read: at the top level, inside each block, and top names each block reads."""
    top_read: set[str] = set()
    block_read: dict[str, set[str]] = {}
    block_reads_top: dict[str, set[str]] = {}
    for d in decisions:
        if d.decisions is None:
            top_read.update(d.when or ())
            continue
        local: set[str] = set()
        inner_read: set[str] = set()
        outer: set[str] = set()
        for e in d.decisions:
            for ref in e.when or ():
                (inner_read if ref in local else outer).add(ref)
            local.add(e.name)
        block_read[d.name] = inner_read
        block_reads_top[d.name] = outer
        top_read |= outer
    return top_read, block_read, block_reads_top


def count_space(decisions: Sequence[Decision]) -> int:
    """The exact number of distinct genotypes; ``CountTooLong`` past ``MAX_COUNT_STEPS``."""
    top_read, block_read, block_reads_top = _read_names(decisions)
    steps = [0]
    memo: dict[tuple[str, tuple[Any, ...]], int] = {}

    def tick() -> None:
        steps[0] += 1
        if steps[0] > MAX_COUNT_STEPS:
            raise CountTooLong(
                f": the conditions read so many decisions that counting the space takes more "
                f"than {MAX_COUNT_STEPS:,} steps (the limit); make fewer decisions conditional "
                "or make conditions read fewer decisions")

    def block_count(d: Decision, r: int, top: dict[str, Any]) -> int:
        assert d.decisions is not None
        inner = d.decisions
        local: dict[str, Any] = {}

        def rec(j: int) -> int:
            tick()
            if j == len(inner):
                return 1
            e = inner[j]
            if not holds(e.when, local, top):
                local[e.name] = None
                out = rec(j + 1)
                del local[e.name]
                return out
            if e.inputs is not None:
                return subsets(r, e.inputs.maxInputs) * rec(j + 1)
            values = e.values()
            if e.name not in block_read[d.name]:
                return len(values) * rec(j + 1)
            total = 0
            for v in values:
                local[e.name] = v
                total += rec(j + 1)
            del local[e.name]
            return total

        return rec(0)

    def rec(i: int, top: dict[str, Any]) -> int:
        tick()
        if i == len(decisions):
            return 1
        d = decisions[i]
        if d.decisions is not None:
            assert d.repeat is not None
            key = (d.name, tuple((n, top.get(n)) for n in sorted(block_reads_top[d.name])))
            if key not in memo:
                product = 1
                for r in range(d.repeat):
                    product *= block_count(d, r, top)
                memo[key] = product
            return memo[key] * rec(i + 1, top) if memo[key] else 0
        if not holds(d.when, {}, top):
            top[d.name] = None
            out = rec(i + 1, top)
            del top[d.name]
            return out
        values = d.values()
        if d.name not in top_read:
            return len(values) * rec(i + 1, top)
        total = 0
        for v in values:
            top[d.name] = v
            total += rec(i + 1, top)
        del top[d.name]
        return total

    return rec(0, {})


def skip_acceptance(decisions: Sequence[Decision]) -> tuple[float, str | None]:
    """Chance that independent fair skip bits meet every ``maxInputs`` (conditions ignored,
    so a lower bound), and the field of the decision that lowers it most."""
    p, worst, worst_p = 1.0, None, 1.0
    for i, d in enumerate(decisions):
        for j, e in enumerate(d.decisions or ()):
            if e.inputs is None or e.inputs.maxInputs is None:
                continue
            assert d.repeat is not None
            here = 1.0
            for r in range(d.repeat):
                here *= subsets(r, e.inputs.maxInputs) / 2**r
            p *= here
            if here < worst_p:
                worst, worst_p = f".decisions[{i}].decisions[{j}].inputs.maxInputs", here
    return p, worst
