"""Named registries of the project's units (spaces, strategies, model builders, supernets).

Why one mechanism: each unit registers itself when its module is imported, so
adding one edits no central table. Built-in modules are listed once per registry
and imported on first lookup; modules from outside the project are named in
``KUBENAS_PLUGINS`` (comma-separated module names), which the operator, ``kubenas
run`` and the trainer all import. Trainer-only parts (a model builder, a supernet)
may go in ``KUBENAS_TRAINER_PLUGINS``, which only the trainer imports, so the
operator never loads the trainer package (docs/design.md, "Module layout").
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Generic, TypeVar

ENV_PLUGINS = "KUBENAS_PLUGINS"
ENV_TRAINER_PLUGINS = "KUBENAS_TRAINER_PLUGINS"

T = TypeVar("T")


class PluginError(ImportError):
    """A module named in a plugin variable that cannot be imported."""


def plugin_modules(variable: str = ENV_PLUGINS) -> list[str]:
    """The module names listed in ``variable`` (empty entries ignored)."""
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def load_plugins(variable: str = ENV_PLUGINS) -> None:
    """Import every module listed in ``variable`` (importing twice is a no-op)."""
    for name in plugin_modules(variable):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise PluginError(
                f"${variable} names module {name!r}, which cannot be imported: {exc}; "
                "check the name and that its folder is on PYTHONPATH"
            ) from exc


class Registry(Generic[T]):
    """Name -> unit, in registration order; one name, one unit."""

    def __init__(self, what: str, builtin: Iterable[str] = (),
                 plugin_variables: Iterable[str] = (ENV_PLUGINS,)) -> None:
        self.what = what
        self.builtin = tuple(builtin)
        self.plugin_variables = tuple(plugin_variables)
        self.items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        known = self.items.get(name)
        if known is not None and known is not item:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self.items[name] = item
        return item

    def load(self) -> dict[str, T]:
        """Every unit, after importing the built-in and plugin modules that register them."""
        for module in self.builtin:
            importlib.import_module(module)
        for variable in self.plugin_variables:
            load_plugins(variable)
        self._order()
        return self.items

    def _order(self) -> None:
        """Built-in units in the order of ``builtin`` (whatever imported them first), then the
        rest in registration order: the spec's enums and the CRD must not depend on that."""
        rank = {module: i for i, module in enumerate(self.builtin)}
        entries = list(self.items.items())
        ordered = sorted(entries, key=lambda kv: rank.get(getattr(kv[1], "__module__", ""),
                                                          len(rank)))
        if ordered != entries:
            self.items.clear()
            self.items.update(ordered)

    def get(self, name: str) -> T | None:
        return self.load().get(name)

    def names(self) -> list[str]:
        return list(self.load())
