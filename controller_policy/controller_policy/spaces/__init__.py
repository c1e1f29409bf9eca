"""Search spaces of the three papers behind one contract (see ``base``), found by name in
``registry``."""

from __future__ import annotations

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
from controller_policy.spaces.registry import (
    SPACES,
    make_space,
    register,
    space_class,
    space_types,
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
    "space_class",
    "space_types",
]
