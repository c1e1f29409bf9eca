"""``dataset.name: arrays``: one ``.npz`` file with ``x_train``/``y_train`` (and optional val/test).

For data a user already holds in memory: ``numpy.savez(path, x_train=..., y_train=...,
x_val=..., y_val=..., x_test=..., y_test=...)``. Images may be N x H x W (grey),
N x H x W x C (channels last, as Keras writes them) or N x C x H x W, with C in 1, 3
or 4; uint8 (0..255) or floating point. Labels are class numbers 0..K-1.
"""

from __future__ import annotations

import zipfile

import numpy as np

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.datasets.images import ImageData
from nas_trainer.datasets.prepare import (
    RawSplit,
    assemble,
    check_images,
    check_labels,
    dataset_path,
)

ARRAYS_LAYOUT = (
    "an .npz file (numpy.savez) with x_train and y_train, optionally x_val/y_val and "
    "x_test/y_test; images N x H x W, N x H x W x C or N x C x H x W (C = 1, 3 or 4)"
)
SPLITS = ("train", "val", "test")


def to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """Guess the layout: channels last when the last axis is 1, 3 or 4 and axis 1 is not."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        last, second = x.shape[3] in (1, 3, 4), x.shape[1] in (1, 3, 4)
        if last and not second:
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if second:
            return x
    raise DatasetError(f"{where} has shape {x.shape}; expected {ARRAYS_LAYOUT}")


def load_arrays(spec: DatasetSpec, seed: int) -> ImageData:
    """The splits of ``dataset.path`` (an .npz); without x_val, validation is held out of train."""
    file = dataset_path(spec, ARRAYS_LAYOUT, folder=False)
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"dataset.path {file} is not a readable .npz ({exc}); expected {ARRAYS_LAYOUT}") from exc
    unknown = sorted(set(arrays) - {f"{p}_{s}" for p in "xy" for s in SPLITS})
    if unknown:
        raise DatasetError(f"{file}: unknown arrays {unknown}; expected {ARRAYS_LAYOUT}")
    splits: dict[str, RawSplit | None] = {}
    for split in SPLITS:
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None and y is None and split != "train":
            splits[split] = None
            continue
        if x is None or y is None:
            missing = f"x_{split}" if x is None else f"y_{split}"
            raise DatasetError(f"{file}: {missing} is missing; expected {ARRAYS_LAYOUT}")
        where = f"{file}[x_{split}]"
        images = check_images(to_nchw(x, where), where)
        labels = check_labels(y, images.shape[0], f"{file}[y_{split}]")
        splits[split] = RawSplit(images, labels, where)
    train = splits["train"]
    assert train is not None
    return assemble(spec, seed, train, splits["val"], splits["test"], flip=False)
