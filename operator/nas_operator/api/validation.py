"""Cross-field checks of a NASSearch spec, run after its defaults are filled in.

Why separate from the models: these rules read several parts of the spec at once
(space, strategy, objective, data, budget) and each names the field to fix and
how (docs/design.md); pydantic checks single fields on the models themselves.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import ValidationError

from controller_policy.multi_objective import unknown_metric_problems
from controller_policy.spaces.registry import load_spaces
from controller_policy.strategies.registry import DARTS, WEIGHT_SHARING, is_weight_sharing
from controller_policy.strict import brief
from nas_operator.api.constants import DEFAULT_TRAINER_IMAGE
from nas_operator.api.defaults import (
    KIND_DATASETS,
    KIND_METRIC,
    config_model,
    darts_spec,
    enas_spec,
    final_training_spec,
    space_class,
    validate_over_defaults,
    validated_strategy_config,
)
from nas_operator.api.early_stopping import early_stopping_problems
from nas_operator.api.errors import format_validation_error

if TYPE_CHECKING:
    from nas_operator.api.resources import NASSearchSpec

MAX_DEADLINE = 366 * 24 * 3600
"""Longest search deadline, in seconds: a year; more is a typo."""
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: int | float | str, field: str = "spec.budget.deadline") -> float:
    """Seconds from an int, or a string like ``90``, ``45m``, ``2h30m``, ``1d`` (no fractions)."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or a duration such as '2h30m', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"{field}: must be positive, got {value}")
        if value > MAX_DEADLINE:
            raise ValueError(f"{field}: at most {MAX_DEADLINE:,} seconds (366 days), got "
                             f"{brief(value, 40)}")
        return float(value)
    text = str(value).strip()
    if text.isdigit():
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise ValueError(
                f"{field}: {brief(value)} is not a duration; write seconds (3600) or "
                "days/hours/minutes/seconds such as '1d', '2h30m', '45m', '90s'"
            )
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    if seconds <= 0:
        raise ValueError(f"{field}: must be positive, got {value!r}")
    if seconds > MAX_DEADLINE:
        raise ValueError(f"{field}: at most {MAX_DEADLINE:,} seconds (366 days), got "
                         f"{brief(value, 40)}")
    return seconds


def sharing_spaces() -> list[str]:
    """Search spaces with a weight-sharing supernet (``strategy.type: enas``)."""
    return [name for name, cls in load_spaces().items() if cls.weight_sharing()]


