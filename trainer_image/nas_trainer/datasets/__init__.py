"""Dataset loading for trials: ``load_dataset(spec, seed)`` -> ``ImageData`` or ``TextData``."""

from __future__ import annotations

from typing import Literal

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.datasets.images import (
    ImageData,
    ImageSplit,
    load_cifar10,
    load_digits_data,
    load_synthetic_images,
)
from nas_trainer.datasets.text import TextData, load_ptb, load_pydoc_text, load_synthetic_text

Dataset = ImageData | TextData
DatasetKind = Literal["image", "language"]

DATASET_KINDS: dict[str, DatasetKind | None] = {
    "cifar10": "image",
    "digits": "image",
    "ptb": "language",
    "pydoc-text": "language",
    "synthetic": None,  # either: follows the search space
}


def load_dataset(spec: DatasetSpec, seed: int = 0, kind: DatasetKind | None = None) -> Dataset:
    """Load ``spec``; ``kind`` (the search space's) must match the dataset's.

    ``seed`` fixes the validation split (and synthetic data). Keep it the same for
    every trial of a search so that their validation metrics are comparable.
    """
    expected = DATASET_KINDS[spec.name]
    if kind is not None and expected is not None and expected != kind:
        choices = sorted(n for n, k in DATASET_KINDS.items() if k in (kind, None))
        raise DatasetError(
            f"dataset.name {spec.name!r} is {expected} data but the search space needs "
            f"{kind} data; choose one of {choices}"
        )
    if spec.name == "cifar10":
        return load_cifar10(spec, seed)
    if spec.name == "digits":
        return load_digits_data(spec, seed)
    if spec.name == "ptb":
        return load_ptb(spec)
    if spec.name == "pydoc-text":
        return load_pydoc_text(spec)
    if kind == "language":
        return load_synthetic_text(spec, seed)
    return load_synthetic_images(spec, seed)


__all__ = [
    "DATASET_KINDS",
    "Dataset",
    "DatasetError",
    "ImageData",
    "ImageSplit",
    "TextData",
    "load_dataset",
]
