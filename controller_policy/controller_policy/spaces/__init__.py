"""Search spaces of the three papers behind one contract (see ``base``)."""

from __future__ import annotations

from typing import Any

from controller_policy.spaces.base import (
    Anchor,
    Architecture,
    Choice,
    InvalidArchitecture,
    SearchSpace,
    Slot,
    SpaceOptions,
    Step,
)

SPACES: dict[str, type[SearchSpace]] = {}
"""``searchSpace.type`` -> class. Filled by ``register`` in each space module."""


def register(cls: type[SearchSpace]) -> type[SearchSpace]:
    SPACES[cls.type_name] = cls
    return cls


def make_space(type_name: str, options: dict[str, Any] | SpaceOptions | None = None) -> SearchSpace:
    """Build a space by its spec name; an unknown name lists the known ones."""
    _load_all()
    try:
        cls = SPACES[type_name]
    except KeyError:
        raise InvalidArchitecture(
            f"searchSpace.type {type_name!r} is unknown; choose one of {sorted(SPACES)}"
        ) from None
    return cls(options)


def _load_all() -> None:
    # Imported lazily so that importing ``base`` never pulls every space.
    from controller_policy.spaces import (  # noqa: F401
        enas_macro,
        enas_micro,
        enas_rnn,
        nasnet,
        zoph_le_cnn,
        zoph_le_rnn,
    )


__all__ = [
    "Anchor",
    "Architecture",
    "Choice",
    "InvalidArchitecture",
    "SPACES",
    "SearchSpace",
    "Slot",
    "SpaceOptions",
    "Step",
    "make_space",
    "register",
]
