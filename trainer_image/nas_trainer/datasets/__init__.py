"""Dataset loading for trials: ``load_dataset(spec, seed)`` -> ``ImageData`` or ``TextData``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.arrays import load_arrays
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.datasets.folder import load_image_folder
from nas_trainer.datasets.idx import load_idx
from nas_trainer.datasets.images import (
    ImageData,
    ImageSplit,
    load_cifar10,
    load_digits_data,
    load_synthetic_images,
)
from nas_trainer.datasets.text import TextData, load_ptb, load_pydoc_text, load_synthetic_text

Dataset = ImageData | TextData


USER_IMAGE_LOADERS: dict[str, Callable[[DatasetSpec, int], ImageData]] = {
    "image-folder": load_image_folder,
    "idx": load_idx,
    "arrays": load_arrays,
}
"""Formats a user has on disk: a folder of images, IDX files, an .npz of arrays."""
DatasetKind = Literal["image", "language"]

DATASET_KINDS: dict[str, DatasetKind | None] = {
    "cifar10": "image",
    "digits": "image",
    "image-folder": "image",
    "idx": "image",
    "arrays": "image",
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
    if spec.name in USER_IMAGE_LOADERS:
        return USER_IMAGE_LOADERS[spec.name](spec, seed)
    for field in ("imageSize", "channels"):
        if getattr(spec, field) is not None:
            raise DatasetError(
                f"dataset.{field} applies to image-folder, idx and arrays, not {spec.name!r}; "
                "remove it"
            )
    data = _load_builtin(spec, seed, kind)
    if isinstance(data, ImageData) and spec.flip is not None:
        return replace(data, flip=spec.flip)
    return data


def _load_builtin(spec: DatasetSpec, seed: int, kind: DatasetKind | None) -> Dataset:
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
