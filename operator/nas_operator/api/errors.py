"""The error a user sees for an invalid NASSearch: one ``spec.path: what is wrong`` per line.

The wording comes from the project's one formatter (``controller_policy.strict``).
"""

from __future__ import annotations

from controller_policy.strict import FieldErrors, format_validation_error


class SpecError(FieldErrors):
    """An invalid NASSearch: ``errors`` lists one ``spec.path: what is wrong`` line per problem."""

    def __init__(self, errors: list[str]):
        super().__init__(errors, "invalid NASSearch")


__all__ = ["SpecError", "format_validation_error"]
