"""This trial's assignment: the trial document a driver hands every trainer, read once.

Why here: the built-in trainer (``python -m nas_trainer``), a user's own script
(``kubenas_trial.Trial``) and ``kubenas-report`` all read the same document from the
same places (``--trial FILE``, ``$KUBENAS_TRIAL_FILE``, ``$KUBENAS_TRIAL_JSON``;
docs/design.md §4), with the same errors naming the source and the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller_policy.contract import ENV_TRIAL_FILE, ENV_TRIAL_JSON, TrialDocument
from controller_policy.strict import format_validation_error


class TrialInputError(ValueError):
    """The trial document is missing or invalid; the message names the source and field."""


def describe_invalid(exc: ValidationError, source: str) -> str:
    """The trial document's errors, one ``field: message`` line each (the project's wording)."""
    lines = format_validation_error(exc, absolute=())
    return f"invalid trial document ({source}):\n  " + "\n  ".join(lines)


def read_trial_text(path: str | None = None) -> tuple[str, str]:
    """(JSON text, description of its source) from ``path``, $KUBENAS_TRIAL_FILE or
    $KUBENAS_TRIAL_JSON."""
    if path is None:
        path = os.environ.get(ENV_TRIAL_FILE) or None
    if path is not None:
        try:
            return Path(path).read_text(encoding="utf-8"), f"file {path}"
        except OSError as exc:
            raise TrialInputError(
                f"cannot read trial document file {path}: {exc.strerror or exc}") from exc
    inline = os.environ.get(ENV_TRIAL_JSON)
    if inline:
        return inline, f"${ENV_TRIAL_JSON}"
    raise TrialInputError(
        f"no trial document: pass --trial FILE or set ${ENV_TRIAL_FILE} or ${ENV_TRIAL_JSON} "
        "(kubenas run and the operator's trial Jobs set them for every trial)"
    )


def parse_trial(text: str, source: str) -> TrialDocument:
    """The validated document; an error names ``source`` and each bad field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrialInputError(
            f"trial document ({source}) is not JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}") from exc
    try:
        doc = TrialDocument.model_validate(raw)
    except ValidationError as exc:
        raise TrialInputError(describe_invalid(exc, source)) from exc
    if doc.mode == "train" and doc.architecture is None:
        raise TrialInputError(
            f"invalid trial document ({source}):\n  architecture: required for mode 'train'")
    return doc


def load_trial(path: str | None = None) -> TrialDocument:
    """The document of this trial, from ``path`` or the environment."""
    return parse_trial(*read_trial_text(path))


def identity_of(text: str | None) -> tuple[str, int]:
    """Best-effort (trial, attempt) of a document that failed validation (for a failed report)."""
    try:
        raw: Any = json.loads(text or "")
        return str(raw.get("trial", "")), int(raw.get("attempt", 0))
    except Exception:  # noqa: BLE001 - whatever it is, it has no usable identity
        return "", 0