def cross_checks(spec: NASSearchSpec) -> list[str]:
    """Every cross-field problem of a defaulted spec, one ``spec.path: ...`` line each."""
    errors: list[str] = []
    space = spec.searchSpace.type
    cls = space_class(space)
    assert cls is not None
    kind = cls.kind
    st = spec.strategy
    budget = spec.budget
    assert spec.objective is not None and spec.trial.dataset is not None
    assert budget.maxTrials is not None and budget.parallelism is not None
    if st.type == WEIGHT_SHARING and not cls.weight_sharing():
        errors.append(
            f"spec.strategy.type: 'enas' shares weights only in the spaces with a supernet "
            f"({', '.join(sharing_spaces())}), not {space!r}; use reinforce, ppo, random or "
            "evolution, or one of those searchSpace.type values"
        )
    if st.type == DARTS and space != "enas-micro":
        errors.append(
            f"spec.strategy.type: 'darts' relaxes the enas-micro cell, not {space!r}; "
            "set spec.searchSpace.type: enas-micro"
        )
    if is_weight_sharing(st.type) and budget.maxTrials != 1:
        errors.append(
            f"spec.budget.maxTrials: must be 1 with strategy.type {st.type!r} (one trainer runs the "
            f"whole weight-sharing search), got {budget.maxTrials}; use finalTraining to retrain"
        )
    if spec.objective.objectives is not None:
        errors.extend(objective_metric_problems(spec))
    elif spec.objective.metric != KIND_METRIC[kind] and not spec.trial.runs_own_trainer():
        errors.append(
            f"spec.objective.metric: {space!r} is a {kind} space scored by "
            f"{KIND_METRIC[kind]!r}, not {spec.objective.metric!r} (the built-in trainer "
            "reports it; a trainer of your own, spec.trial.command (or kubenas run "
            "--trainer-command) or spec.trial.template, may report any metric)"
        )
    if spec.trial.dataset.name not in KIND_DATASETS[kind]:
        errors.append(
            f"spec.trial.dataset.name: {spec.trial.dataset.name!r} does not fit the {kind} "
            f"space {space!r}; use one of {', '.join(KIND_DATASETS[kind])}"
        )
    errors.extend(spec.trial.dataset.problems("spec.trial.dataset"))
    if budget.parallelism > budget.maxTrials:
        errors.append(
            f"spec.budget.parallelism ({budget.parallelism}) must not exceed "
            f"spec.budget.maxTrials ({budget.maxTrials})"
        )
    final = spec.finalTraining
    if final is not None:
        if final.topK > budget.maxTrials:
            errors.append(
                f"spec.finalTraining.topK ({final.topK}) must not exceed "
                f"spec.budget.maxTrials ({budget.maxTrials})"
            )
        if final.dataset is not None and final.dataset.name not in KIND_DATASETS[kind]:
            errors.append(
                f"spec.finalTraining.dataset.name: {final.dataset.name!r} does not fit the "
                f"{kind} space {space!r}; use one of {', '.join(KIND_DATASETS[kind])}"
            )
        if final.dataset is not None:
            errors.extend(final.dataset.problems("spec.finalTraining.dataset"))
        try:
            final_training_spec(spec)
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, "spec.finalTraining.training"))
    errors.extend(_strategy_config_problems(spec))
    errors.extend(early_stopping_problems(spec))
    return errors


def trainer_problems(spec: NASSearchSpec) -> list[str]:
    """Why no trainer can run this spec's trials, one line each (empty when one can).

    Kept apart from ``cross_checks`` so that a search driven without a trainer (the
    simulated launcher of the tests, a strategy on its own) still validates; the entry
    points that would start kubenas's own trainer call it: ``kubenas validate``,
    ``kubenas run`` and the operator. A spec that names its own training code
    (``spec.trial.command`` or a template's image or command) needs none of ours.
    """
    space = spec.searchSpace.type
    cls = space_class(space)
    if cls is None or cls.builtin_trainer or spec.trial.runs_own_trainer():
        return []
    return [
        f"spec.searchSpace.type: {space!r} describes your own model family, which kubenas's "
        "built-in trainer cannot build or train; name your training program: "
        "spec.trial.command (kubenas run, e.g. [python, train.py]) or spec.trial.template "
        "(a cluster: your image and command); see examples/custom-resnet-local.yaml"
    ]


def objective_metric_problems(spec: NASSearchSpec) -> list[str]:
    """The multi-objective form on the built-in trainer names only metrics it reports; a
    user's own trainer (another ``trial.image``) may report any name."""
    assert spec.objective is not None and spec.objective.objectives is not None
    if spec.trial.image != DEFAULT_TRAINER_IMAGE or spec.trial.runs_own_trainer():
        return []
    return unknown_metric_problems(spec.objective.objectives)


def _strategy_config_problems(spec: NASSearchSpec) -> list[str]:
    if spec.strategy.type == DARTS:
        try:
            darts_spec(spec)
        except ValidationError as exc:
            return format_validation_error(exc, "spec.strategy.config")
        return []
    if spec.strategy.type == WEIGHT_SHARING:
        try:
            enas = enas_spec(spec)
        except ValidationError as exc:
            return format_validation_error(exc, "spec.strategy.config")
        model = config_model("reinforce")
        assert model is not None
        try:
            validate_over_defaults(model, "reinforce", spec.searchSpace.type, enas.controller)
        except ValidationError as exc:
            return format_validation_error(exc, "spec.strategy.config.controller")
        return []
    try:
        validated_strategy_config(spec)
    except ValidationError as exc:
        return format_validation_error(exc, "spec.strategy.config")
    return []
