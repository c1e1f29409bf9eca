"""The registry of search spaces: ``searchSpace.type`` -> its class.

A space is one registered unit: its class declares its kind, paper strategy,
controller defaults and weight-sharing settings (``base.SearchSpace``) and draws
its genotypes; ``@register`` in its own module makes it known. Built-in modules
are listed in ``BUILTIN_SPACES`` (one line each) and imported on first lookup, so
importing ``base`` never pulls every space; others come from ``KUBENAS_PLUGINS``.
"""

from __future__ import annotations

from typing import Any

from controller_policy.registry import Registry
from controller_policy.spaces.base import InvalidArchitecture, SearchSpace, SpaceOptions

BUILTIN_SPACES = (
    "controller_policy.spaces.zoph_le_cnn",
    "controller_policy.spaces.zoph_le_rnn",
    "controller_policy.spaces.nasnet",
    "controller_policy.spaces.enas_macro",
    "controller_policy.spaces.enas_micro",
    "controller_policy.spaces.enas_rnn",
    "controller_policy.spaces.custom",
)
"""Modules of the papers' spaces, in the order the spec and the CRD list them."""

_REGISTRY: Registry[type[SearchSpace]] = Registry("search space", BUILTIN_SPACES)
SPACES = _REGISTRY.items
"""``searchSpace.type`` -> class, in registration order."""


def register(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``cls`` available under ``cls.type_name``."""
    return _REGISTRY.add(cls.type_name, cls)


def load_spaces() -> dict[str, type[SearchSpace]]:
    """Every registered space, built-in and plugin."""
    return _REGISTRY.load()


def space_types() -> list[str]:
    """The valid ``searchSpace.type`` names, in registration order."""
    return _REGISTRY.names()


def space_class(type_name: str) -> type[SearchSpace] | None:
    """The class registered for ``type_name`` (None if there is none)."""
    return _REGISTRY.get(type_name)


def make_space(type_name: str, options: dict[str, Any] | SpaceOptions | None = None) -> SearchSpace:
    """Build a space by its spec name; an unknown name lists the known ones."""
    cls = space_class(type_name)
    if cls is None:
        raise InvalidArchitecture(
            f"searchSpace.type {type_name!r} is unknown; choose one of {sorted(SPACES)}"
        )
    return cls(options)
