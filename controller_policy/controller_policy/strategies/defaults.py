"""The settings a strategy starts from on a given space, before the user's.

The papers' controller settings live on each space's class
(``SearchSpace.controller_defaults``, tagged as in docs/papers.md); they apply to
the strategies that drive a controller (``Strategy.uses_controller_defaults``).
"""

from __future__ import annotations

from typing import Any

from controller_policy.spaces.registry import space_class
from controller_policy.strategies.registry import (
    WEIGHT_SHARING,
    WEIGHT_SHARING_BATCH_SIZE,
    strategy_class,
)


def defaults_for(strategy_type: str, space_type: str) -> dict[str, Any]:
    """The paper defaults for this pair ({} where only the config model's own defaults apply)."""
    strategy = strategy_class(strategy_type)
    space = space_class(space_type)
    if strategy is None or space is None or not strategy.uses_controller_defaults:
        return {}
    return dict(space.controller_defaults)


def default_batch_size(strategy_type: str, space_type: str) -> int:
    """m for this pair: the space's paper value for a controller (or for weight sharing),
    else the strategy's own default."""
    space = space_class(space_type)
    if strategy_type == WEIGHT_SHARING:
        value = space.controller_defaults.get("batch_size") if space and space.weight_sharing() else None
        return value if isinstance(value, int) else WEIGHT_SHARING_BATCH_SIZE
    value = defaults_for(strategy_type, space_type).get("batch_size")
    if isinstance(value, int):
        return value
    strategy = strategy_class(strategy_type)
    return strategy.default_batch_size if strategy is not None else 1
