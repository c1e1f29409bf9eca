"""Defaults that depend on the search space and strategy, filled in after validation.

The papers' values (docs/papers.md): each space's strategy, objective, dataset
and batch size m; the strategies' controller settings laid under the user's.
Filled in so that a dumped spec shows exactly what runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from controller_policy.contract import EnasSpec, TrainingSpec
from controller_policy.objective import Objective
from controller_policy.spaces.base import SearchSpace
from nas_operator.api.trial import TrialDataset

if TYPE_CHECKING:
    from nas_operator.api.resources import NASSearchSpec

SPACE_KIND: dict[str, str] = {
    "zoph-le-cnn": "image",
    "zoph-le-rnn": "language",
    "nasnet": "image",
    "enas-macro": "image",
    "enas-micro": "image",
    "enas-rnn": "language",
}
"""Image spaces are scored by accuracy, language spaces by perplexity."""
KIND_METRIC = {"image": "val_accuracy", "language": "val_perplexity"}
KIND_DATASETS = {
    "image": ("cifar10", "digits", "synthetic"),
    "language": ("ptb", "pydoc-text", "synthetic"),
}
KIND_DEFAULT_DATASET = {"image": "digits", "language": "pydoc-text"}
DEFAULT_STRATEGY: dict[str, str] = {
    "zoph-le-cnn": "reinforce",
    "zoph-le-rnn": "reinforce",
    "nasnet": "ppo",
    "enas-macro": "enas",
    "enas-micro": "enas",
    "enas-rnn": "enas",
}
"""Each space's paper: Zoph & Le -> REINFORCE, NASNet -> PPO, ENAS -> weight sharing."""

PAPER_BATCH_SIZE: dict[tuple[str, str], int] = {
    # Zoph & Le CNN: m = 8 children per controller replica update.
    ("zoph-le-cnn", "reinforce"): 8,
    # Zoph & Le PTB: m = 1 per replica, applied after every 10 accumulated gradients.
    ("zoph-le-rnn", "reinforce"): 10,
    # NASNet: PPO on minibatches of 20 architectures.
    ("nasnet", "ppo"): 20,
    # ENAS reference code: 50 x 20 (macro), 30 x 10 (micro), enas_lm 25 x 10 samples per epoch.
    ("enas-macro", "enas"): 20,
    ("enas-micro", "enas"): 10,
    ("enas-rnn", "enas"): 10,
    ("enas-macro", "reinforce"): 20,
    ("enas-micro", "reinforce"): 10,
    ("enas-rnn", "reinforce"): 10,
}
STRATEGY_BATCH_SIZE = {"reinforce": 8, "ppo": 20, "enas": 10, "random": 1, "evolution": 1}
ENAS_STEPS_PER_EPOCH = {"enas-macro": 50, "enas-micro": 30, "enas-rnn": 25}
"""Controller steps per epoch of the ENAS reference code (docs/papers.md §7)."""

_SPACE_MODULES = {t: t.replace("-", "_") for t in SPACE_KIND}


def space_class(type_name: str) -> type[SearchSpace] | None:
    """The space class registered for ``type_name``, importing only its module (None if absent)."""
    from controller_policy.spaces import SPACES

    if type_name not in SPACES and type_name in _SPACE_MODULES:
        importlib.import_module(f"controller_policy.spaces.{_SPACE_MODULES[type_name]}")
    return SPACES.get(type_name)


def strategy_class(type_name: str) -> Any | None:
    """The strategy class for ``type_name`` (None for enas, which runs in the trainer)."""
    from controller_policy.strategies import STRATEGIES

    return STRATEGIES.get(type_name)


