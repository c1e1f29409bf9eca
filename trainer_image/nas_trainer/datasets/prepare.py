"""Shared steps of the user-data loaders (image-folder, idx, arrays): one shape, one split.

Each loader only reads its format into arrays; this module checks labels,
converts channels, resizes to ``dataset.imageSize``, holds out validation
examples when the data brings none, caps the training set and computes the
channel statistics, so the three formats behave the same way (docs/design.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.datasets.images import ImageData, ImageSplit, split_train_val

MAX_DEFAULT_VAL = 5000
"""Held-out validation examples when ``validationSize`` is unset: 10%, at most this many."""
LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601 weights, as Pillow's RGB -> L conversion uses."""


@dataclass(frozen=True)
class RawSplit:
    """A split as read from disk: images [N, C, H, W] (uint8 or float32), integer labels [N]."""

    images: np.ndarray
    labels: np.ndarray
    where: str
    """What to name in an error: the file or folder this split came from."""


def dataset_path(spec: DatasetSpec, layout: str, *, folder: bool) -> Path:
    """``dataset.path`` as an existing folder (or file), else an error saying what belongs there."""
    if not spec.path:
        raise DatasetError(f"dataset.path is required for {spec.name}: {layout}")
    path = Path(spec.path)
    if not (path.is_dir() if folder else path.is_file()):
        what = "does not exist" if not path.exists() else f"is not a {'folder' if folder else 'file'}"
        raise DatasetError(f"dataset.path {path} {what}; expected {layout}")
    return path


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 stays uint8 (scale 1/255); any other real dtype becomes float32 (scale 1)."""
    if images.ndim != 4:
        raise DatasetError(f"{where}: images have shape {images.shape}; expected N x C x H x W")
    if images.dtype == np.uint8:
        return images
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise DatasetError(f"{where}: images of dtype {images.dtype} are not numbers")
    out = images.astype(np.float32)
    if not np.isfinite(out).all():
        raise DatasetError(f"{where}: images contain NaN or infinite values")
    return out


def check_labels(labels: np.ndarray, n_images: int, where: str) -> np.ndarray:
    """Labels must be one whole number >= 0 per image."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(f"{where}: labels have shape {labels.shape}; expected one label per image")
    if labels.shape[0] != n_images:
        raise DatasetError(f"{where}: {labels.shape[0]} labels for {n_images} images")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.mod(labels, 1) == 0):
            raise DatasetError(f"{where}: labels must be whole class numbers 0..K-1, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DatasetError(f"{where}: labels must be >= 0 (class numbers 0..K-1), found {labels.min()}")
    return labels


def convert_channels(x: torch.Tensor, channels: int | None, where: str) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by luma; RGBA loses its alpha channel."""
    c = x.shape[1]
    if c == 4:
        x, c = x[:, :3], 3
    if channels is None or channels == c:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        grey = (x.float() * weights).sum(1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else grey
    raise DatasetError(f"{where}: cannot turn {c}-channel images into dataset.channels={channels}")


def resize_square(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Scale the shorter side to ``size`` (antialiased bilinear), then centre-crop to a square."""
    if size is None:
        return x
    h, w = x.shape[2], x.shape[3]
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    out = out[:, :, top : top + size, left : left + size]
    if x.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8).contiguous()
    return out.contiguous()


def to_split(raw: RawSplit, spec: DatasetSpec) -> ImageSplit:
    images = torch.from_numpy(np.ascontiguousarray(raw.images))
    images = resize_square(convert_channels(images, spec.channels, raw.where), spec.imageSize)
    return ImageSplit(images, torch.from_numpy(raw.labels))


Stats = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel (mean, std)."""


def channel_stats(images: torch.Tensor, scale: float) -> Stats:
    """Per-channel mean and std of ``images * scale``, summed in float64 chunks (no big copy)."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096].double().mul_(scale)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    var = (squares / max(count, 1) - mean.square()).clamp_min(0)
    std = [max(math.sqrt(float(v)), 1e-6) for v in var]
    return tuple(float(m) for m in mean), tuple(std)


def default_validation(n: int) -> int:
    return max(1, min(MAX_DEFAULT_VAL, n // 10))


def cap_train(split: ImageSplit, spec: DatasetSpec, seed: int) -> ImageSplit:
    """``maxTrainExamples`` random training examples (seeded), in their original order."""
    if spec.maxTrainExamples is None or spec.maxTrainExamples >= len(split):
        return split
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=gen)[: spec.maxTrainExamples].sort().values
    return ImageSplit(split.images[idx].contiguous(), split.labels[idx].contiguous())


def cap_val(split: ImageSplit, spec: DatasetSpec, seed: int) -> ImageSplit:
    """With its own validation data, ``validationSize`` takes that many of it (seeded)."""
    if spec.validationSize is None or spec.validationSize >= len(split):
        return split
    gen = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(len(split), generator=gen)[: spec.validationSize].sort().values
    return ImageSplit(split.images[idx].contiguous(), split.labels[idx].contiguous())


def assemble(
    spec: DatasetSpec,
    seed: int,
    train: RawSplit,
    val: RawSplit | None,
    test: RawSplit | None,
    *,
    flip: bool,
    stats: Callable[[torch.Tensor, float], Stats] | None = None,
) -> ImageData:
    """The ``ImageData`` of one user dataset; ``stats(images, scale)`` gives (mean, std) of the
    training images (default: computed here; the image-folder loader reads them from a cache)."""
    if len(train.labels) == 0:
        raise DatasetError(f"{train.where}: no training images")
    full = to_split(train, spec)
    if val is None:
        n_val = spec.validationSize if spec.validationSize is not None else default_validation(len(full))
        capped = spec.model_copy(update={"validationSize": n_val})
        train_split, val_split = split_train_val(full.images, full.labels, capped, n_val, seed)
    else:
        train_split, val_split = cap_train(full, spec, seed), cap_val(to_split(val, spec), spec, seed)
    test_split = to_split(test, spec) if test is not None else None
    for split, raw in ((val_split, val or train), (test_split, test)):
        if split is not None and raw is not None and split.images.shape[1:] != full.images.shape[1:]:
            raise DatasetError(
                f"{raw.where}: images are {tuple(split.images.shape[1:])} (C, H, W) but the "
                f"training images are {tuple(full.images.shape[1:])}; give every split one size "
                "(or set dataset.imageSize)"
            )
    splits = [s for s in (full, val_split, test_split) if s is not None]
    num_classes = int(max(int(s.labels.max()) for s in splits if len(s)) + 1)
    scale = 1.0 / 255.0 if full.images.dtype == torch.uint8 else 1.0
    mean, std = (stats or channel_stats)(full.images, scale)
    height = int(full.images.shape[2])
    return ImageData(
        name=spec.name,
        train=train_split,
        val=val_split,
        test=test_split,
        num_classes=num_classes,
        scale=scale,
        mean=mean,
        std=std,
        crop_pad=max(1, height // 8),
        flip=flip if spec.flip is None else spec.flip,
    )
