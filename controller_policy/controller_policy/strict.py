"""The one strict pydantic base and the one validation-error formatter of the project.

Why one: the NASSearch spec, the trial contract, the strategies' and spaces'
settings and the trainer's document all promise the same thing to a user (an
unknown field is an error, and every error names its field, docs/design.md),
so they share the base and the wording here. Pure pydantic.
"""

from __future__ import annotations

import types
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

UNKNOWN_FIELD = "Extra inputs are not permitted: unknown field; remove it or check its spelling"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Kubernetes stores every integer as int64; a larger one cannot round-trip through the API."""
MAX_STRING = 4096
"""Longest string any document field takes (a few fields set a tighter ``max_length``)."""
PATTERN_HINTS: dict[str, str] = {}
"""What a field's ``pattern`` means in words (filled by the modules declaring patterns), so an
error says 'not a DNS label: ...' rather than printing the regular expression."""
MAX_NESTING = 32
"""Deepest a free-form value (options, config, training) may nest."""


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut short: an error message never echoes a huge input whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def scalar_problem(value: Any) -> str | None:
    """Why a value (or anything inside a free-form one) cannot be stored, or None;
    inside a mapping or list the message starts with the path (``.a[2]: ...``)."""
    found = _problem(value, 0, "")
    return None if found is None else (f"{found[0]}: {found[1]}" if found[0] else found[1])


def _problem(value: Any, depth: int, path: str) -> tuple[str, str] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return path, (f"integer {brief(value, 30)} is outside int64 "
                          f"[{INT64_MIN}, {INT64_MAX}]; Kubernetes cannot store it")
        return None
    if isinstance(value, float):
        finite = value == value and abs(value) != float("inf")
        return None if finite else (path, f"{value} is not a finite number")
    if isinstance(value, str):
        return None if len(value) <= MAX_STRING else (path, (
            f"at most {MAX_STRING:,} characters, got {len(value):,} ({brief(value, 40)})"))
    if isinstance(value, (list, tuple, dict)):
        if depth >= MAX_NESTING:
            return path, f"nested more than {MAX_NESTING} levels deep"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            where = path + (f"[{key}]" if isinstance(value, (list, tuple)) else f".{brief(key, 40)}"
                            if not isinstance(key, str) else f".{key[:40]}")
            found = (_problem(key, depth + 1, where) if isinstance(value, dict) else None) or \
                _problem(item, depth + 1, where)
            if found is not None:
                return found
    return None


def _is_tuple(annotation: Any) -> bool:
    """A tuple field, bare or optional (``tuple[int, ...] | None``)."""
    if get_origin(annotation) is tuple or annotation is tuple:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_tuple(arg) for arg in get_args(annotation))
    return False


class Strict(BaseModel):
    """Unknown fields are an error; fields may be given by name or by alias; and a value of
    the wrong type is an error naming its field, never coerced (``maxTrials: "12"``,
    ``seed: true``; docs/design.md). Strict mode still takes an int for a float field.
    """

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, strict=True, allow_inf_nan=False
    )

    checks_input: ClassVar[bool] = True

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """Every value fits an int64, is finite and not huge, down to free-form mappings."""
        if not cls.checks_input:
            return value
        problem = scalar_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        """YAML and JSON have lists only: a list given to a tuple field is that tuple
        (strict mode alone would refuse it); its items are still checked strictly."""
        if not isinstance(data, dict):
            return data
        out = None
        for name, info in cls.model_fields.items():
            if not _is_tuple(info.annotation):
                continue
            for key in (name, info.alias):
                if key and isinstance(data.get(key), list):
                    out = dict(data) if out is None else out
                    out[key] = tuple(data[key])
        return data if out is None else out


class Written(Strict):
    """A model the project writes itself and never reads from a user (status): unknown
    fields are still an error, but values are taken as the code made them (a numpy number,
    the NaN loss of a diverged child, a long failure message) rather than refused."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, strict=False, allow_inf_nan=True
    )
    checks_input: ClassVar[bool] = False


class FieldErrors(ValueError):
    """Several ``path: what is wrong`` lines at once (raised inside validators, kept whole)."""

    def __init__(self, errors: list[str], title: str = "invalid document"):
        self.errors = errors
        super().__init__(f"{title}:\n  " + "\n  ".join(errors))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark for a mapping's key
            out += " (the key)"
            continue
        text = str(part)
        text = text if len(text) <= 60 else f"{text[:60]}...({len(text):,} characters)"
        out += f"[{part}]" if isinstance(part, int) else f".{text}"
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
        if err.get("type") == "value_error" and msg[:1] in ".[" and ": " in msg:
            inner, msg = msg.split(": ", 1)  # scalar_problem inside a free-form value
            full += inner
        if err.get("type") == "extra_forbidden":
            msg = UNKNOWN_FIELD
        hint = PATTERN_HINTS.get(str((err.get("ctx") or {}).get("pattern")))
        if err.get("type") == "string_pattern_mismatch" and hint:
            msg = f"{brief(err.get('input'))} is not {hint}"
        lines.append(f"{full}: {msg}")
    return lines
