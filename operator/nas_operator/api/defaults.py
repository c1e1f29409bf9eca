"""Defaults that depend on the search space and strategy, filled in after validation.

The papers' values (docs/papers.md): each space's strategy, objective, dataset
and batch size m; the strategies' controller settings laid under the user's.
Filled in so that a dumped spec shows exactly what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from controller_policy.contract import DartsSpec, EnasSpec, TrainingSpec
from controller_policy.spaces.registry import space_class
from controller_policy.strategies.defaults import default_batch_size, defaults_for
from controller_policy.strategies.registry import is_weight_sharing, strategy_class
from nas_operator.api.trial import TrialDataset

if TYPE_CHECKING:
    from nas_operator.api.resources import NASSearchSpec

KIND_METRIC = {"image": "val_accuracy", "language": "val_perplexity"}
"""Image spaces are scored by accuracy, language spaces by perplexity."""
KIND_DATASETS = {
    "image": ("cifar10", "digits", "synthetic", "image-folder", "idx", "arrays"),
    "language": ("ptb", "pydoc-text", "synthetic"),
}
KIND_DEFAULT_DATASET = {"image": "digits", "language": "pydoc-text"}


def space_kind(space_type: str) -> str:
    """``image`` or ``language``: what the registered space declares."""
    cls = space_class(space_type)
    assert cls is not None, f"unregistered space {space_type!r}"
    return cls.kind


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
        for name, value in defaults_for(strategy_type, space_type).items()
        if name not in given
    }
    merged.update(user)
    return model.model_validate(merged)


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
    cls = space_class(spec.searchSpace.type)
    assert cls is not None  # the type was validated against the registry
    st = spec.strategy
    if st.type is None:
        st.type = cls.paper_strategy
    if st.batchSize is None:
        st.batchSize = default_batch_size(st.type, cls.type_name)
    if spec.objective is None:
        spec.objective = cls.default_objective()
    kind = cls.kind
    if spec.trial.dataset is None:
        spec.trial.dataset = TrialDataset(name=KIND_DEFAULT_DATASET[kind])  # type: ignore[arg-type]
    budget = spec.budget
    if budget.maxTrials is None:
        budget.maxTrials = 1 if is_weight_sharing(st.type) else 100
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
    if "selection" in names and spec.objective is not None and spec.objective.multi:
        _set_default(config, names, "selection", "pareto")  # evolution on the Pareto front
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
    cls = space_class(spec.searchSpace.type)
    steps = cls.enas_steps_per_epoch if cls is not None else None
    if steps is not None:
        config.setdefault("controllerStepsPerEpoch", steps)
    controller = dict(config.get("controller") or {})
    controller.setdefault("seed", spec.strategy.seed)
    config["controller"] = controller
    return EnasSpec.model_validate(config)


def darts_spec(spec: NASSearchSpec) -> DartsSpec:
    """The trainer's DARTS block: ``strategy.config`` as ``DartsSpec`` (docs/papers.md §8, DARTS)."""
    return DartsSpec.model_validate(dict(spec.strategy.config))


def final_training_spec(spec: NASSearchSpec) -> TrainingSpec:
    """``trial.training`` with ``finalTraining.training`` merged over it."""
    base = spec.trial.training.model_dump()
    overrides = spec.finalTraining.training if spec.finalTraining else {}
    return TrainingSpec.model_validate(_merge(base, overrides))
