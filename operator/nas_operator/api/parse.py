"""Entry points from user input to validated models: a YAML text, an object, a bare spec.

Every failure is a ``SpecError`` listing each problem with its field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from nas_operator.api.errors import SpecError, format_validation_error
from nas_operator.api.resources import NASSearch, NASSearchSpec


def parse_search(obj: Any) -> NASSearch:
    """Validate a NASSearch object; ``SpecError`` lists every problem with its field path."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"document: expected a NASSearch mapping, got {type(obj).__name__}"])
    try:
        return NASSearch.model_validate(dict(obj))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "")) from None


def parse_spec(obj: Any) -> NASSearchSpec:
    """Validate a bare ``spec`` (what the operator receives from kopf)."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"spec: expected a mapping, got {type(obj).__name__}"])
    try:
        return NASSearchSpec.model_validate(dict(obj))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "spec")) from None


def load_search_yaml(text: str) -> NASSearch:
    """Parse and validate one NASSearch YAML document."""
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"document: not valid YAML: {exc}"]) from None
    return parse_search(obj)
