"""The one strict pydantic base and the one validation-error formatter of the project.

Why one: the NASSearch spec, the trial contract, the strategies' and spaces'
settings and the trainer's document all promise the same thing to a user (an
unknown field is an error, and every error names its field, docs/design.md),
so they share the base and the wording here. Pure pydantic.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

UNKNOWN_FIELD = "Extra inputs are not permitted: unknown field; remove it or check its spelling"


class Strict(BaseModel):
    """Unknown fields are an error; fields may be given by name or by alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FieldErrors(ValueError):
    """Several ``path: what is wrong`` lines at once (raised inside validators, kept whole)."""

    def __init__(self, errors: list[str], title: str = "invalid document"):
        self.errors = errors
        super().__init__(f"{title}:\n  " + "\n  ".join(errors))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def format_validation_error(
    exc: ValidationError, prefix: str = "", *, absolute: tuple[str, ...] = ("spec.", "metadata.")
) -> list[str]:
    """One ``prefix.field: message`` line per pydantic error.

    A validator's message that already starts with a full path (one of ``absolute``)
    is kept as is, and a ``FieldErrors`` raised in a validator contributes its lines.
    """
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        msg = str(err.get("msg", ""))
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldErrors):
            lines.extend(ctx_error.errors)
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if absolute and msg.startswith(absolute):
            lines.append(msg)
            continue
        path = _loc(tuple(err.get("loc", ())))
        full = ".".join(p for p in (prefix, path) if p) or "document"
        if err.get("type") == "extra_forbidden":
            msg = UNKNOWN_FIELD
        lines.append(f"{full}: {msg}")
    return lines
