"""Spec fields whose values are the names in a registry (``searchSpace.type``, ``strategy.type``).

Why not a ``Literal``: a space or strategy registered by a plugin
(``controller_policy.plugins``) must be accepted without editing the models, so the
names are read from the registry when a spec is validated and when the CRD is
generated (its ``enum``). The error reads like pydantic's own for a literal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

from controller_policy.spaces.registry import space_types
from controller_policy.strategies.registry import strategy_types


class OneOfRegistered:
    """A string that must be one of ``names()``; the JSON schema lists them as an enum."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self.names = names

    def _check(self, value: str) -> str:
        names = self.names()
        if value not in names:
            quoted = [repr(n) for n in names]
            listed = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
            raise ValueError(f"Input should be {listed}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        out = handler(schema)
        out["enum"] = self.names()
        return out


SpaceType = Annotated[str, OneOfRegistered(space_types)]
"""``searchSpace.type``: a registered search space."""
StrategyType = Annotated[str, OneOfRegistered(strategy_types)]
"""``strategy.type``: a registered strategy, or ``enas``."""
