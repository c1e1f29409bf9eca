"""The registry of strategies: ``strategy.type`` -> its class.

A strategy is one registered unit: its class declares its name, settings model,
default batch size and whether the space's controller defaults apply
(``base.Strategy``), and ``register_strategy`` makes it known. The built-in ones
are registered by ``strategies/__init__.py`` (one line each); others come from
``KUBENAS_PLUGINS`` (``controller_policy.registry``). ``enas`` is not a class here:
weight sharing runs inside one trainer (``nas_trainer.enas``), so the registry only
names it.
"""

from __future__ import annotations

from controller_policy.registry import Registry
from controller_policy.strategies.base import Strategy

WEIGHT_SHARING = "enas"
"""``strategy.type`` of weight sharing: one trainer holds the supernet and the controller."""
WEIGHT_SHARING_BATCH_SIZE = 10
"""Its m where the space names none (ENAS micro and RNN: 10)."""
DARTS = "darts"
"""``strategy.type`` of DARTS: one trainer runs the differentiable search (``nas_trainer.darts``)."""
WEIGHT_SHARING_TYPES = (WEIGHT_SHARING, DARTS)
"""Every ``strategy.type`` that runs a whole weight-sharing search as one trial."""


def is_weight_sharing(type_name: str | None) -> bool:
    """True for the one-trial weight-sharing types (``enas``, ``darts``)."""
    return type_name in WEIGHT_SHARING_TYPES


_REGISTRY: Registry[type[Strategy]] = Registry("strategy")
STRATEGIES = _REGISTRY.items
"""``strategy.type`` -> class of the multi-trial strategies, in registration order."""


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator (or call): make ``cls`` available under ``cls.type_name``."""
    if is_weight_sharing(cls.type_name):
        raise ValueError(f"strategy type {cls.type_name!r} is reserved for weight sharing")
    return _REGISTRY.add(cls.type_name, cls)


def strategy_class(type_name: str) -> type[Strategy] | None:
    """The class of ``type_name`` (None for ``enas``, ``darts`` and unknown names)."""
    return _REGISTRY.get(type_name)


def strategy_types() -> list[str]:
    """Every valid ``strategy.type``: the registered strategies, then ``enas`` and ``darts``."""
    return [*_REGISTRY.names(), *WEIGHT_SHARING_TYPES]
