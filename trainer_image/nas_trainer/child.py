"""Turn a trial document into (child network, dataset): the setup every plain trial shares.

Anything wrong here is the input's fault (space, architecture, data, model
size), so every failure is raised as ``ConfigError``/``DatasetError`` with the
field named, which the CLI maps to exit code 2.
"""

from __future__ import annotations

from torch import nn

from controller_policy.contract import TrialDocument
from controller_policy.spaces import InvalidArchitecture, make_space
from nas_trainer.datasets import Dataset, load_dataset
from nas_trainer.models import build_model
from nas_trainer.runtime import ConfigError, seed_everything

DATA_SPLIT_SEED = 0
"""Fixed for every trial of every search: validation metrics stay comparable across trials."""


def build_child(doc: TrialDocument) -> tuple[nn.Module, Dataset]:
    """Load the data the architecture's space needs and build the child network, seeded."""
    arch = doc.architecture
    if arch is None:
        raise ConfigError("architecture: required for mode 'train'")
    try:
        space = make_space(arch.space, doc.spaceOptions)
    except InvalidArchitecture as exc:
        raise ConfigError(f"architecture.space: {exc}") from exc
    except ValueError as exc:  # pydantic ValidationError of the space's options
        raise ConfigError(f"spaceOptions: {exc}") from exc
    data = load_dataset(doc.dataset, DATA_SPLIT_SEED, kind="image" if space.kind == "image" else "language")
    seed_everything(doc.seed)  # the initial weights depend on the trial's seed only
    try:
        if data.kind == "image":
            model = build_model(
                arch, doc.training.model, input_shape=data.input_shape,
                num_classes=data.num_classes, space_options=doc.spaceOptions,
            )
        else:
            model = build_model(
                arch, doc.training.model, vocab_size=data.vocab_size,
                space_options=doc.spaceOptions,
            )
    except InvalidArchitecture as exc:
        raise ConfigError(f"architecture: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"architecture / training.model: cannot build the child network: {exc}") from exc
    return model, data
