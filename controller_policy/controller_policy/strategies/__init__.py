"""Multi-trial search strategies behind one ask/tell interface, found by name in ``registry``.

``make_strategy("reinforce", space, {"batchSize": 8})`` merges the papers'
defaults for the space (``defaults``) with the user's settings (camelCase or
snake_case) and validates them with pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies.base import (
    Proposal,
    Strategy,
    StrategyConfig,
    StrategyError,
)
from controller_policy.strategies.controller import Controller, Trace
from controller_policy.strategies.defaults import defaults_for
from controller_policy.strategies.evolution import EvolutionConfig, RegularizedEvolution
from controller_policy.strategies.policy import PolicyConfig, PolicyStrategy
from controller_policy.strategies.ppo import PPO, PPOConfig
from controller_policy.strategies.random_search import RandomSearch
from controller_policy.strategies.registry import (
    STRATEGIES,
    WEIGHT_SHARING,
    register_strategy,
    strategy_class,
    strategy_types,
)
from controller_policy.strategies.reinforce import Reinforce

# The built-in strategies, one registration each, in the order the spec lists them.
register_strategy(Reinforce)
register_strategy(PPO)
register_strategy(RandomSearch)
register_strategy(RegularizedEvolution)


def make_strategy(
    type_name: str, space: SearchSpace, config: Mapping[str, Any] | None = None
) -> Strategy:
    """Build a strategy with the space's paper defaults, overridden by ``config``."""
    cls = strategy_class(type_name)
    if cls is None:
        raise StrategyError(f"strategy.type {type_name!r} is unknown; choose one of {sorted(STRATEGIES)}")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise StrategyError(f"strategy settings must be a mapping, got {type(config).__name__}")
    user = dict(config)
    if "type" in user:
        if user.pop("type") != type_name:
            raise StrategyError(f"strategy settings name type {config['type']!r}, not {type_name!r}")
    model = cls.config_model
    defaults = _spec_names(model, defaults_for(type_name, space.type_name))
    return cls(space, {**defaults, **_spec_names(model, user)})


def _spec_names(model: type[StrategyConfig], settings: dict[str, Any]) -> dict[str, Any]:
    """Field names -> their camelCase spec names, so user values override same-named
    defaults and validation errors name fields the way the NASSearch spec spells them.

    Unknown keys pass through unchanged for pydantic to reject by name.
    """
    to_alias = {name: f.alias for name, f in model.model_fields.items() if f.alias}
    out: dict[str, Any] = {}
    for key, value in settings.items():
        alias = to_alias.get(key, key) if isinstance(key, str) else key
        if alias in out:
            raise StrategyError(f"strategy setting {alias!r} is given twice (camelCase and snake_case)")
        out[alias] = value
    return out


__all__ = [
    "Controller",
    "EvolutionConfig",
    "PPO",
    "PPOConfig",
    "PolicyConfig",
    "PolicyStrategy",
    "Proposal",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "STRATEGIES",
    "Strategy",
    "StrategyConfig",
    "StrategyError",
    "Trace",
    "WEIGHT_SHARING",
    "defaults_for",
    "make_strategy",
    "register_strategy",
    "strategy_class",
    "strategy_types",
]
