"""Turning raw token lists into valid architectures.

Per-position ranges are always respected by construction, but a space may add
rules across positions (``check_semantics``); a draw that breaks one is simply
drawn again. The retry bound turns a space whose rules almost nothing satisfies
into a clear error instead of a hang.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from controller_policy.spaces.base import Architecture, InvalidArchitecture, SearchSpace
from controller_policy.strategies.base import StrategyError

MAX_DRAWS = 1000


def first_valid(space: SearchSpace, draw: Callable[[], list[int]], what: str) -> Architecture:
    """Call ``draw`` until ``space`` accepts the tokens; ``what`` names the sampler in errors."""
    last: InvalidArchitecture | None = None
    for _ in range(MAX_DRAWS):
        try:
            return space.architecture(draw())
        except InvalidArchitecture as exc:
            last = exc
    raise StrategyError(
        f"{what} produced no valid {space.type_name} architecture in {MAX_DRAWS} draws; last: {last}"
    )


def uniform(space: SearchSpace, rng: random.Random) -> Architecture:
    """A uniformly random valid architecture (uniform per position, rejection on space rules)."""
    return first_valid(space, lambda: space.sample(rng), "uniform sampling")


def restore_rng(state: Any) -> random.Random:
    """A ``random.Random`` from ``getstate()`` output that went through serialization."""
    version, internal, gauss = state
    rng = random.Random()
    rng.setstate((version, tuple(internal), gauss))
    return rng
