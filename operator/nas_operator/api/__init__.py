"""The kubenas.dev API: resources, defaults, cross-field validation, status models, errors.

Layout (docs/design.md): ``constants`` (names and limits), ``errors`` (``SpecError``),
``trial`` (``spec.trial``), ``resources`` (NASSearch, NASTrial), ``defaults`` (the
papers' values per space and strategy), ``validation`` (cross-field rules),
``parse`` (YAML/object -> model), ``status`` (what the operator writes).
"""

from __future__ import annotations

from nas_operator.api.constants import (
    API_GROUP,
    API_VERSION,
    BUNDLED_DATASETS,
    DEFAULT_TRAINER_IMAGE,
    EPOCHS_IN_STATUS,
    FRONT_LIMIT,
    MAX_SEARCH_NAME,
    POD_CHECKPOINT_DIR,
    POD_TMP_DIR,
    TOP_K_LIMIT,
)
from nas_operator.api.defaults import space_class, strategy_class
from nas_operator.api.errors import SpecError, format_validation_error
from nas_operator.api.parse import load_search_yaml, parse_search, parse_spec, require_trainer
from nas_operator.api.resources import (
    BudgetSpec,
    FinalTrainingSpec,
    NASSearch,
    NASSearchSpec,
    NASTrial,
    NASTrialSpec,
    ObjectMeta,
    RetentionSpec,
    SearchSpaceSpec,
    SpaceType,
    StrategySpec,
    StrategyType,
    TrialStage,
)
from nas_operator.api.status import (
    Condition,
    ControllerSummary,
    EarlyStoppingSummary,
    FrontEntry,
    NASSearchStatus,
    NASTrialStatus,
    ParetoFront,
    SearchPhase,
    SearchProgress,
    TrialCounts,
    TrialPhase,
    TrialResult,
    TrialStop,
)
from nas_operator.api.trial import DatasetClaim, ModelOutput, Toleration, TrialDataset, TrialSpec
from nas_operator.api.validation import parse_duration

__all__ = [
    "API_GROUP", "API_VERSION", "BUNDLED_DATASETS", "DEFAULT_TRAINER_IMAGE", "EPOCHS_IN_STATUS",
    "MAX_SEARCH_NAME", "POD_CHECKPOINT_DIR", "POD_TMP_DIR", "TOP_K_LIMIT",
    "FRONT_LIMIT", "FrontEntry", "ParetoFront",
    "BudgetSpec", "Condition", "ControllerSummary", "DatasetClaim", "EarlyStoppingSummary", "FinalTrainingSpec", "ModelOutput",
    "NASSearch", "NASSearchSpec", "NASSearchStatus", "NASTrial", "NASTrialSpec", "NASTrialStatus",
    "ObjectMeta", "RetentionSpec", "SearchPhase", "SearchProgress", "SearchSpaceSpec", "SpaceType", "SpecError",
    "StrategySpec", "StrategyType", "Toleration", "TrialCounts", "TrialDataset", "TrialPhase",
    "TrialResult", "TrialSpec", "TrialStage", "TrialStop", "format_validation_error",
    "load_search_yaml", "parse_duration", "parse_search", "parse_spec", "require_trainer",
    "space_class", "strategy_class",
]
