"""Turn an ENAS trial document into (space, supernet, controller strategy).

Everything wrong here is the input's fault, so failures are ``ConfigError`` with
the field named (the CLI maps them to exit code 2).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from controller_policy.contract import EnasSpec, ModelSpec, TrialDocument
from controller_policy.spaces import InvalidArchitecture, SearchSpace, make_space
from controller_policy.strategies import Reinforce, StrategyError, make_strategy
from nas_trainer.datasets import Dataset
from nas_trainer.registry import supernet_builder, supernet_spaces
from nas_trainer.runtime import ConfigError


def enas_space(doc: TrialDocument) -> SearchSpace:
    """The document's search space, which must have a supernet."""
    if doc.spaceType is None:
        raise ConfigError("spaceType: required for mode 'enas'")
    if supernet_builder(doc.spaceType) is None:
        raise ConfigError(
            f"spaceType {doc.spaceType!r} has no weight-sharing supernet; mode 'enas' supports "
            f"{', '.join(supernet_spaces())}"
        )
    try:
        return make_space(doc.spaceType, doc.spaceOptions)
    except (InvalidArchitecture, ValueError) as exc:
        raise ConfigError(f"spaceOptions: {exc}") from exc


def build_supernet(space: SearchSpace, spec: ModelSpec, data: Dataset) -> nn.Module:
    """The supernet of ``space`` sized by ``training.model`` for ``data``."""
    builder = supernet_builder(space.type_name)
    if builder is None:
        raise ConfigError(f"spaceType {space.type_name!r} has no supernet")
    try:
        return builder(space, spec, data)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"training.model: cannot build the {space.type_name} supernet: {exc}") from exc


def build_strategy(space: SearchSpace, enas: EnasSpec, seed: int) -> Reinforce:
    """The REINFORCE controller with the space's ENAS defaults, updated every ``controllerBatch``.

    ``enas.controller`` holds ``PolicyConfig`` fields (camelCase or snake_case);
    its batch size is ``controllerBatch`` and its seed defaults to the trial's.
    """
    config: dict[str, Any] = dict(enas.controller)
    for key in ("batchSize", "batch_size"):
        if key in config:
            value = config.pop(key)
            if value != enas.controllerBatch:
                raise ConfigError(
                    f"enas.controller.{key} = {value!r} contradicts enas.controllerBatch = "
                    f"{enas.controllerBatch}; set only controllerBatch"
                )
    config["batch_size"] = enas.controllerBatch
    if "seed" not in config:
        config["seed"] = seed
    try:
        strategy = make_strategy("reinforce", space, config)
    except (StrategyError, ValueError) as exc:
        raise ConfigError(f"enas.controller: {exc}") from exc
    assert isinstance(strategy, Reinforce)
    return strategy
