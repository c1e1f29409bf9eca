"""``dataset.name: image-folder``: one sub-folder of PNG/JPEG files per class, read with Pillow.

Layout (the one torchvision's ImageFolder reads, without torchvision)::

    <path>/train/<class>/*.png|jpg|...    required; class names sorted = label order
    <path>/val/<class>/...                optional; else dataset.validationSize is held out
    <path>/test/<class>/...               optional

Every image is converted to one channel count (``dataset.channels``; default 1 when
every training image is grey, else 3) and, with ``dataset.imageSize``, scaled so its
shorter side is that size and centre-cropped to a square; without it all images must
share one size. Files that fail to decode are refused (``unreadableFiles: fail``, the
default) or skipped and counted (``skip``). The channel statistics of the training
images are computed once and cached (``stats_cache``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from controller_policy.contract import DatasetSpec
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.datasets.images import ImageData
from nas_trainer.datasets.prepare import RawSplit, Stats, assemble, channel_stats, dataset_path
from nas_trainer.datasets.stats_cache import StatsCache, listing_key

log = logging.getLogger("nas_trainer")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
FOLDER_LAYOUT = (
    "a folder with train/<class>/<image files> (PNG, JPEG, ...), optionally val/<class>/ "
    "and test/<class>/ with the same class names"
)
MAX_NAMED = 3
"""Skipped files named in the warning (the rest are counted)."""


def class_folders(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def listing(split_dir: Path, classes: list[str], required: bool) -> list[tuple[Path, int]]:
    """(file, label) of one split; in train every class needs an image, elsewhere only known
    class names may appear."""
    found = {p.name: p for p in class_folders(split_dir)}
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(
            f"{split_dir}: class folders {unknown} do not exist in train/ (classes: {classes}); "
            "every split must use the training classes"
        )
    items: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = image_files(found[name]) if name in found else []
        if required and not files:
            raise DatasetError(
                f"{split_dir / name}: class {name!r} has no image files "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder"
            )
        items.extend((f, label) for f in files)
    return items


class Decoder:
    """Decodes files to one channel count and size, counting (or refusing) unreadable ones."""

    def __init__(self, channels: int, size: int | None, skip_unreadable: bool) -> None:
        self.mode = "L" if channels == 1 else "RGB"
        self.size = size
        self.skip_unreadable = skip_unreadable
        self.skipped: list[Path] = []
        self.shape: tuple[int, int] | None = None
        self.first: Path | None = None

    def decode(self, file: Path) -> np.ndarray | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as img:
                img = img.convert(self.mode)
                if self.size is not None:
                    img = square(img, self.size)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            if not self.skip_unreadable:
                raise DatasetError(
                    f"image file {file} cannot be decoded ({exc}); fix or remove it, or set "
                    "dataset.unreadableFiles: skip"
                ) from exc
            self.skipped.append(file)
            return None
        if self.shape is None:
            self.shape, self.first = array.shape[:2], file
        elif array.shape[:2] != self.shape:
            raise DatasetError(
                f"image file {file} is {array.shape[1]}x{array.shape[0]} but {self.first} is "
                f"{self.shape[1]}x{self.shape[0]}; set dataset.imageSize to resize every image"
            )
        return array if array.ndim == 3 else array[:, :, None]

    def read(self, items: list[tuple[Path, int]], where: Path) -> RawSplit:
        images, labels = [], []
        for file, label in items:
            array = self.decode(file)
            if array is not None:
                images.append(array)
                labels.append(label)
        if not images:
            raise DatasetError(f"{where}: none of its {len(items)} image files could be decoded")
        stacked = np.stack(images).transpose(0, 3, 1, 2)
        return RawSplit(np.ascontiguousarray(stacked), np.asarray(labels, dtype=np.int64), str(where))


def square(img: object, size: int) -> object:
    """Shorter side to ``size`` (Pillow's antialiased bilinear), centre crop to size x size."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def detect_channels(files: Iterator[Path]) -> int:
    """1 when every readable image is grey, else 3 (only headers are read)."""
    from PIL import Image

    for file in files:
        try:
            with Image.open(file) as img:
                if img.mode not in GREY_MODES:
                    return 3
        except (OSError, ValueError, SyntaxError):
            continue  # the decoder reports (or skips) it
    return 1


def load_image_folder(spec: DatasetSpec, seed: int) -> ImageData:
    """train/ (val/, test/) class folders under ``dataset.path``."""
    root = dataset_path(spec, FOLDER_LAYOUT, folder=True)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DatasetError(f"dataset.path {root} has no train/ folder; expected {FOLDER_LAYOUT}")
    classes = [p.name for p in class_folders(train_dir)]
    if not classes:
        raise DatasetError(f"{train_dir} has no class folders; expected {FOLDER_LAYOUT}")
    train_items = listing(train_dir, classes, required=True)
    channels = spec.channels or detect_channels(f for f, _ in train_items)
    decoder = Decoder(channels, spec.imageSize, spec.unreadableFiles == "skip")
    train = decoder.read(train_items, train_dir)
    others: dict[str, RawSplit | None] = {}
    for split in ("val", "test"):
        folder = root / split
        others[split] = decoder.read(listing(folder, classes, False), folder) if folder.is_dir() else None
    if decoder.skipped:
        named = ", ".join(str(p) for p in decoder.skipped[:MAX_NAMED])
        more = len(decoder.skipped) - MAX_NAMED
        log.warning("image-folder %s: skipped %d unreadable files (%s%s)", root,
                    len(decoder.skipped), named, f" and {more} more" if more > 0 else "")
    key = listing_key(train_items, {"channels": channels, "imageSize": spec.imageSize,
                                    "skipped": len(decoder.skipped)})
    cache = StatsCache.default()

    def stats(images: torch.Tensor, scale: float) -> Stats:
        return cache.get_or_compute(key, lambda: channel_stats(images, scale))

    data = assemble(spec, seed, train, others["val"], others["test"], flip=True, stats=stats)
    return replace(data, skipped_files=len(decoder.skipped), classes=tuple(classes))
