"""The trainer's half of a search space: how to build its child network and its supernet.

A space's pure half (steps, genotype, defaults) is registered in the core
(``controller_policy.spaces.registry``); the parts that need torch are registered
here, by ``@register_builder`` and ``@register_supernet`` in their own modules.
Built-in modules are listed in ``BUILTIN_PARTS`` (one line each) and imported on
first lookup; others come from ``KUBENAS_PLUGINS`` and ``KUBENAS_TRAINER_PLUGINS``
(``controller_policy.registry``). Nothing here needs the operator.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from controller_policy.registry import ENV_PLUGINS, ENV_TRAINER_PLUGINS, Registry

ModelBuilder = Callable[..., nn.Module]
"""builder(genotype, *, spec, input_shape|vocab_size, num_classes) -> the child network."""
SupernetBuilder = Callable[..., nn.Module]
"""builder(space, spec, data) -> the weight-sharing supernet of one space."""

BUILTIN_PARTS = (
    "nas_trainer.models.cnn_zoph_le",
    "nas_trainer.models.recurrent",
    "nas_trainer.models.cells",
    "nas_trainer.models.enas_macro",
    "nas_trainer.enas.supernet_macro",
    "nas_trainer.enas.supernet_micro",
    "nas_trainer.enas.supernet_rnn",
    "nas_trainer.enas.supernet_zoph_cnn",
)
"""Modules registering the papers' builders and supernets."""

_PLUGINS = (ENV_PLUGINS, ENV_TRAINER_PLUGINS)
_BUILDERS: Registry[ModelBuilder] = Registry("the model builder of space", BUILTIN_PARTS, _PLUGINS)
_SUPERNETS: Registry[SupernetBuilder] = Registry("the supernet of space", BUILTIN_PARTS, _PLUGINS)
BUILDERS = _BUILDERS.items
"""space type -> child-network builder."""
SUPERNETS = _SUPERNETS.items
"""space type -> supernet builder (weight-sharing spaces only)."""


def register_builder(space_type: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: ``fn`` builds the child networks of ``space_type``."""
    return lambda fn: _BUILDERS.add(space_type, fn)


def register_supernet(space_type: str) -> Callable[[SupernetBuilder], SupernetBuilder]:
    """Decorator: ``fn`` builds the supernet of ``space_type``."""
    return lambda fn: _SUPERNETS.add(space_type, fn)


def model_builder(space_type: str) -> ModelBuilder | None:
    return _BUILDERS.get(space_type)


def supernet_builder(space_type: str) -> SupernetBuilder | None:
    return _SUPERNETS.get(space_type)


def supernet_spaces() -> list[str]:
    """Spaces with a registered weight-sharing supernet."""
    return _SUPERNETS.names()