def config_model(strategy_type: str) -> type[BaseModel] | None:
    """The strategy's settings model (None where the loop has no strategy object)."""
    model = getattr(strategy_class(strategy_type), "config_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_aliases(model: type[BaseModel]) -> dict[str, str]:
    """Alias (camelCase) and field name -> field name."""
    out: dict[str, str] = {}
    for name, f in model.model_fields.items():
        out[name] = name
        if f.alias:
            out[f.alias] = name
    return out


def _set_default(config: dict[str, Any], names: dict[str, str], field: str, value: Any) -> None:
    if not any(names.get(k, k) == field for k in config):
        config[field] = value




def _paper_defaults(strategy_type: str, space_type: str) -> dict[str, Any]:
    from controller_policy.strategies.defaults import defaults_for

    return defaults_for(strategy_type, space_type)


def validate_over_defaults(
    model: type[BaseModel], strategy_type: str, space_type: str, user: Mapping[str, Any]
) -> BaseModel:
    """Validate the user's settings laid over the papers' defaults, keeping the user's spelling
    (camelCase or snake_case) so that an error names the key they wrote."""
    names = _field_aliases(model)
    given = {names.get(k, k) for k in user}
    alias = {name: (f.alias or name) for name, f in model.model_fields.items()}
    merged = {
        alias.get(name, name): value
        for name, value in _paper_defaults(strategy_type, space_type).items()
        if name not in given
    }
    merged.update(user)
    return model.model_validate(merged)


def _default_batch_size(space_type: str, strategy_type: str) -> int:
    """The paper's m for this space and strategy (the strategies' own table where it exists)."""
    value = _paper_defaults(strategy_type, space_type).get("batch_size")
    if isinstance(value, int):
        return value
    return PAPER_BATCH_SIZE.get((space_type, strategy_type), STRATEGY_BATCH_SIZE[strategy_type])


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def fill_defaults(spec: NASSearchSpec) -> None:
    """Set every field left out that has a paper default (in place)."""
    space = spec.searchSpace.type
    kind = SPACE_KIND[space]
    st = spec.strategy
    if st.type is None:
        st.type = DEFAULT_STRATEGY[space]  # type: ignore[assignment]
    if st.batchSize is None:
        st.batchSize = _default_batch_size(space, st.type)
    if spec.objective is None:
        spec.objective = (
            Objective()
            if kind == "image"
            else Objective(metric="val_perplexity", reward="inverse-square", constant=80.0)
        )
    if spec.trial.dataset is None:
        spec.trial.dataset = TrialDataset(name=KIND_DEFAULT_DATASET[kind])  # type: ignore[arg-type]
    budget = spec.budget
    if budget.maxTrials is None:
        budget.maxTrials = 1 if st.type == "enas" else 100
    if budget.parallelism is None:
        budget.parallelism = min(4, budget.maxTrials)


def strategy_config(spec: NASSearchSpec) -> dict[str, Any]:
    """What the spec sets for the strategy: ``config`` plus seed and batch size.

    Passed to ``make_strategy``, which lays it over the papers' defaults; the
    batch size goes in only if the strategy has one (random, evolution do not).
    """
    st = spec.strategy
    config = dict(st.config)
    model = config_model(st.type or "")
    names = _field_aliases(model) if model is not None else {}
    if model is None or "seed" in names:
        _set_default(config, names, "seed", st.seed)
    if "batch_size" in names:
        _set_default(config, names, "batch_size", st.batchSize)
    return config


def validated_strategy_config(spec: NASSearchSpec) -> BaseModel | None:
    """``strategy_config`` over the papers' defaults, validated by the strategy's model."""
    st = spec.strategy
    model = config_model(st.type or "")
    if model is None:
        return None
    return validate_over_defaults(
        model, st.type or "", spec.searchSpace.type, strategy_config(spec)
    )


def enas_spec(spec: NASSearchSpec) -> EnasSpec:
    """The trainer's ENAS block: ``strategy.config`` plus the batch size and papers' steps."""
    config = dict(spec.strategy.config)
    config.setdefault("controllerBatch", spec.strategy.batchSize)
    config.setdefault(
        "controllerStepsPerEpoch", ENAS_STEPS_PER_EPOCH.get(spec.searchSpace.type, 30)
    )
    controller = dict(config.get("controller") or {})
    controller.setdefault("seed", spec.strategy.seed)
    config["controller"] = controller
    return EnasSpec.model_validate(config)


def final_training_spec(spec: NASSearchSpec) -> TrainingSpec:
    """``trial.training`` with ``finalTraining.training`` merged over it."""
    base = spec.trial.training.model_dump()
    overrides = spec.finalTraining.training if spec.finalTraining else {}
    return TrainingSpec.model_validate(_merge(base, overrides))
