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
from nas_operator.api.validation import trainer_problems


def parse_search(obj: Any) -> NASSearch:
    """Validate a NASSearch object; ``SpecError`` lists every problem with its field path."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"document: expected a NASSearch mapping, got {type(obj).__name__}"])
    try:
        return NASSearch.model_validate(dict(obj))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "")) from None


def require_trainer(search: NASSearch) -> NASSearch:
    """``search`` if a trainer can run its trials, else ``SpecError`` (``trainer_problems``)."""
    problems = trainer_problems(search.spec)
    if problems:
        raise SpecError(problems)
    return search


def parse_spec(obj: Any) -> NASSearchSpec:
    """Validate a bare ``spec`` (what the operator receives from kopf)."""
    if not isinstance(obj, Mapping):
        raise SpecError([f"spec: expected a mapping, got {type(obj).__name__}"])
    try:
        return NASSearchSpec.model_validate(dict(obj))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "spec")) from None


MAX_YAML_BYTES = 1024 * 1024
"""Kubernetes stores an object in at most ~1.5 MB; a real NASSearch is a few KB."""
MAX_YAML_DEPTH = 64
"""Deeper than any NASSearch nests (about 8); PyYAML recurses per level when composing."""
MAX_YAML_ALIASES = 100
"""Aliases let a small text expand into a huge object (the 'billion laughs')."""


def yaml_limits_problem(text: str) -> str | None:
    """Why ``text`` is refused before it is composed, or None. Reads the event stream, which
    PyYAML produces without recursion, so a 100,000-deep document costs no stack."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        return (f"document: {size:,} bytes is more than a NASSearch needs (limit "
                f"{MAX_YAML_BYTES:,}); is this the right file?")
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                return (f"document: nested more than {MAX_YAML_DEPTH} levels deep (at line "
                        f"{line}); a NASSearch nests about 8")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                return f"document: more than {MAX_YAML_ALIASES} YAML aliases; write the values out"
    return None


def load_search_yaml(text: str, *, command: list[str] | None = None) -> NASSearch:
    """Parse and validate one NASSearch YAML document (size, depth and aliases bounded).

    ``command`` (``kubenas run --trainer-command``) stands in for ``spec.trial.command``
    before validation, so a search run with the flag is judged exactly as one whose file
    names that program: a trainer of your own may report any metric and train any space.
    """
    try:
        problem = yaml_limits_problem(text)
        if problem is not None:
            raise SpecError([problem])
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"document: not valid YAML: {_shorten(str(exc))}"]) from None
    return parse_search(obj if command is None else with_trial_command(obj, command))


def with_trial_command(obj: Any, command: list[str]) -> Any:
    """``obj`` with ``spec.trial.command`` set to ``command`` (a copy; a document whose
    spec or trial is not a mapping is returned as it is, for ``parse_search`` to name)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("spec"), Mapping):
        return obj
    trial = obj["spec"].get("trial")
    if trial is not None and not isinstance(trial, Mapping):
        return obj
    return {**obj, "spec": {**obj["spec"], "trial": {**(trial or {}), "command": command}}}


def _shorten(text: str, limit: int = 500) -> str:
    """Long inputs are not echoed back whole."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"
